"""What every PE array around its PEs shares: job control, activation buffer, result drain.

Used by :class:`hdl.pe_array.PeArray` and the bit-parallel baseline
:class:`hdl.parallel_array.ParallelArray`, so both have the same streams and protocol.
"""

from __future__ import annotations

import functools
import operator

from amaranth import C, Cat, Elaboratable, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.bitmod import ACTIVATION_BITS, FAMILY_ID_BITS
from arch.pe_array_config import EXPONENT_FIELD_BITS, PeArrayConfig

from .fp16_align import ALIGN_LATENCY, aligned_lane, exponent, max_tree, special, staged_lane_value, staged_layout
from .replica import REPLICA_ATTR, replicas

__all__ = ["array_members", "result_layout", "result_fields", "delay_line", "JobControl", "drain_results"]

#: Result bits per copy of the output buffer's `advance` and pointers (:func:`drain_results`).
SLICE_BITS = 16
#: Entries of the output buffer (:func:`drain_results`): with three, the decision to push
#: in the next cycle can ignore this cycle's o.ready and still push every cycle.
BUFFER_ENTRIES = 3


def result_layout(config: PeArrayConfig):
    """A beat of ``o``: C results; an FP16 build adds the token's exponent and the job's ``invalid``."""
    results = data.ArrayLayout(signed(config.acc_bits), config.cols)
    if not config.fp16:
        return results
    return data.StructLayout({"acc": results, "exponent": EXPONENT_FIELD_BITS, "invalid": 1})


def result_fields(config: PeArrayConfig, payload) -> list[Value]:
    """The pieces of a result beat that :func:`drain_results` moves: the C results, then (FP16
    builds) the row's tag ``Cat(exponent, invalid)``."""
    if not config.fp16:
        return [payload[c] for c in range(config.cols)]
    return [payload.acc[c] for c in range(config.cols)] + [Cat(payload.exponent, payload.invalid)]


def array_members(config: PeArrayConfig) -> dict:
    """The members of a PE array (:class:`hdl.pe_array.PeArray`, :class:`hdl.parallel_array.ParallelArray`).

    An FP16 build's ``act`` lanes are raw binary16 bits (16 each; an int8 job of a ``both``
    build puts its int8 in a lane's low byte), and a ``both`` build has a per-job ``fp16``
    input, sampled like ``family``.
    """
    lane = unsigned(config.act_field_bits) if config.fp16 else signed(ACTIVATION_BITS)
    members = {
        "family": In(FAMILY_ID_BITS),
        "groups": In(config.groups_bits),
        "col_tiles": In(config.tile_count_bits),
        "act": In(stream.Signature(data.ArrayLayout(lane, config.lanes))),
        "w": In(stream.Signature(config.weight_beat_bits)),
        "o": Out(stream.Signature(result_layout(config))),
    }
    if config.activations == "both":
        members["fp16"] = In(1)
    return members


def delay_line(m: Module, value: Value, stages: int, name: str, *, reset_less: bool = False) -> Value:
    """``value`` delayed by ``stages`` plain registers (``{name}_d{stage}``); ``value`` itself for 0 stages."""
    for stage in range(stages):
        delayed = Signal(Value.cast(value).shape(), name=f"{name}_d{stage}", reset_less=reset_less)
        m.d.sync += delayed.eq(value)
        value = delayed
    return value


