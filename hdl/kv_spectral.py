"""The quantize engine's FFT stage: a key group's normal channels -> 1-bit FFT lane records.

For each token of a ranked key group (in its buffer slot), the stage reads the token's
D / lanes buffer words, gathers its N normal channels in ascending channel order
(:func:`gather`), transforms them (:class:`hdl.kv_fft.FftCore`) and folds the N
half-spectrum lanes into per-lane records: the sign bits along tokens (``b = lane >= 0``)
and ``S = sum |lane|`` (golden's 1-bit sign-absmean of the lanes). The records live in
two banks of block memories (a group's lanes while the encoder reads the previous
group's), ``banks`` lanes wide so that the encoder reads any ``banks`` consecutive lane
records in one cycle (:attr:`SpectralStage.records`, the first at ``read_base``).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_fft import FftCore
from .kv_units import index_bits, magnitude, popcount, register_stream

__all__ = ["SpectralStage", "InverseStage", "gather", "record_layout", "token_cycles"]


def record_layout(config: KvConfig) -> data.StructLayout:
    """One FFT lane's record: its sign bits along tokens (token 0 lowest) and ``S``."""
    return data.StructLayout({"signs": config.group_tokens, "s": unsigned(config.s_fft_bits)})


def token_cycles(config: KvConfig) -> int:
    """Steady-state cycles per token of the FFT stage (0 without the FFT): the slower of the
    gather (D / lanes reads and the hand-over to the core) and the core."""
    points = config.fft_points
    if not points:
        return 0
    return max(config.blocks + 2, FftCore.vector_cycles(points, config.fft_units))


def consecutive_rows(base, banks: int, rows: int, parity):
    """Bank addresses that read the ``banks`` consecutive entries from entry ``base`` (entry
    ``e`` in bank ``e mod banks``, row ``e // banks``; a bank's ``rows`` rows per ``parity``):
    ``(base mod banks, [address of bank k])``. Output ``k`` is then bank ``(base + k) mod banks``."""
    base_bank = base[:index_bits(banks)] if banks > 1 else Const(0, 1)
    first_row = base >> index_bits(banks) if banks > 1 else base
    addresses = []
    for k in range(banks):
        # the last bank is never behind the base (and `k < base_bank` would be constant)
        row = first_row + (k < base_bank) if k < banks - 1 else first_row
        addresses.append(Cat(row[:index_bits(rows)], parity) if rows > 1 else parity)
    return base_bank, addresses


def gather(m: Module, targets: list[Signal], values, keep, base, enable, name: str = "gather"):
    """With ``enable``, append the kept ``values`` (``keep`` bit j for value j) to ``targets``
    from index ``base``; return the number kept and the targets' values after the append.

    The kept values go, in order, to ``targets[base]``, ``targets[base + 1]``, ... A value's
    column ``(base + its rank among the kept) mod len(values)`` picks it (an AND-OR
    select), and target ``i`` loads column ``i mod len(values)`` when ``base <= i < base +
    kept``: no multiplexer as wide as the targets. The values after the append let the
    FFT core take a token in the cycle its last values arrive.
    """
    width = len(values)
    rank = [popcount(keep[:j]) for j in range(width)]
    columns = []
    for col in range(width):
        picks = [Mux(keep[j] & ((base + rank[j])[:index_bits(width)] == col) if width > 1 else keep[j],
                     values[j], 0) for j in range(width)]
        column = Signal.like(targets[0], name=f"{name}_col{col}")
        merged = picks[0]
        for pick in picks[1:]:
            merged = merged | pick
        m.d.comb += column.eq(merged)
        columns.append(column)
    kept = popcount(keep)
    after = []
    for i, target in enumerate(targets):
        load = Signal(name=f"{name}_load{i}")
        m.d.comb += load.eq(enable & (base <= i) & (i < base + kept))
        with m.If(load):
            m.d.sync += target.eq(columns[i % width])
        after.append(Mux(load, columns[i % width], target))
    return kept, after


