"""What every PE array around its PEs shares: job control, activation buffer, result drain.

Used by :class:`hdl.pe_array.PeArray` and the bit-parallel baseline
:class:`hdl.parallel_array.ParallelArray`, so both have the same streams and protocol.
"""

from __future__ import annotations

from amaranth import Array, Cat, Elaboratable, Module, Signal, signed
from amaranth.lib import data
from amaranth.lib.memory import Memory

from golden.tables import ACTIVATION_BITS, FAMILY_ID_BITS

from .pe_array_config import PeArrayConfig

__all__ = ["JobControl", "drain_results"]


class JobControl(Elaboratable):
    """Samples a job's configuration, loads its activations and serves them to the PE rows.

    While idle before a job's first activation beat, ``family_id``, ``groups`` and
    ``col_tiles`` follow the inputs; then ``act`` beats are written row by row, and
    ``start`` pulses a cycle after the last one, when ``loading`` falls. The PE side
    reads all rows at ``read_addr`` (with ``read_enable``); ``activations[r]`` is row
    ``r``'s data two cycles after the read (memory, then a register). Setting
    ``loading`` again (``reload``) ends the job.
    """

    def __init__(self, config: PeArrayConfig, act, family, groups, col_tiles):
        self.config = config
        w = config.widths
        self._act, self._family, self._groups, self._col_tiles = act, family, groups, col_tiles
        self.family_id = Signal(FAMILY_ID_BITS)
        self.groups = Signal.like(groups)
        self.col_tiles = Signal.like(col_tiles)
        self.loading = Signal(init=1)
        self.start = Signal()
        self.reload = Signal()
        self.read_addr = Signal(range(w["act_depth"]))
        self.read_enable = Signal()
        self.activations = [Signal(data.ArrayLayout(signed(ACTIVATION_BITS), config.lanes), name=f"a{r}")
                            for r in range(config.rows)]

    def elaborate(self, platform):
        m = Module()
        config, w = self.config, self.config.widths
        act = self._act
        load_row = Signal(range(max(config.rows, 2)))     # (a 0-bit signal is an illegal Verilog range)
        load_addr = Signal(range(w["act_depth"]))
        first_beat = Signal(init=1)
        # Registered after `groups`: it is first compared at a row's second beat (a row has
        # at least two steps, since the dequantization limit keeps lanes <= group_size / 2).
        steps_per_row = Signal(range(w["act_depth"] + 1))
        m.d.sync += steps_per_row.eq(self.groups * w["steps_per_group"])

        for r in range(config.rows):
            memory = Memory(shape=len(act.payload.as_value()), depth=w["act_depth"], init=[])
            m.submodules[f"act_mem{r}"] = memory
            write = memory.write_port()
            read = memory.read_port()
            m.d.comb += [
                write.addr.eq(load_addr),
                write.data.eq(act.payload),
                write.en.eq(act.valid & act.ready & (load_row == r)),
                read.addr.eq(self.read_addr),
                read.en.eq(self.read_enable),
            ]
            m.d.sync += self.activations[r].eq(read.data)

        m.d.comb += act.ready.eq(self.loading)
        m.d.sync += self.start.eq(0)
        with m.If(self.loading & first_beat):
            m.d.sync += [self.family_id.eq(self._family), self.groups.eq(self._groups),
                         self.col_tiles.eq(self._col_tiles)]
        with m.If(act.valid & act.ready):
            m.d.sync += [load_addr.eq(load_addr + 1), first_beat.eq(0)]
            with m.If(load_addr == steps_per_row - 1):
                m.d.sync += [load_addr.eq(0), load_row.eq(load_row + 1)]
                with m.If(load_row == config.rows - 1):
                    m.d.sync += [load_row.eq(0), self.loading.eq(0), first_beat.eq(1), self.start.eq(1)]
        with m.If(self.reload):
            m.d.sync += self.loading.eq(1)
        return m


def drain_results(m: Module, o, accs, *, start, job: JobControl, clear: Signal, drained: Signal) -> None:
    """Send R beats of C results once ``start`` is high; then pulse ``clear`` (comb).

    ``accs[r][c]`` are the accumulators; they must hold still until ``clear``. The
    payload is a register (the row multiplexer never reaches the stream's consumer).
    ``drained`` (a register the caller also sets) is cleared with the last beat; after
    the job's last tile ``job.reload`` pulses.
    """
    rows = len(accs)
    draining = Signal()
    next_row = Signal(range(rows + 1))
    tiles_left = Signal.like(job.col_tiles)      # counts down: a zero test instead of a compare
    results = Array(Cat(*row) for row in accs)
    with m.If(job.start):
        m.d.sync += tiles_left.eq(job.col_tiles - 1)
    with m.If(start & ~draining):
        m.d.sync += [draining.eq(1), o.payload.eq(results[0]), next_row.eq(1)]
    m.d.comb += o.valid.eq(draining)
    with m.If(o.valid & o.ready):
        m.d.sync += [o.payload.eq(results[next_row]), next_row.eq(next_row + 1)]
        with m.If(next_row == rows):
            m.d.comb += clear.eq(1)
            m.d.sync += [draining.eq(0), drained.eq(0), tiles_left.eq(tiles_left - 1)]
            with m.If(tiles_left == 0):
                m.d.comb += job.reload.eq(1)