class JobControl(Elaboratable):
    """Samples a job's configuration, loads its activations and serves them to the PE rows.

    While idle before a job's first activation beat, ``family_id``, ``groups`` and
    ``col_tiles`` follow the inputs; then ``act`` beats are written row by row, and
    ``start`` pulses a cycle after the last one, when ``loading`` falls. The PE side
    reads all rows at ``read_addr`` (with ``read_enable``); ``activations[r]`` is row
    ``r``'s data two cycles after the read. With ``prefetch`` the memories read
    ``read_addr`` in every cycle and ``read_enable`` takes what they read in the cycle
    before, so ``read_addr`` must have held still for a cycle (reads at least two cycles
    apart); ``activations[r]`` then holds until two cycles after the next read. With
    ``late`` (prefetch only) it takes what they read a cycle later still: the data then
    comes three cycles after the read and holds until three cycles after the next
    read; the memories then see ``read_addr`` through a registered copy per
    group of ``ROWS_PER_COPY`` rows, which is the address of the cycle before the read
    and, since it held still, the read's own. Without prefetch, the read is the
    memories' clock enable. Setting ``loading`` again (``reload``) ends the job.

    ``activations[r]`` is a list of ``column_copies`` registers that hold the same
    data (``late`` only: each with its own copy of the take enable), so that every
    column of PEs reads a register of its own, placed next to it, instead of one that
    all columns reach across the die. ``columns[c]`` is likewise column ``c``'s copy of
    ``family_id``, ``groups`` and ``col_tiles`` (a dict of those names).

    FP16 builds (``config.fp16``) store the raw binary16 lanes. While a job loads, each
    row's exponent ``er`` (the largest ``e`` of its activations) and the job's sticky
    ``invalid`` (an Inf or NaN lane) are kept, a few cycles behind the beats (five at 8
    lanes). With ``late``, the memories' data is aligned to its row's ``er``
    (``hdl.fp16_align``) through ``ALIGN_LATENCY`` registers of its own per row (the read
    data, the lanes' coarse shifts, the aligned values) after it is read, which the take
    enable then moves into ``activations``: the memories see the address a cycle early
    (``read_addr_next``) and the digit bus comes ``ALIGN_LATENCY - 1`` cycles late
    (:class:`hdl.digit_bus.DigitBus`) to make room for them. With ``raw`` (no prefetch)
    ``activations[r]`` is the memory's word as it is (the FP16 MAC baseline unpacks it).
    ``fp16_job`` is the job's mode (the ``fp16`` input of a ``both`` build, sampled like
    ``family``); ``tags[r]`` is row ``r``'s
    ``Cat(er, invalid)`` for the result beats (zero in an int8 job).
    """

    def __init__(self, config: PeArrayConfig, act, family, groups, col_tiles, prefetch: bool = False,
                 late: bool = False, column_copies: int = 1, fp16=None, raw: bool = False):
        if late and not prefetch:
            raise ValueError("JobControl: late=True needs prefetch=True")
        if column_copies != 1 and not late:
            raise ValueError(f"JobControl: column_copies={column_copies} needs late=True")
        if raw and (prefetch or not config.fp16):
            raise ValueError("JobControl: raw=True is for FP16 builds without prefetch")
        if config.fp16 and not (late or raw):
            raise ValueError(f"JobControl: activations={config.activations} needs late=True or raw=True")
        if (fp16 is not None) != (config.activations == "both"):
            raise ValueError("JobControl: the fp16 input is the per-job choice of a 'both' build, and only that")
        self.config, self.prefetch, self.late, self.column_copies = config, prefetch, late, column_copies
        self._act, self._family, self._groups, self._col_tiles = act, family, groups, col_tiles
        self._fp16 = fp16
        self.fp16_job = Signal(init=config.activations == "fp16")
        self.tags = [Signal(EXPONENT_FIELD_BITS + 1, name=f"tag{r}") for r in range(config.rows)]
        self.family_id = Signal(FAMILY_ID_BITS)
        self.groups = Signal.like(groups)
        self.col_tiles = Signal.like(col_tiles)
        self.columns = [{name: Signal.like(value, name=f"{name}_c{c}", attrs={REPLICA_ATTR: 1})
                         for name, value in (("family_id", self.family_id), ("groups", self.groups),
                                             ("col_tiles", self.col_tiles))}
                        for c in range(column_copies)]
        self.loading = Signal(init=1)
        self.start = Signal()
        self.reload = Signal()
        self.read_addr = Signal(range(config.act_depth))
        self.read_addr_next = Signal(range(config.act_depth))      # FP16 builds: read_addr a cycle ahead
        self.read_enable = Signal()
        layout = unsigned(config.lanes * config.act_field_bits) if raw else \
            data.ArrayLayout(signed(config.lane_bits), config.lanes)
        self.activations = [[Signal(layout, name=f"a{r}" if column_copies == 1 else f"a{r}_{c}", reset_less=True)
                             for c in range(column_copies)] for r in range(config.rows)]

    def elaborate(self, platform):
        m = Module()
        config = self.config
        act = self._act
        load_addr = Signal(range(config.act_depth))
        first_beat = Signal(init=1)
        # `row_end` (`load_addr` is a row's last address) is a flag, set when the counter
        # moves, from a compare with the row's second-to-last address, sampled from the
        # input while the job's first beat is awaited (the input holds a cycle before that
        # beat; a row has at least two steps, since the dequantization limit keeps
        # lanes <= group_size / 2).
        row_penult_addr = Signal(range(config.act_depth))
        with m.If(self.loading & first_beat):
            m.d.sync += row_penult_addr.eq(self._groups * config.steps_per_group - 2)
        row_end = Signal()
        # The row being loaded, one-hot (each row's write enable is one LUT from flip-flops).
        row_hot = Signal(config.rows, init=1)
        last_row = row_hot[-1]

        # Per group of rows: the registered write (address and data) and, when late, the
        # read address and the take enable (a tree: a copy per column of activation
        # registers, then one per group of rows).
        er = self._track_exponents(m, first_beat, load_addr, row_hot) if config.fp16 else None
        copies = config.row_copies
        write_addr = replicas(m, load_addr, copies, "write_addr", reset_less=True)
        write_data = replicas(m, act.payload, copies, "write_data", reset_less=True)
        if self.late:
            # An FP16 build's memories see the address a cycle earlier (its copies are of the
            # next value), so that the aligned data is ready when the take enable comes.
            read_addr = replicas(m, self.read_addr_next if config.fp16 else self.read_addr, copies, "read_addr",
                                 reset_less=True)
            # (FP16 builds: the data comes ALIGN_LATENCY - 1 cycles later, through the aligner)
            read_enable = delay_line(m, self.read_enable, ALIGN_LATENCY - 1 if config.fp16 else 0, "read_enable")
            take = [replicas(m, taken, copies, f"read_taken{c}") for c, taken in
                    enumerate(replicas(m, read_enable, self.column_copies, "read_taken"))]
        else:
            read_taken = Signal(name="read_taken")
            m.d.sync += read_taken.eq(self.read_enable)
            read_addr, take = [self.read_addr] * copies, [[read_taken] * copies]
        for r in range(config.rows):
            group = config.row_group(r)
            # No read that is used meets a write (reads are used only after the job's
            # last activation beat), so yosys need not add read-during-write logic
            # between the block RAM and the next flip-flop.
            memory = Memory(shape=len(act.payload.as_value()), depth=config.act_depth, init=[],
                            attrs={"no_rw_check": 1})
            m.submodules[f"act_mem{r}"] = memory
            write = memory.write_port()
            read = memory.read_port()
            # The write is registered: the last beat lands a cycle after it was taken, long
            # before the first read of its address (a row has at least two steps; reads
            # start at address 0).
            m.d.comb += [write.addr.eq(write_addr[group]), write.data.eq(write_data[group])]
            m.d.sync += write.en.eq(act.valid & act.ready & row_hot[r])
            m.d.comb += read.addr.eq(read_addr[group])
            if self.prefetch:
                # The memory reads in every cycle into a plain register, and `activations`
                # takes that register one cycle after the read was asked for (two with
                # `late`), through a registered enable, not the memories' clock enables.
                if config.fp16:
                    raw = Signal(len(read.data), name=f"raw{r}", reset_less=True)
                    held = Signal(len(read.data), name=f"held{r}", reset_less=True)
                    staged = Signal(data.ArrayLayout(staged_layout(config.align_bits), config.lanes),
                                    name=f"staged{r}", reset_less=True)
                    source = Signal.like(self.activations[r][0], name=f"aligned{r}", reset_less=True)
                    m.d.sync += [held.eq(raw), staged.eq(self._staged(held, er[r])),
                                 source.eq(self._aligned(staged))]
                else:
                    raw = source = Signal.like(self.activations[r][0], name=f"raw{r}", reset_less=True)
                m.d.sync += raw.eq(read.data)
                for c, activations in enumerate(self.activations[r]):
                    with m.If(take[c][group]):
                        m.d.sync += activations.eq(source)
            else:
                m.d.comb += read.en.eq(self.read_enable)
                m.d.sync += self.activations[r][0].eq(read.data)

        m.d.comb += act.ready.eq(self.loading)
        m.d.sync += self.start.eq(0)
        with m.If(self.loading & first_beat):
            m.d.sync += [self.family_id.eq(self._family), self.groups.eq(self._groups),
                         self.col_tiles.eq(self._col_tiles)]
            if self._fp16 is not None:
                m.d.sync += self.fp16_job.eq(self._fp16)
            for column in self.columns:
                m.d.sync += [column["family_id"].eq(self._family), column["groups"].eq(self._groups),
                             column["col_tiles"].eq(self._col_tiles)]
        with m.If(act.valid & act.ready):
            m.d.sync += [load_addr.eq(load_addr + 1), first_beat.eq(0), row_end.eq(load_addr == row_penult_addr)]
            with m.If(row_end):
                m.d.sync += [load_addr.eq(0), row_end.eq(0), row_hot.eq(row_hot << 1)]
                with m.If(last_row):
                    m.d.sync += [self.loading.eq(0), first_beat.eq(1), self.start.eq(1), row_hot.eq(1)]
        with m.If(self.reload):
            m.d.sync += self.loading.eq(1)
        return m

    def _staged(self, raw: Value, er: Value) -> Value:
        """A row's read data after the aligner's first stage (``hdl.fp16_align.staged_layout``)."""
        config = self.config
        bits = config.act_field_bits
        int8 = ~self.fp16_job if config.activations == "both" else None
        return Cat(staged_lane_value(raw[bits * lane:bits * (lane + 1)], er, config.align_bits, int8)
                   for lane in range(config.lanes))

    def _aligned(self, staged: Value) -> Value:
        """A row's data as the PEs take it: aligned FP16 significands (an int8 job: its int8s)."""
        return Cat(aligned_lane(lane, self.config.align_bits) for lane in staged)

    def _track_exponents(self, m: Module, first_beat: Value, load_addr: Value, row_hot: Value) -> list[Signal]:
        """Each row's exponent ``er`` and the job's ``invalid``, kept while the job loads."""
        config, act = self.config, self._act
        # Stage A: each lane's exponent, whether a lane is Inf or NaN, and where the beat goes,
        # registered; then the beat's largest exponent through a tree with a register after
        # every level but the last (hdl.fp16_align.max_tree); stage B: the row's exponent and
        # the job's flag. A row's `er` is final `3 + tree stages` cycles after its last beat
        # (5 at 8 lanes), long before its first aligned read (about 10 cycles more would still
        # be in time in tests/test_pe_array_fp16.py, whose weights wait in the stream: the
        # earliest first read).
        bits = config.act_field_bits
        lanes = [act.payload.as_value()[bits * lane:bits * (lane + 1)] for lane in range(config.lanes)]
        lane_e = [Signal(EXPONENT_FIELD_BITS, name=f"fp16_lane_e{lane}", reset_less=True)
                  for lane in range(config.lanes)]
        a_bad, a_valid = Signal(name="fp16_a_bad"), Signal(name="fp16_a_valid")
        a_row = Signal(config.rows, name="fp16_a_row")
        a_row_first, a_job_first = Signal(name="fp16_a_row_first"), Signal(name="fp16_a_job_first")
        m.d.sync += [*(e.eq(exponent(lane)) for e, lane in zip(lane_e, lanes, strict=True)),
                     a_bad.eq(Cat(special(lane) for lane in lanes).any()),
                     a_valid.eq(act.valid & act.ready & self.fp16_job), a_row.eq(row_hot),
                     a_row_first.eq(load_addr == 0), a_job_first.eq(first_beat)]
        largest, stages = max_tree(m, lane_e, "fp16_max", levels_per_stage=1)
        beat_e = Signal(EXPONENT_FIELD_BITS, name="fp16_beat_e")
        m.d.sync += beat_e.eq(largest)
        beat_bad, b_valid, b_row, b_row_first, b_job_first = (
            delay_line(m, value, stages + 1, name) for value, name in
            ((a_bad, "fp16_bad"), (a_valid, "fp16_valid"), (a_row, "fp16_row"), (a_row_first, "fp16_row_first"),
             (a_job_first, "fp16_job_first")))
        er = [Signal(EXPONENT_FIELD_BITS, name=f"er{r}") for r in range(config.rows)]
        invalid = Signal(name="invalid")
        with m.If(b_valid):
            m.d.sync += invalid.eq(beat_bad | (invalid & ~b_job_first))
        for r in range(config.rows):
            with m.If(b_valid & b_row[r]):
                m.d.sync += er[r].eq(Mux(b_row_first | (beat_e > er[r]), beat_e, er[r]))
            m.d.comb += self.tags[r].eq(Mux(self.fp16_job, Cat(er[r], invalid), 0))
        return er


