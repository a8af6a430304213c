"""The KV quantize engine's encoder: a group's buffer words -> the lane encoders -> blocks of channel records.

:class:`EncodeControl` walks a group block by block (``lanes`` channels), issuing each
block's statistics read and its ``Tg`` buffer reads; :class:`LanePipeline` turns the
read words into each channel's codes (2-bit, 1-bit or ternary, or the FFT lane
records' sign bits) and hands a complete block to the emitter.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_emit import Fmt, lane_layout
from .kv_quant_fill import stats_layout
from .kv_quant_groups import group_layout
from .kv_spectral import record_layout
from .kv_units import code_2bit, code_i2, index_bits, magnitude, popcount, six_distance

__all__ = ["issue_layout", "EncodeControl", "LanePipeline"]


def issue_layout(config: KvConfig) -> data.StructLayout:
    """The tags of a buffer read: ``valid``, the block's ``last`` token, the group's ``final``
    block, and the ``fmts`` (:class:`~hdl.kv_emit.Fmt`, 2 bits per lane) of the block's channels."""
    return data.StructLayout({"valid": 1, "last": 1, "final": 1, "fmts": 2 * config.lanes})


class EncodeControl(wiring.Component):
    """Walks one group at a time through the lane pipeline's reads.

    ``group.ready`` is high in ``Idle``, where a group is taken as soon as it is offered;
    ``slot``, ``value``, ``salient`` (a salient path's slot),
    ``mask`` and ``ternary`` (a value group whose normal channels are ternary) hold it
    from the next cycle until the next group is taken, and ``start`` (one cycle, with the
    take) starts the preamble. The control then offers the first block's statistics read
    (``stats_issue``, ``stats_addr``), then per block ``Tg`` buffer reads (``issue`` and
    ``buf_addr``, one a cycle, with the block's channel formats), the next block's
    statistics read with a block's last token. Each read moves on only with
    ``advance`` (the pipeline moves). With the last token of a block it reads the block's
    FFT lane records (``read_en``, ``read_base``, ``read_parity``; repeated while it
    waits, harmless) and sets ``normal``, the block's normal channels, as the read
    advances. With the group's last read ``clear_full`` frees the slot (one cycle); the
    control waits in ``Drain`` for the last block's hand-over (``handoff & final &
    advance``) before it takes the next group.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.
    buffer_addr_bits, stats_addr_bits : int
        Address widths of the group buffer and the statistics memory.

    Members
    -------
    value_2bit : In(1)
        Values use the 2-bit format (else ternary).
    group : In(stream.Signature(group_layout(config, bank=fft)))
        The groups, ``bank`` only with the FFT built in.
    advance, handoff, final : In(1)
        The lane pipeline's state (see :class:`LanePipeline`).
    issue : Out(issue_layout(config))
        The buffer read's tags (comb).
    stats_issue : Out(1)
        A statistics read is offered (comb).
    buf_addr, stats_addr : Out(buffer_addr_bits), Out(stats_addr_bits)
        The read addresses (comb).
    clear_full : Out(slots)
        Bit per slot: every read of the slot is done (comb).
    start : Out(1)
        A group was taken (comb).
    slot, value, salient, mask, ternary : Out(range(slots)), Out(1), Out(1), Out(D), Out(1)
        The group in work (registers; ``ternary`` from them).
    read_en, read_base, read_parity, normal : Out(1), Out(range(fft_points + 1)), Out(1), Out(lanes)
        The FFT lane records' read and the block's normal channels; only with the FFT built in.
    """

    def __init__(self, config: KvConfig, buffer_addr_bits: int, stats_addr_bits: int):
        self.config = config
        fft = bool(config.fft_points)
        members = {
            "value_2bit": In(1),
            "group": In(stream.Signature(group_layout(config, bank=fft))),
            "advance": In(1), "handoff": In(1), "final": In(1),
            "issue": Out(issue_layout(config)),
            "stats_issue": Out(1),
            "buf_addr": Out(buffer_addr_bits),
            "stats_addr": Out(stats_addr_bits),
            "clear_full": Out(config.slots),
            "start": Out(1),
            "slot": Out(range(config.slots)), "value": Out(1), "salient": Out(1), "mask": Out(config.d),
            "ternary": Out(1),
        }
        if fft:
            members.update({"read_en": Out(1), "read_base": Out(range(config.fft_points + 1)),
                            "read_parity": Out(1), "normal": Out(config.lanes)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, blocks = config.lanes, config.group_tokens, config.blocks
        fft = bool(config.fft_points)
        slot, value, salient, mask = self.slot, self.value, self.salient, self.mask
        advance, issue, group = self.advance, self.issue, self.group.payload
        count = Signal(range(tg + 1))
        enc_block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        two_bit_values = salient | self.value_2bit
        ternary = Fmt.B3 if config.ternary_layout == "b3" else Fmt.I2
        block_mask = mask.word_select(enc_block, lanes)
        issue_fmts = Cat(Mux(value, Mux(two_bit_values, Fmt.TWO_BIT, ternary),
                             Mux(block_mask[lane], Fmt.TWO_BIT, Fmt.ONE_BIT)) for lane in range(lanes))
        m.d.comb += self.ternary.eq(value & ~two_bit_values)
        # The block whose statistics are read next (first in Stats, then with each block's last token).
        stats_block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        m.d.comb += self.stats_addr.eq(Cat(stats_block, slot))
        if blocks > 1:
            with m.If(self.stats_issue & advance):
                m.d.sync += stats_block.eq(Mux(stats_block == blocks - 1, 0, stats_block + 1))
        if fft:
            lane_base = Signal(range(config.fft_points + 1))   # FFT lane of the block's first normal channel
            group_parity = Signal()                             # the group's bank of lane records

        with m.FSM(name="encoder"):
            with m.State("Idle"):
                m.d.comb += self.group.ready.eq(1)
                with m.If(self.group.valid):
                    m.d.sync += [slot.eq(group.slot), value.eq(group.value), mask.eq(group.mask),
                                 salient.eq(group.slot >= config.slots_per_path)]
                    if fft:
                        m.d.sync += [group_parity.eq(group.bank), lane_base.eq(0)]
                    m.d.comb += self.start.eq(1)
                    m.next = "Stats"
            with m.State("Stats"):
                m.d.comb += self.stats_issue.eq(1)
                with m.If(advance):
                    m.d.sync += count.eq(0)
                    m.next = "Tokens"
            with m.State("Tokens"):
                last_token, last_block = count == tg - 1, enc_block == blocks - 1
                m.d.comb += [self.buf_addr.eq(Cat(enc_block, count[:index_bits(tg)], slot)),
                             issue.valid.eq(1), issue.last.eq(last_token), issue.final.eq(last_block),
                             issue.fmts.eq(issue_fmts)]
                with m.If(last_token & ~last_block):                 # the next block's statistics
                    m.d.comb += self.stats_issue.eq(1)
                if fft:                                              # the block's FFT lane records
                    # Read while the last token is offered (a repeated read is harmless; the
                    # one after the advancing cycle lands last): not behind `advance`.
                    with m.If(last_token):
                        m.d.comb += [self.read_en.eq(1), self.read_base.eq(lane_base),
                                     self.read_parity.eq(group_parity)]
                    with m.If(last_token & advance):
                        m.d.sync += [lane_base.eq(lane_base + popcount(~block_mask)), self.normal.eq(~block_mask)]
                with m.If(advance):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last_token):
                        m.d.sync += count.eq(0)
                        if blocks > 1:
                            m.d.sync += enc_block.eq(Mux(last_block, 0, enc_block + 1))
                        with m.If(last_block):
                            m.d.comb += self.clear_full.eq(1 << slot)     # every read of the slot is done
                            m.next = "Drain"
            with m.State("Drain"):                                   # the group's last block reaches the emitter
                with m.If(self.handoff & self.final & advance):
                    m.next = "Idle"
        return m


class LanePipeline(wiring.Component):
    """The lane encoders: buffer words and statistics -> each block's channel records for the emitter.

    A pipeline that moves only with ``advance``: read issued -> in the memory (A) -> raw
    buffer word (B) -> ``6 (x - mn)``, ``|x|``, sign (C) -> codes shift in (D). A
    statistics read (``stats_issue``) moves along with the buffer reads; the block's
    statistics reach stage C with its first element. A block's codes are complete when its
    last token has shifted in (``handoff``: stage D holds a block's last token); then
    ``advance`` is ``emitter_idle & preamble_done``, and the block goes to the emitter
    (``load``, one cycle) as the pipeline moves; otherwise ``advance`` is high. A
    read's codes reach stage D four advancing cycles after its issue, one read a cycle.
    The memories' ``data`` are sampled a cycle after their read (``en`` is ``advance``).

    With the FFT built in, a key group's 1-bit channels take the sign bits and ``S`` of
    their FFT lane records instead: the records of a block (read with its last token,
    ``read_en``) land a cycle after the read, and normal channel ``j`` of the block
    (``normal``) takes the record of its rank among the block's normal channels.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.
    banks : int
        Lane records read at once (the FFT stage's ``banks``; 0 without the FFT).

    Members
    -------
    issue : In(issue_layout(config))
        The tags of the buffer read issued now.
    stats_issue : In(1)
        A statistics read is issued now.
    buf_data, stats_data : In(buffer_bits), In(stats_layout(config))
        The memories' read data.
    emitter_idle, preamble_done : In(1)
        The emitter can take a block; the group's preamble is out.
    advance, handoff, final, load : Out(1)
        The pipeline moves; stage D holds a block's last token; ... of the group's last
        block; the block goes to the emitter now.
    lanes : Out(ArrayLayout(lane_layout(config), lanes))
        The block at stage D, for the emitter.
    value, read_en, normal, records : In(1), In(1), In(lanes), In(ArrayLayout(record_layout(config), banks))
        The group is values, the lane records read, the block's normal channels, the
        records read; only with the FFT built in.
    """

    def __init__(self, config: KvConfig, banks: int = 0):
        self.config, self.banks = config, banks
        members = {
            "issue": In(issue_layout(config)),
            "stats_issue": In(1),
            "buf_data": In(config.buffer_bits),
            "stats_data": In(stats_layout(config)),
            "emitter_idle": In(1), "preamble_done": In(1),
            "advance": Out(1), "handoff": Out(1), "final": Out(1), "load": Out(1),
            "lanes": Out(data.ArrayLayout(lane_layout(config), config.lanes)),
        }
        if config.fft_points:
            members.update({"value": In(1), "read_en": In(1), "normal": In(config.lanes),
                            "records": In(data.ArrayLayout(record_layout(config), banks))})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg = config.lanes, config.group_tokens
        tags = issue_layout(config)
        at_a, at_b, at_c, at_d = (Signal(tags, name=n) for n in ("at_a", "at_b", "at_c", "at_d"))
        handoff = at_d.valid & at_d.last
        advance = ~handoff | (self.emitter_idle & self.preamble_done)
        m.d.comb += [self.handoff.eq(handoff), self.final.eq(at_d.final), self.advance.eq(advance)]
        stats_at_b = Signal()

        stats_lane = data.StructLayout({"mn": signed(config.mn_bits), "r": unsigned(config.r_bits),
                                        "s": unsigned(config.s_bits), "r3": config.r_bits + 2,
                                        "r5": config.r_bits + 3})
        # Data registers need no reset: the tags (valid) say what they hold.
        raw_stats = Signal(stats_layout(config), reset_less=True)
        lane_stats = Signal(data.ArrayLayout(stats_lane, lanes), reset_less=True)      # the block at stage C
        raw = Signal(config.buffer_bits, reset_less=True)
        c_six = [Signal(config.r_bits + 3, name=f"six{lane}", reset_less=True) for lane in range(lanes)]
        c_mag = [Signal(config.in_bits, name=f"mag{lane}", reset_less=True) for lane in range(lanes)]
        c_neg = Signal(lanes, reset_less=True)
        c_stats, d_stats = (Signal(data.ArrayLayout(stats_lane, lanes), name=n, reset_less=True)
                            for n in ("c_stats", "d_stats"))
        codes = [Signal(2 * tg, name=f"codes{lane}", reset_less=True) for lane in range(lanes)]

        with m.If(advance):
            m.d.sync += [at_a.eq(self.issue), at_b.eq(at_a), at_c.eq(at_b), at_d.eq(at_c), raw.eq(self.buf_data),
                         stats_at_b.eq(self.stats_issue), c_stats.eq(lane_stats), d_stats.eq(c_stats)]
            with m.If(stats_at_b):
                m.d.sync += raw_stats.eq(self.stats_data)
            for lane in range(lanes):
                x = raw.word_select(lane, config.in_bits).as_signed()
                m.d.sync += [c_six[lane].eq(six_distance(x, lane_stats[lane].mn, config.in_bits)),
                             c_mag[lane].eq(magnitude(x)), c_neg[lane].eq(x[-1])]
                st, fmt = c_stats[lane], at_c.fmts.word_select(lane, 2)
                code = Mux(fmt == Fmt.TWO_BIT, code_2bit(c_six[lane], st.r, st.r3, st.r5),
                           Mux(fmt == Fmt.ONE_BIT, ~c_neg[lane], code_i2(c_mag[lane], c_neg[lane], st.s, tg)))
                with m.If(at_c.valid):
                    m.d.sync += codes[lane].eq(Cat(codes[lane][2:], code))
        # The statistics one stage behind their raw read: they reach stage C with the block's first element.
        stats_ready = Signal()
        with m.If(advance):
            m.d.sync += stats_ready.eq(stats_at_b)
            with m.If(stats_ready):
                for lane in range(lanes):
                    got = raw_stats[lane]
                    r = (got.mx - got.mn)[:config.r_bits]
                    m.d.sync += [lane_stats[lane].mn.eq(got.mn), lane_stats[lane].r.eq(r),
                                 lane_stats[lane].r3.eq(r + (r << 1)), lane_stats[lane].r5.eq(r + (r << 2)),
                                 lane_stats[lane].s.eq(got.s)]

        lane_codes = codes
        lane_s = [d_stats[lane].s for lane in range(lanes)]
        if config.fft_points:
            lane_codes, lane_s = self._records(m, codes, d_stats, at_d)
        for lane in range(lanes):
            m.d.comb += [self.lanes[lane].codes.eq(lane_codes[lane]),
                         self.lanes[lane].fmt.eq(at_d.fmts.word_select(lane, 2)),
                         self.lanes[lane].mn.eq(d_stats[lane].mn), self.lanes[lane].r.eq(d_stats[lane].r),
                         self.lanes[lane].s.eq(lane_s[lane])]
        with m.If(handoff & advance):
            m.d.comb += self.load.eq(1)
        return m

    def _records(self, m: Module, codes: list, d_stats, at_d) -> tuple[list, list]:
        """The lanes' codes and ``s`` with the FFT: a key group's 1-bit channels take their lane records'."""
        config, banks = self.config, self.banks
        layout = record_layout(config)
        # A block's lane records land a cycle after their read, long before its hand-over;
        # its normal channel j takes the record of its rank among the block's normal channels.
        records_landing = Signal()
        m.d.sync += records_landing.eq(self.read_en)
        records = [Signal(layout, name=f"lane_record{lane}", reset_less=True) for lane in range(config.lanes)]
        every = Cat(*[self.records[k] for k in range(banks)])
        with m.If(records_landing):
            for lane in range(config.lanes):
                rank = popcount(self.normal[:lane])
                m.d.sync += records[lane].eq(every.word_select(rank[:max(index_bits(banks), 1)], layout.size)
                                             if banks > 1 else every)
        lane_codes, lane_s = [], []
        for lane in range(config.lanes):
            transformed = ~self.value & (at_d.fmts.word_select(lane, 2) == Fmt.ONE_BIT)
            signs = Cat(*[Cat(records[lane].signs[t], Const(0, 1)) for t in range(config.group_tokens)])
            lane_codes.append(Mux(transformed, signs, codes[lane]))
            lane_s.append(Mux(transformed, records[lane].s, d_stats[lane].s))
        return lane_codes, lane_s
