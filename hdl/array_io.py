"""What every PE array around its PEs shares: job control, activation buffer, result drain.

Used by :class:`hdl.pe_array.PeArray` and the bit-parallel baseline
:class:`hdl.parallel_array.ParallelArray`, so both have the same streams and protocol.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Signal, signed
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
    ``r``'s data two cycles after the read. With ``prefetch`` the memories read
    ``read_addr`` in every cycle and ``read_enable`` takes what they read in the cycle
    before, so ``read_addr`` must have held still for a cycle (reads at least two cycles
    apart); ``activations[r]`` then holds until two cycles after the next read.
    Without it, the read is the memories' clock enable. Setting
    ``loading`` again (``reload``) ends the job.
    """

    def __init__(self, config: PeArrayConfig, act, family, groups, col_tiles, prefetch: bool = False):
        self.config, self.prefetch = config, prefetch
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

        read_taken = Signal()
        m.d.sync += read_taken.eq(self.read_enable)
        for r in range(config.rows):
            # No read that is used meets a write (reads are used only after the job's
            # last activation beat), so yosys need not add read-during-write logic
            # between the block RAM and the next flip-flop.
            memory = Memory(shape=len(act.payload.as_value()), depth=w["act_depth"], init=[],
                            attrs={"no_rw_check": 1})
            m.submodules[f"act_mem{r}"] = memory
            write = memory.write_port()
            read = memory.read_port()
            # Each row's write is registered next to its memory: one address counter
            # driving every row's block RAM directly spans the die in a tall array. The
            # last beat lands a cycle after it was taken, long before the first read of its
            # address (a row has at least two steps; reads start at address 0).
            m.d.sync += [
                write.addr.eq(load_addr),
                write.data.eq(act.payload),
                write.en.eq(act.valid & act.ready & (load_row == r)),
            ]
            m.d.comb += read.addr.eq(self.read_addr)
            if self.prefetch:
                # The memory reads in every cycle into a plain register (the memory's
                # slow clock-to-output meets nothing but a flip-flop), and `activations`
                # takes that register a cycle after the read was asked for (a
                # registered enable, not the memories' clock enables).
                raw = Signal.like(self.activations[r], name=f"raw{r}")
                m.d.sync += raw.eq(read.data)
                with m.If(read_taken):
                    m.d.sync += self.activations[r].eq(raw)
            else:
                m.d.comb += read.en.eq(self.read_enable)
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


def drain_results(m: Module, o, accs, *, tile_done, dequantizing, job: JobControl,
                  clear: Signal) -> tuple[Signal, Signal]:
    """Move a finished tile into result registers and send it as R beats of C results.

    ``tile_done`` (one cycle) says the tile's last group sum has reached the
    dequantization units; in the first cycle after that with ``dequantizing`` low the
    accumulators ``accs[r][c]`` hold the tile's results. They are copied then (the
    returned ``copy`` is high) and ``clear`` (comb) pulses, so the accumulators take the
    next tile while this one is sent. The returned ``full`` is high until the tile's
    last beat has left; the caller must not let another tile finish meanwhile.
    The payload is a register, and the waiting rows shift towards it one row per beat (no
    row multiplexer, whose select fans out to every result bit of a tall array).
    After the copy of the job's last tile ``job.reload`` pulses.
    """
    finishing = Signal()                         # the tile's last group is being dequantized
    copy = Signal()
    m.d.comb += copy.eq(finishing & ~dequantizing)
    with m.If(copy):
        m.d.sync += finishing.eq(0)
    with m.If(tile_done):
        m.d.sync += finishing.eq(1)
    rows = len(accs)
    full = Signal()
    next_row = Signal(range(rows + 1))
    tiles_left = Signal.like(job.col_tiles)      # counts down: a zero test instead of a compare
    # Row 0 goes straight into the payload register; rows 1.. wait in result registers.
    results = [Cat(*(Signal.like(acc, name=f"result{r}_{c}") for c, acc in enumerate(row)))
               for r, row in enumerate(accs) if r]
    m.d.comb += [clear.eq(copy), o.valid.eq(full)]
    with m.If(job.start):
        m.d.sync += tiles_left.eq(job.col_tiles - 1)
    with m.If(o.valid & o.ready):
        m.d.sync += next_row.eq(next_row + 1)
        if results:
            m.d.sync += [o.payload.eq(results[0]), *(a.eq(b) for a, b in zip(results, results[1:], strict=False))]
        with m.If(next_row == rows):
            m.d.sync += full.eq(0)
    with m.If(copy):
        m.d.sync += [full.eq(1), o.payload.eq(Cat(*accs[0])), next_row.eq(1), tiles_left.eq(tiles_left - 1)]
        m.d.sync += [result.eq(Cat(*row)) for result, row in zip(results, accs[1:], strict=True)]
        with m.If(tiles_left == 0):
            m.d.comb += job.reload.eq(1)
    return full, copy