def drain_results(m: Module, o, accs, *, group_of: list[int], tile_done: list, dequantizing_next: list,
                  job: JobControl, clear: list, fields=None) -> tuple[Signal, Signal]:
    """Move a finished tile into result registers and send it as R beats of C results.

    Every result ``accs[r][c]`` has its own copy of the finishing control:
    ``tile_done[r][c]`` (one cycle) says the tile's last group sum has reached its
    dequantization unit; in the first cycle after that in which the unit does not
    dequantize, ``accs[r][c]`` holds the tile's result. It is copied into a chain of
    row registers then and ``clear[r][c]`` pulses, so the accumulator takes the next
    tile while this one is sent. ``clear`` is a flip-flop (it resets the accumulator
    and loads the result register), so the caller gives ``dequantizing_next[r][c]``:
    whether the unit dequantizes in the next cycle. All results are copied in the same
    cycle; the returned ``copy`` is result (0, 0)'s. The returned ``full`` is high
    while the chain holds rows; the caller must not let another tile finish meanwhile.

    The chain moves one row a cycle towards a ring of ``BUFFER_ENTRIES`` output entries
    (the payload is the entry at the read pointer), and whether it moves is decided a
    cycle ahead into a registered copy per *cell*, a column of a row group (row ``r`` is
    in group ``group_of[r]``): no row multiplexer, and no shift enable that depends on
    ``o.ready`` at all (the decision assumes no pop) and fans out to every result bit of
    a tall array. After the copy of the job's last tile ``job.reload`` pulses.

    ``fields(payload)`` lists the pieces of a beat that ``accs[r]`` fill, in order
    (default: ``payload[c]``, one per result); a row may carry more than its results
    (an FP16 build's exponent and flag, :func:`result_fields`), with the control of a
    result of its row.
    """
    groups, cols = max(group_of) + 1, len(accs[0])
    if fields is None:
        def fields(payload):
            return [payload[c] for c in range(cols)]
    copies = [[Signal(name=f"copy{r}_{c}") for c in range(cols)] for r in range(len(accs))]
    for r, row in enumerate(copies):
        for c, copy in enumerate(row):
            finishing = Signal(name=f"finishing{r}_{c}")     # the tile's last group is being dequantized
            finishing_next = (finishing & ~copy) | tile_done[r][c]
            m.d.sync += [finishing.eq(finishing_next), copy.eq(finishing_next & ~dequantizing_next[r][c])]
            m.d.comb += clear[r][c].eq(copy)
    copy = copies[0][0]

    rows = len(accs)
    chain = [[Signal.like(acc, name=f"result{r}_{c}", reset_less=True) for c, acc in enumerate(row)]
             for r, row in enumerate(accs)]
    # The rows still in the chain, as a thermometer code (held[i] = more than i rows left).
    held = Signal(rows)
    tiles_left = Signal.like(job.col_tiles)      # counts down: a zero test instead of a compare
    # The output buffer: a ring of entries, `filled` the entries held as a thermometer
    # code (filled[0] = o.valid).
    entries = [Signal.like(o.payload, name=f"buffer{i}", reset_less=True) for i in range(BUFFER_ENTRIES)]
    filled = Signal(BUFFER_ENTRIES)
    # `advance` (this cycle) was decided in the last one; its copies: one per cell, one
    # per slice of the buffer (a column's results in SLICE_BITS pieces), one for the
    # buffer's state and the counters.
    widths = [len(Value.cast(value)) for value in chain[0]]
    slices = [(c, low, min(low + SLICE_BITS, widths[c]))
              for c in range(cols) for low in range(0, widths[c], SLICE_BITS)]
    advance_next = Signal()
    advance = replicas(m, advance_next, groups * cols + len(slices) + 1, "advance")
    push = advance[-1]

    with m.If(job.start):
        m.d.sync += tiles_left.eq(job.col_tiles - 1)
    for r, row in enumerate(accs):
        for c, acc in enumerate(row):
            with m.If(copies[r][c]):
                m.d.sync += chain[r][c].eq(acc)
            if r + 1 < rows:
                with m.Elif(advance[group_of[r] * cols + c]):
                    m.d.sync += chain[r][c].eq(chain[r + 1][c])

    # A push writes the entry at the write pointer, a pop moves the read pointer; both
    # pointers are one-hot, with a copy per slice, and o.payload is the entry at the
    # read pointer (an AND-OR of the entries).
    pop = o.valid & o.ready
    up, down = Cat(C(1, 1), filled[:-1]), filled[1:]
    m.d.sync += filled.eq(Mux(push & ~pop, up, Mux(pop & ~push, down, filled)))
    m.d.comb += o.valid.eq(filled[0])

    def rotated(pointer):
        return Cat(pointer[-1], pointer[:-1])

    for index, (c, low, high) in enumerate(slices):
        push_s = advance[groups * cols + index]
        write_s, read_s = (Signal(BUFFER_ENTRIES, name=f"{name}_s{index}", init=1, attrs={REPLICA_ATTR: 1})
                           for name in ("write", "read"))
        with m.If(push_s):
            m.d.sync += write_s.eq(rotated(write_s))
        with m.If(pop):
            m.d.sync += read_s.eq(rotated(read_s))
        bottom = Value.cast(chain[0][c])[low:high]
        for i, entry in enumerate(entries):
            with m.If(push_s & write_s[i]):
                m.d.sync += Value.cast(fields(entry)[c])[low:high].eq(bottom)
        m.d.comb += Value.cast(fields(o.payload)[c])[low:high].eq(functools.reduce(operator.or_, (
            Value.cast(fields(entry)[c])[low:high] & read_s[i].replicate(high - low)
            for i, entry in enumerate(entries))))

    # A copy fills the chain; a push takes its bottom row.
    held_next = Signal.like(held)
    m.d.comb += held_next.eq(Mux(copy, (1 << rows) - 1, Mux(push, held >> 1, held)))
    full = held[0]
    # A push in the next cycle needs a free entry even if nothing is popped in this cycle
    # or the next: the entries held now plus this cycle's push must leave one free.
    no_room = filled[-1] | (filled[-2] & push)
    m.d.comb += advance_next.eq(held_next[0] & ~no_room)
    m.d.sync += held.eq(held_next)
    with m.If(copy):
        m.d.sync += tiles_left.eq(tiles_left - 1)
        with m.If(tiles_left == 0):
            m.d.comb += job.reload.eq(1)
    return full, copy