class SpectralStage(wiring.Component):
    """One ranked key group at a time: ``start`` (with ``slot``, ``mask``) while ``busy`` is low.

    ``busy`` falls when the group's lane records are complete, in bank ``parity``
    (which flips with every ``start``). Buffer reads: ``buf_addr`` / ``buf_en`` ->
    ``buf_data`` a cycle later. Record reads: ``read_en`` with ``read_parity`` and
    ``read_base`` -> ``records[k]`` = lane ``read_base + k`` a cycle later.
    """

    def __init__(self, config: KvConfig, buffer_addr_bits: int):
        self.config = config
        self.points = config.fft_points
        self.banks = min(config.lanes, self.points)
        self.core = FftCore(self.points, config.in_bits, config.fft_units, out_lanes=self.banks)
        super().__init__({
            "start": In(1),
            "slot": In(range(config.slots)),
            "mask": In(config.d),
            "busy": Out(1),
            "parity": Out(1),
            "buf_addr": Out(buffer_addr_bits),
            "buf_en": Out(1),
            "buf_data": In(config.buffer_bits),
            "read_en": In(1),
            "read_parity": In(1),
            "read_base": In(range(self.points + 1)),
            "records": Out(data.ArrayLayout(record_layout(config), self.banks)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, blocks = config.lanes, config.group_tokens, config.blocks
        points, banks = self.points, self.banks
        m.submodules.core = core = self.core
        slot = Signal.like(self.slot)
        normal = Signal(config.d)                           # ~mask of the group

        # ---- read and gather: token by token, D / lanes words each, into the core's input.
        token = Signal(range(tg))
        block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        # A read's data arrives from the block RAM (`landing`), then from a register (`landed`),
        # with the block's normal channels beside it.
        landing, landing_last, landed, landed_last = Signal(), Signal(), Signal(), Signal()
        landing_block = Signal.like(block) if blocks > 1 else Const(0, 0)
        raw = Signal(len(self.buf_data), reset_less=True)
        keep = Signal(lanes, reset_less=True)
        gathered = Signal(range(points + 1))                # normal channels of the token so far
        inputs = [Signal(config.in_bits, name=f"x{k}", reset_less=True) for k in range(points)]
        full = Signal()                                     # `inputs` holds a whole token
        m.d.comb += self.buf_addr.eq(Cat(block, token, slot))
        m.d.sync += [landing.eq(self.buf_en), landing_last.eq(self.buf_en & (block == blocks - 1)),
                     landed.eq(landing), landed_last.eq(landing & landing_last),
                     raw.eq(self.buf_data), keep.eq(normal.word_select(landing_block, lanes))]
        if blocks > 1:
            m.d.sync += landing_block.eq(block)
        values = [raw.word_select(j, config.in_bits) for j in range(lanes)]
        kept, after = gather(m, inputs, values, keep, gathered, landed)
        completes = landed & landed_last                    # the token's last values arrive
        with m.If(landed):
            m.d.sync += gathered.eq(gathered + kept)
        # The core takes a token as its last values arrive, or later from `inputs` (`full`).
        m.d.comb += [core.i.valid.eq(full | completes), core.i.payload.eq(Cat(after))]
        with m.If(completes):
            m.d.sync += [full.eq(~core.i.ready), gathered.eq(0)]
        with m.Elif(core.i.ready):
            m.d.sync += full.eq(0)

        # ---- lanes -> records: read-modify-write, one beat of `banks` lanes per cycle.
        depth = 2 * points // banks
        memories = [Memory(shape=record_layout(config), depth=depth, init=[]) for _ in range(banks)]
        writes, updates, reads = [], [], []
        for k, memory in enumerate(memories):
            m.submodules[f"records{k}"] = memory
            writes.append(memory.write_port())
            updates.append(memory.read_port(transparent_for=(writes[-1],)))
            reads.append(memory.read_port())
        beat = Signal(range(points // banks)) if points > banks else Const(0, 0)
        out_token = Signal(range(tg))
        parity = self.parity
        m.d.comb += core.o.ready.eq(1)
        taken = core.o.valid & core.o.ready
        held = Signal(core.o.payload.shape(), reset_less=True)
        held_valid, held_first, held_last = Signal(), Signal(), Signal()
        held_token = Signal.like(out_token)
        last_beat = beat == points // banks - 1
        m.d.sync += [held_valid.eq(taken), held.eq(core.o.payload), held_token.eq(out_token),
                     held_first.eq(out_token == 0), held_last.eq((out_token == tg - 1) & last_beat)]
        with m.If(taken):
            if points > banks:
                m.d.sync += beat.eq(beat + 1)
            with m.If(last_beat):
                if points > banks:
                    m.d.sync += beat.eq(0)
                m.d.sync += out_token.eq(out_token + 1)
        for k in range(banks):
            m.d.comb += [updates[k].addr.eq(Cat(beat, parity)), updates[k].en.eq(taken)]
            old = updates[k].data
            lane = held[k]
            new = Signal(record_layout(config), name=f"record{k}")
            sign = ~lane[-1]                                 # b = lane >= 0
            m.d.comb += [new.signs.eq(Mux(held_first, 0, old.signs) | (sign << held_token)),
                         new.s.eq(Mux(held_first, 0, old.s) + magnitude(lane)),
                         writes[k].data.eq(new), writes[k].en.eq(held_valid)]
        write_address = Signal.like(writes[0].addr)
        m.d.sync += write_address.eq(updates[0].addr)
        for k in range(banks):
            m.d.comb += writes[k].addr.eq(write_address)

        # ---- the encoder's reads: `banks` consecutive lanes from read_base, rotated into order.
        base_bank, addresses = consecutive_rows(self.read_base, banks, points // banks, self.read_parity)
        for k in range(banks):
            m.d.comb += [reads[k].addr.eq(addresses[k]), reads[k].en.eq(self.read_en)]
        if banks == 1:
            m.d.comb += self.records[0].eq(reads[0].data)
        else:
            read_bank = Signal.like(base_bank)
            m.d.sync += read_bank.eq(base_bank)
            every = Cat(*[read.data for read in reads])
            for k in range(banks):
                m.d.comb += self.records[k].eq(every.word_select((read_bank + k)[:index_bits(banks)],
                                                                 record_layout(config).size))

        # ---- control: a group at a time.
        with m.FSM(name="spectral"):
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [slot.eq(self.slot), normal.eq(~self.mask), parity.eq(~parity),
                                 token.eq(0), out_token.eq(0)]
                    m.next = "Read"
            with m.State("Read"):
                m.d.comb += self.busy.eq(1)
                # A token's reads start once `inputs` will be free when their data lands: the
                # previous token has gone to the core, or goes in the cycle it completes (an
                # idle core that takes nothing now is still idle then).
                in_flight = landing & landing_last
                can_read = ~full & ~(completes & ~core.i.ready) & \
                    ~(in_flight & ~(core.i.ready & ~core.i.valid))
                if blocks > 1:
                    can_read = can_read | (block != 0)
                with m.If(can_read):
                    m.d.comb += self.buf_en.eq(1)
                    if blocks > 1:
                        m.d.sync += block.eq(Mux(block == blocks - 1, 0, block + 1))
                    with m.If(block == blocks - 1):
                        m.d.sync += token.eq(token + 1)
                        with m.If(token == tg - 1):
                            m.next = "Finish"
            with m.State("Finish"):                          # the last token through the core
                m.d.comb += self.busy.eq(1)
                with m.If(held_valid & held_last):
                    m.next = "Idle"
        return m


class InverseStage(wiring.Component):
    """The dequantize engine's inverse FFT: decoded beats in, beats with their normal channels
    replaced by the inverse FFT of the token's decoded lanes out.

    ``i`` carries a decoded beat (``lanes`` values of one token; for an FFT group the
    normal channels hold the token's decoded lanes, in order), the beat's ``normal``
    channels, ``fft`` (the group is transformed) and ``last`` (the token's last beat).
    Every beat waits in a FIFO while the token's lanes are gathered and transformed;
    the transformed token lands in one of two banks, ``banks`` lanes wide, from which
    each beat takes its normal channels' results. ``o`` carries the beats in order.
    """

    def __init__(self, config: KvConfig, beat: data.StructLayout):
        self.config = config
        self.points = config.fft_points
        self.banks = min(config.lanes, self.points)
        self.core = FftCore(self.points, config.out_bits - 1, config.fft_units, inverse=True, out_lanes=self.banks)
        self.beat = beat
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"beat": beat, "normal": config.lanes, "fft": 1,
                                                        "last": 1}))),
            "o": Out(stream.Signature(beat)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, blocks, points, banks = config.lanes, config.blocks, self.points, self.banks
        rows = points // banks
        m.submodules.core = core = self.core
        m.submodules.fifo = fifo = SyncFIFO(width=len(self.i.payload.as_value()), depth=4 * blocks)

        # ---- gather the lanes of each FFT token into the core's input (as they enter the FIFO).
        inputs = [Signal(core.in_width, name=f"lane{k}", reset_less=True) for k in range(points)]
        gathered = Signal(range(points + 1))
        full = Signal()
        # The incoming beat waits in a register first (the decoder's table select is before it).
        staged = Signal(self.i.payload.shape(), reset_less=True)
        staged_valid = Signal()
        # `inputs` is free when empty or when the core takes it now (core.i.ready is its state only).
        moving = staged_valid & fifo.w_rdy & (~staged.fft | ~full | core.i.ready)
        m.d.comb += [self.i.ready.eq(~staged_valid | moving),
                     fifo.w_en.eq(moving), fifo.w_data.eq(staged.as_value())]
        with m.If(moving):
            m.d.sync += staged_valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [staged.eq(self.i.payload), staged_valid.eq(1)]
        take = moving & staged.fft
        values = [staged.beat.data[j] for j in range(lanes)]
        kept, after = gather(m, inputs, values, staged.normal, gathered, take)
        completes = take & staged.last
        m.d.comb += [core.i.valid.eq(full | completes), core.i.payload.eq(Mux(full, Cat(inputs), Cat(after)))]
        with m.If(take):
            m.d.sync += gathered.eq(gathered + kept)
        with m.If(completes):
            m.d.sync += [full.eq(full | ~core.i.ready), gathered.eq(0)]
        with m.Elif(core.i.ready):
            m.d.sync += full.eq(0)

        # ---- the core's results -> two banks of `banks` lanes a row.
        memories = [Memory(shape=signed(core.out_width), depth=2 * rows, init=[]) for _ in range(banks)]
        row = Signal(range(rows)) if rows > 1 else Const(0, 0)
        write_parity, read_parity = Signal(), Signal()
        ready_tokens = Signal(range(3))
        m.d.comb += core.o.ready.eq(ready_tokens < 2)
        stored = core.o.valid & core.o.ready
        for k, memory in enumerate(memories):
            m.submodules[f"results{k}"] = memory
            port = memory.write_port()
            m.d.comb += [port.addr.eq(Cat(row, write_parity)), port.data.eq(core.o.payload[k]), port.en.eq(stored)]
        stored_token = stored & (row == rows - 1)
        with m.If(stored):
            if rows > 1:
                m.d.sync += row.eq(row + 1)
            with m.If(stored_token):
                m.d.sync += write_parity.eq(~write_parity)

        # ---- merge: the FIFO's head beat takes its normal channels from the read bank.
        head = Signal(self.i.payload.shape())
        m.d.comb += head.as_value().eq(fifo.r_data)
        lane_base = Signal(range(points + 1))
        base_bank, addresses = consecutive_rows(lane_base, banks, rows, read_parity)
        results = []
        for memory, address in zip(memories, addresses, strict=True):
            port = memory.read_port(domain="comb")
            m.d.comb += port.addr.eq(address)
            results.append(port.data)
        merged = Signal(self.beat)
        m.d.comb += merged.position.eq(head.beat.position)
        every = Cat(*results)
        for j in range(lanes):
            rank = popcount(head.normal[:j])
            choice = (every.word_select((base_bank + rank)[:index_bits(banks)], core.out_width) if banks > 1
                      else every)
            m.d.comb += merged.data[j].eq(Mux(head.fft & head.normal[j], choice, head.beat.data[j]))
        can_send = fifo.r_rdy & (~head.fft | (ready_tokens != 0))
        send_ready = register_stream(m, self.o, can_send, merged)
        popped = can_send & send_ready
        m.d.comb += fifo.r_en.eq(popped)
        released = popped & head.fft & head.last
        with m.If(popped & head.fft):
            m.d.sync += lane_base.eq(lane_base + popcount(head.normal))
            with m.If(head.last):
                m.d.sync += [lane_base.eq(0), read_parity.eq(~read_parity)]
        m.d.sync += ready_tokens.eq(ready_tokens + stored_token - released)
        return m
