"""The VidKV KV-cache quantize engine (spec/vidkv.md sections 2-6).

::

    i stream (lanes channels of a token per beat, + salient)
      |
      v  fill: path (key / value / salient) -> the path's group slot
    group buffer (ColumnMemory:                     stats (ColumnMemory: mn, mx, S per channel,
      |   slots x Tg tokens x D/lanes beats)           read-modify-write per beat)
      v  encoder, per completed group (slot FIFO, in completion order):
    [ranker: the n_hi widest key channels] -> header, positions (STP), mask (keys)
    -> per block of lanes channels: Tg buffer reads -> lane encoders (2-bit / 1-bit / ternary)
    -> emitter (records of the block's channels; b3 digits -> trit packer) -> o stream

A path fills one of its slots while the encoder works on another (and, for keys
with a ranking, the ranker on a third), so input continues during encoding. Values
with STP (``stp`` built in and the run-time ``stp`` input high) send salient tokens
to a second path that forms its own 2-bit groups; every STP group also records its
tokens' positions. The run-time inputs ``kind`` (0 keys,
1 values), ``value_2bit`` and ``stp`` must not change while a group is incomplete
(change them after a reset). The output stream's format is golden/vidkv_stream.py's.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig
from arch.vidkv import HEADER, MASK, POSITION, TRITS

from .columns import ColumnMemory
from .kv_emit import Emitter, Fmt, beat_layout
from .kv_spectral import SpectralStage, record_layout
from .kv_units import (
    ChannelRanker,
    TritPacker,
    code_2bit,
    code_i2,
    index_bits,
    magnitude,
    popcount,
    register_stream,
    six_distance,
)

__all__ = ["KvQuantizer", "input_layout"]


def input_layout(config: KvConfig) -> data.StructLayout:
    """An input beat: ``lanes`` channels of one token and the token's salient flag."""
    return data.StructLayout({"data": data.ArrayLayout(signed(config.in_bits), config.lanes), "salient": 1})


def _stats_layout(config: KvConfig) -> data.ArrayLayout:
    lane = data.StructLayout({"mn": signed(config.mn_bits), "mx": signed(config.mn_bits),
                              "s": unsigned(config.s_bits)})
    return data.ArrayLayout(lane, config.lanes)


class KvQuantizer(wiring.Component):
    """Quantizes a stream of key or value tokens into tagged beats of packed groups.

    Ports: ``i`` (tokens, D / lanes beats each, channel order; ``salient`` is read on a
    token's first beat), ``o`` (beats ``{data, tag}``), and the run-time mode
    ``kind``, ``value_2bit``, ``stp``.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "kind": In(1),
            "value_2bit": In(1),
            "stp": In(1),
            "i": In(stream.Signature(input_layout(config))),
            "o": Out(stream.Signature(beat_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, blocks, slots = config.lanes, config.group_tokens, config.blocks, config.slots
        paths = 2 if config.stp else 1
        stp_on = self.stp & self.kind if config.stp else Const(0)

        buffer = m.submodules.buffer = ColumnMemory(config.buffer_bits, config.buffer_depth,
                                                    read_ports=2 if config.fft_points else 1)
        # The statistics: read-modify-write by the fill, read by the encoder and the ranker;
        # a copy per reader, each a block RAM's output straight into a register.
        n_hi = config.n_hi
        ranking = 0 < n_hi < config.d
        stats_layout = _stats_layout(config)
        stats = m.submodules.stats = ColumnMemory(stats_layout.size, slots * blocks,
                                                  read_ports=3 if ranking else 2, replicate=True)
        buf_w, buf_r = buffer.write, buffer.reads[0]

        def viewed(port):
            return SimpleNamespace(addr=port.addr, en=port.en, data=data.View(stats_layout, port.data))

        stats_w = viewed(stats.write)
        stats_rmw = viewed(stats.reads[0])            # not transparent: s2 forwards the writes it missed
        stats_r = viewed(stats.reads[1])
        if config.stp:
            # A slot's positions are read only once it is complete: no read meets a write.
            positions = m.submodules.positions = Memory(shape=config.position_bits, depth=slots * tg, init=[],
                                                        attrs={"no_rw_check": 1})
            pos_w, pos_r = positions.write_port(), positions.read_port()
            m.d.comb += pos_r.en.eq(0)                  # read only by the preamble's POS_ states
        done = m.submodules.done = SyncFIFO(width=index_bits(slots) or 1, depth=slots)
        full = Signal(slots)
        set_full, clear_full = Signal(slots), Signal(slots)
        m.d.sync += full.eq((full | set_full) & ~clear_full)

        # ---- fill: each beat goes to its path's slot; the channel statistics are updated in place.
        # A counter of one value would be a zero-width signal, which Verilog cannot declare.
        block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        token = [Signal(range(tg), name=f"token{p}") for p in range(paths)]
        per_path = config.slots_per_path
        which = [Signal(range(per_path), name=f"which{p}") for p in range(paths)]    # the path's fill slot
        path = Signal(range(paths)) if paths > 1 else Const(0, 1)
        cur_path = Signal.like(path, name="cur_path") if paths > 1 else Const(0, 1)
        position = Signal(config.position_bits)
        slot_of = [which[p] + p * per_path for p in range(paths)]

        if paths > 1:
            m.d.comb += path.eq(Mux(block == 0, stp_on & self.i.payload.salient, cur_path))
            fill_slot = Mux(path, slot_of[1], slot_of[0])
            fill_token = Mux(path, token[1], token[0])
            first_free = ~full.bit_select(slot_of[0], 1) & (~stp_on | ~full.bit_select(slot_of[1], 1))
        else:
            fill_slot, fill_token = slot_of[0], token[0]
            first_free = ~full.bit_select(slot_of[0], 1)
        m.d.comb += self.i.ready.eq(Mux(block == 0, first_free, ~full.bit_select(fill_slot, 1)))
        accept = self.i.valid & self.i.ready
        last_beat = (block == blocks - 1) & (fill_token == tg - 1)
        # Every memory access of a beat leaves from registers (s0, the registered writes):
        # the block RAMs sit across the die from the fill logic. A slot's last write lands
        # long before the slot is marked full (at s3).
        m.d.sync += [
            buf_w.addr.eq(Cat(block, fill_token, fill_slot)),
            buf_w.data.eq(self.i.payload.data),
            buf_w.en.eq(accept),
        ]
        if config.stp:
            m.d.sync += [pos_w.addr.eq(Cat(fill_token, fill_slot)), pos_w.data.eq(position),
                         pos_w.en.eq(accept & (block == 0))]
        with m.If(accept):
            if blocks > 1:
                m.d.sync += block.eq(Mux(block == blocks - 1, 0, block + 1))
            with m.If(block == 0):
                m.d.sync += position.eq(position + 1)
                if paths > 1:
                    m.d.sync += cur_path.eq(path)
            for p in range(paths):
                with m.If((block == blocks - 1) & (path == p)):
                    m.d.sync += token[p].eq(Mux(token[p] == tg - 1, 0, token[p] + 1))
                    with m.If(token[p] == tg - 1):
                        m.d.sync += which[p].eq(Mux(which[p] == per_path - 1, 0, which[p] + 1))

        # The statistics, read-modify-write in five stages: s0: the beat registered, its
        # read asked for; s1: the memory's answer (a block RAM's slow output meets only a
        # flip-flop); s2: min / max / sum into a register; s3: the write (the block RAM's
        # input is far from the arithmetic).
        beat_tags = data.StructLayout({"valid": 1, "first": 1, "last": 1, "slot": range(slots),
                                       "addr": len(stats_w.addr), "data": self.i.payload.data.shape()})
        s0, s1, s2, s3 = (Signal(beat_tags, name=n) for n in ("s0", "s1", "s2", "s3"))
        old = Signal(stats_layout)                           # the statistics before s2's beat
        new = Signal(stats_layout)                           # ... and after it
        m.d.sync += [s0.valid.eq(accept), s0.first.eq(fill_token == 0), s0.last.eq(last_beat),
                     s0.slot.eq(fill_slot), s0.addr.eq(Cat(block, fill_slot)), s0.data.eq(self.i.payload.data),
                     s1.eq(s0), s2.eq(s1), s3.eq(s2), stats_w.data.eq(new)]
        m.d.comb += stats_rmw.addr.eq(s0.addr)
        answer = Signal(stats_layout, reset_less=True)      # the memory's answer to s2's read
        m.d.sync += answer.eq(stats_rmw.data)
        # The read missed three writes: in the cycle it was asked for, the next, and the one
        # s3 makes now, of the three beats before it. They are other channels' unless a
        # token has at most three beats: then forward them, the latest first.
        if blocks > 3:
            m.d.comb += old.eq(answer)
        else:
            written = [Signal(beat_tags, name=f"written{k}") for k in (1, 2)]
            written_data = [Signal(stats_layout, name=f"written_data{k}") for k in (1, 2)]
            m.d.sync += [written[0].eq(s3), written_data[0].eq(stats_w.data), written[1].eq(written[0]),
                         written_data[1].eq(written_data[0])]
            forwarded = answer
            for tags, value in reversed(list(zip([s3, *written], [stats_w.data, *written_data], strict=True))):
                forwarded = Mux(tags.valid & (tags.addr == s2.addr), value, forwarded)
            m.d.comb += old.eq(forwarded)
        for lane in range(lanes):
            x, before, after = s2.data[lane], old[lane], new[lane]
            m.d.comb += [
                after.mn.eq(Mux(s2.first | (x < before.mn), x, before.mn)),
                after.mx.eq(Mux(s2.first | (x > before.mx), x, before.mx)),
                after.s.eq(Mux(s2.first, 0, before.s) + magnitude(x)),
            ]
        m.d.comb += [stats_w.addr.eq(s3.addr), stats_w.en.eq(s3.valid)]
        with m.If(s3.valid & s3.last):
            m.d.comb += [set_full.eq(1 << s3.slot), done.w_en.eq(1), done.w_data.eq(s3.slot)]

        # ---- encoder
        m.submodules.emitter = emitter = Emitter(config)
        b3 = config.ternary_layout == "b3"
        if b3:
            m.submodules.packer = packer = TritPacker(tg)
            # A register slice between them: the packer's queue sees only flip-flops.
            m.d.comb += emitter.trits.ready.eq(register_stream(m, packer.push, emitter.trits.valid,
                                                               emitter.trits.payload))
        # ---- rank stage: takes completed groups in order; ranks key channels (its own stats
        # read port) while the encoder works on the previous group.
        ranked_valid = Signal()                             # a group waits for the encoder
        ranked_slot = Signal(range(slots))
        ranked_value = Signal()
        if ranking:
            m.submodules.ranker = ranker = ChannelRanker(config.d, lanes, config.r_bits, n_hi)
            stats_rank = viewed(stats.reads[2])
            rank_block = Signal(range(blocks + 1))
            rank_read, rank_raw_valid = Signal(), Signal()
            raw_rank = Signal(stats_layout, reset_less=True)   # the block RAM's output meets a register first
            m.d.sync += [rank_read.eq(0), rank_raw_valid.eq(rank_read), raw_rank.eq(stats_rank.data)]
            for lane in range(lanes):
                got = raw_rank[lane]
                m.d.comb += ranker.ranges[lane].eq(got.mx - got.mn)
            m.d.comb += [ranker.load.eq(rank_raw_valid),
                         stats_rank.addr.eq(Cat(rank_block[:index_bits(blocks)], ranked_slot))]
            new_mask = ranker.mask
        else:
            new_mask = Const(-1 if n_hi else 0, config.d)
        rank_idle = Signal() if ranking else Const(1)  # the ranker takes one group at a time
        take_group = done.r_rdy & ~ranked_valid & rank_idle
        with m.If(take_group):
            m.d.comb += done.r_en.eq(1)
            m.d.sync += [ranked_slot.eq(done.r_data), ranked_value.eq(self.kind)]
        if not ranking:
            with m.If(take_group):
                m.d.sync += ranked_valid.eq(1)
        else:
            with m.FSM(name="rank"):
                with m.State("IDLE"):
                    m.d.comb += rank_idle.eq(1)
                    with m.If(take_group):
                        m.d.sync += rank_block.eq(0)
                        with m.If(self.kind):
                            m.d.sync += ranked_valid.eq(1)
                        with m.Else():
                            m.next = "LOAD"
                with m.State("LOAD"):                       # D / lanes reads, each loaded a cycle later
                    m.d.sync += [rank_read.eq(1), rank_block.eq(rank_block + 1)]
                    with m.If(rank_block == blocks - 1):
                        m.next = "LAST"
                with m.State("LAST"):                       # the last block's read lands
                    m.next = "LOADED"
                with m.State("LOADED"):                     # ... and loads into the ranker
                    m.next = "START"
                with m.State("START"):
                    m.d.comb += ranker.start.eq(1)
                    m.next = "WAIT"
                with m.State("WAIT"):
                    with m.If(~ranker.busy):
                        m.d.sync += ranked_valid.eq(1)
                        m.next = "IDLE"

        # ---- FFT stage (keys with fft): takes ranked groups, hands them to the encoder with
        # their lane records; value groups pass straight through.
        spectral = None
        if config.fft_points:
            m.submodules.spectral = spectral = SpectralStage(config, len(buf_w.addr))
            buf_f = buffer.reads[1]
            m.d.comb += [buf_f.addr.eq(spectral.buf_addr), buf_f.en.eq(spectral.buf_en),
                         spectral.buf_data.eq(buf_f.data)]
            group_valid = Signal()                          # a group waits for the encoder
            group_slot, group_value, group_mask = Signal.like(ranked_slot), Signal(), Signal(config.d)
            group_parity = Signal()                         # the encoder's bank of lane records
            group_bank = Signal()                           # ... and that of the group handed over
            held_slot, held_value, held_mask = Signal.like(ranked_slot), Signal(), Signal(config.d)
            with m.FSM(name="spectral_handoff"):
                with m.State("IDLE"):
                    # A new group's records go to the bank of the group before the last one
                    # handed over: that one must be done, i.e. the last one taken by the encoder.
                    with m.If(ranked_valid & ~group_valid):
                        m.d.sync += [ranked_valid.eq(0), held_slot.eq(ranked_slot), held_value.eq(ranked_value),
                                     held_mask.eq(new_mask)]
                        with m.If(ranked_value):
                            m.next = "HANDOFF"
                        with m.Else():
                            m.d.comb += [spectral.start.eq(1), spectral.slot.eq(ranked_slot),
                                         spectral.mask.eq(new_mask)]
                            m.next = "RUN"
                with m.State("RUN"):
                    with m.If(~spectral.busy):
                        m.next = "HANDOFF"
                with m.State("HANDOFF"):
                    with m.If(~group_valid):
                        # The stage is idle: its parity is this group's bank until the next start.
                        m.d.sync += [group_valid.eq(1), group_slot.eq(held_slot), group_value.eq(held_value),
                                     group_mask.eq(held_mask), group_bank.eq(spectral.parity)]
                        m.next = "IDLE"
        else:
            group_valid, group_slot, group_value, group_mask = ranked_valid, ranked_slot, ranked_value, new_mask

        # ---- encoder: per block of lanes channels, Tg buffer reads into the lane encoders.
        # A pipeline that moves only with `advance`: read issued -> in the memory (A) -> raw
        # buffer word (B) -> 6 (x - mn), |x|, sign (C) -> codes shift in (D). A block's codes
        # are complete when its last element has shifted in; the emitter must take them
        # then, or everything waits.
        slot = Signal(range(slots))
        value, salient = Signal(), Signal()                  # the group's kind and path
        mask = Signal(config.d)                              # the group's 2-bit channels (keys)
        count = Signal(range(tg + 1))
        lane_base = Signal(range(config.fft_points + 1))       # FFT lane of the block's first normal channel
        records_normal = Signal(lanes)                       # the normal channels of the block read
        enc_block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        two_bit_values = salient | self.value_2bit
        ternary = Fmt.B3 if b3 else Fmt.I2
        block_mask = mask.word_select(enc_block, lanes)
        issue_fmts = Cat(Mux(value, Mux(two_bit_values, Fmt.TWO_BIT, ternary),
                             Mux(block_mask[lane], Fmt.TWO_BIT, Fmt.ONE_BIT)) for lane in range(lanes))

        tags = data.StructLayout({"valid": 1, "last": 1, "final": 1, "fmts": 2 * lanes})
        issue, at_a, at_b, at_c, at_d = (Signal(tags, name=n) for n in ("issue", "at_a", "at_b", "at_c", "at_d"))
        handoff = at_d.valid & at_d.last
        preamble_start, preamble_done = Signal(), Signal()
        advance = ~handoff | (emitter.idle & preamble_done)
        stats_issue = Signal()
        # The block whose statistics the encoder reads next: a register, so the read address
        # is one (the first read is in STATS, the others with a block's last token).
        stats_block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        m.d.comb += stats_r.addr.eq(Cat(stats_block, slot))
        if blocks > 1:
            with m.If(stats_issue & advance):
                m.d.sync += stats_block.eq(Mux(stats_block == blocks - 1, 0, stats_block + 1))
        stats_at_b = Signal()

        stats_lane = data.StructLayout({"mn": signed(config.mn_bits), "r": unsigned(config.r_bits),
                                        "s": unsigned(config.s_bits), "r3": config.r_bits + 2,
                                        "r5": config.r_bits + 3})
        # Data registers need no reset: the tags (valid) say what they hold.
        raw_stats = Signal(stats_layout, reset_less=True)
        lane_stats = Signal(data.ArrayLayout(stats_lane, lanes), reset_less=True)      # the block at stage C
        raw = Signal(config.buffer_bits, reset_less=True)
        c_six = [Signal(config.r_bits + 3, name=f"six{lane}", reset_less=True) for lane in range(lanes)]
        c_mag = [Signal(config.in_bits, name=f"mag{lane}", reset_less=True) for lane in range(lanes)]
        c_neg = Signal(lanes, reset_less=True)
        c_stats, d_stats = (Signal(data.ArrayLayout(stats_lane, lanes), name=n, reset_less=True)
                            for n in ("c_stats", "d_stats"))
        codes = [Signal(2 * tg, name=f"codes{lane}", reset_less=True) for lane in range(lanes)]

        m.d.comb += [buf_r.en.eq(advance), stats_r.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [at_a.eq(issue), at_b.eq(at_a), at_c.eq(at_b), at_d.eq(at_c), raw.eq(buf_r.data),
                         stats_at_b.eq(stats_issue), c_stats.eq(lane_stats), d_stats.eq(c_stats)]
            with m.If(stats_at_b):
                m.d.sync += raw_stats.eq(stats_r.data)
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
        if spectral is not None:
            # A block's lane records land a cycle after their read, long before its hand-over;
            # its normal channel j takes the record of its rank among the block's normal channels.
            records_landing = Signal()
            m.d.sync += records_landing.eq(spectral.read_en)
            records = [Signal(record_layout(config), name=f"lane_record{lane}", reset_less=True)
                       for lane in range(lanes)]
            every = Cat(*[spectral.records[k] for k in range(spectral.banks)])
            with m.If(records_landing):
                for lane in range(lanes):
                    rank = popcount(records_normal[:lane])
                    m.d.sync += records[lane].eq(every.word_select(rank[:max(index_bits(spectral.banks), 1)],
                                                                   record_layout(config).size)
                                                 if spectral.banks > 1 else every)
            lane_codes, lane_s = [], []
            for lane in range(lanes):
                transformed = ~value & (at_d.fmts.word_select(lane, 2) == Fmt.ONE_BIT)
                signs = Cat(*[Cat(records[lane].signs[t], Const(0, 1)) for t in range(tg)])
                lane_codes.append(Mux(transformed, signs, codes[lane]))
                lane_s.append(Mux(transformed, records[lane].s, d_stats[lane].s))
        for lane in range(lanes):
            m.d.comb += [emitter.lanes[lane].codes.eq(lane_codes[lane]),
                         emitter.lanes[lane].fmt.eq(at_d.fmts.word_select(lane, 2)),
                         emitter.lanes[lane].mn.eq(d_stats[lane].mn), emitter.lanes[lane].r.eq(d_stats[lane].r),
                         emitter.lanes[lane].s.eq(lane_s[lane])]

        # A b3 group's last digits leave the packer once the emitter has pushed them all;
        # the next group's header waits for that.
        flush_pending = Signal()
        if b3:
            pushed_all = emitter.idle & ~packer.push.valid      # nothing left in the slice either
            m.d.comb += packer.flush.eq(flush_pending & pushed_all)
            with m.If(flush_pending & pushed_all & packer.empty):
                m.d.sync += flush_pending.eq(0)
        with m.If(handoff & advance):
            m.d.comb += emitter.load.eq(1)
            with m.If(at_d.final):
                m.d.sync += flush_pending.eq(value & ~two_bit_values & b3)

        with m.FSM(name="encoder"):
            with m.State("IDLE"):
                with m.If(group_valid):
                    m.d.sync += [slot.eq(group_slot), value.eq(group_value), mask.eq(group_mask),
                                 salient.eq(group_slot >= per_path), group_valid.eq(0)]
                    if spectral is not None:
                        m.d.sync += [group_parity.eq(group_bank), lane_base.eq(0)]
                    m.d.comb += preamble_start.eq(1)
                    m.next = "STATS"
            with m.State("STATS"):
                m.d.comb += stats_issue.eq(1)
                with m.If(advance):
                    m.d.sync += count.eq(0)
                    m.next = "TOKENS"
            with m.State("TOKENS"):
                last_token, last_block = count == tg - 1, enc_block == blocks - 1
                m.d.comb += [buf_r.addr.eq(Cat(enc_block, count[:index_bits(tg)], slot)),
                             issue.valid.eq(1), issue.last.eq(last_token), issue.final.eq(last_block),
                             issue.fmts.eq(issue_fmts)]
                with m.If(last_token & ~last_block):                 # the next block's statistics
                    m.d.comb += stats_issue.eq(1)
                if spectral is not None:                             # the block's FFT lane records
                    # Read while the last token is offered (a repeated read is harmless; the
                    # one after the advancing cycle lands last): not behind `advance`.
                    with m.If(last_token):
                        m.d.comb += [spectral.read_en.eq(1), spectral.read_base.eq(lane_base),
                                     spectral.read_parity.eq(group_parity)]
                    with m.If(last_token & advance):
                        m.d.sync += [lane_base.eq(lane_base + popcount(~block_mask)),
                                     records_normal.eq(~block_mask)]
                with m.If(advance):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last_token):
                        m.d.sync += count.eq(0)
                        if blocks > 1:
                            m.d.sync += enc_block.eq(Mux(last_block, 0, enc_block + 1))
                        with m.If(last_block):
                            m.d.comb += clear_full.eq(1 << slot)     # every read of the slot is done
                            m.next = "DRAIN"
            with m.State("DRAIN"):                                   # the group's last block reaches the emitter
                with m.If(handoff & at_d.final & advance):
                    m.next = "IDLE"

        # ---- preamble: header, positions (STP), mask (keys), sent once the previous group's
        # last beat is out, while the encoder reads the group's first block.
        direct = Signal(beat_layout(config))
        direct_valid = Signal()
        # Everything below meets the output through a register slice (`out_*` feed it).
        out_valid, out_ready = Signal(), Signal()
        index = Signal(range(max(tg, config.mask_words) + 1))
        with m.FSM(name="preamble"):
            with m.State("IDLE"):
                with m.If(preamble_start):
                    m.d.sync += preamble_done.eq(0)
                    m.next = "HEADER"
            with m.State("HEADER"):
                ready_for_group = emitter.idle & ~flush_pending
                m.d.comb += [direct_valid.eq(ready_for_group), direct.tag.eq(HEADER),
                             direct.data.eq(Cat(salient, value))]
                with m.If(ready_for_group & out_ready):
                    m.d.sync += index.eq(0)
                    m.next = "MASK"
                    with m.If(value):
                        m.d.sync += preamble_done.eq(1)
                        m.next = "IDLE"
                    if config.stp:
                        with m.If(value & self.stp):
                            m.d.sync += preamble_done.eq(0)
                            m.next = "POS_READ"
            if config.stp:
                # The positions leave through a register (a block RAM's output would meet the
                # output multiplexer): the port reads a position two ahead of the one sent.
                pos_word = Signal(config.position_bits)
                with m.State("POS_READ"):
                    m.d.comb += [pos_r.addr.eq(Cat(Const(0, index_bits(tg)), slot)), pos_r.en.eq(1)]
                    m.next = "POS_LOAD"
                with m.State("POS_LOAD"):
                    m.d.sync += pos_word.eq(pos_r.data)
                    m.d.comb += [pos_r.addr.eq(Cat(Const(1, index_bits(tg)), slot)), pos_r.en.eq(1)]
                    m.next = "POS_SEND"
                with m.State("POS_SEND"):
                    m.d.comb += [direct_valid.eq(1), direct.tag.eq(POSITION), direct.data.eq(pos_word)]
                    with m.If(out_ready):
                        m.d.sync += [index.eq(index + 1), pos_word.eq(pos_r.data)]
                        m.d.comb += [pos_r.addr.eq(Cat((index + 2)[:index_bits(tg)], slot)), pos_r.en.eq(1)]
                        with m.If(index == tg - 1):
                            m.d.sync += preamble_done.eq(1)
                            m.next = "IDLE"
            with m.State("MASK"):
                m.d.comb += [direct_valid.eq(1), direct.tag.eq(MASK),
                             direct.data.eq(mask.word_select(index[:index_bits(config.mask_words)], 32))]
                with m.If(out_ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == config.mask_words - 1):
                        m.d.sync += preamble_done.eq(1)
                        m.next = "IDLE"

        # ---- output: the FSM's own beats, else the packer's and the emitter's, a held grant each.
        sources = [(direct_valid, direct)]
        if b3:
            trit_beat = Signal(beat_layout(config))
            m.d.comb += [trit_beat.data.eq(packer.o.payload), trit_beat.tag.eq(TRITS)]
            sources.append((packer.o.valid, trit_beat))
        grant = Signal(len(sources) + 1)             # one-hot; the last bit is the emitter
        held_grant = Signal.like(grant)
        stalled = Signal()
        m.d.sync += [stalled.eq(out_valid & ~out_ready), held_grant.eq(grant)]
        fresh = Signal.like(grant)
        with m.If(direct_valid):
            m.d.comb += fresh.eq(1)
        if b3:
            with m.Elif(packer.o.valid):
                m.d.comb += fresh.eq(2)
        with m.Else():
            m.d.comb += fresh.eq(1 << len(sources))
        m.d.comb += grant.eq(Mux(stalled, held_grant, fresh))
        payload, valid = emitter.o.payload, emitter.o.valid
        for bit, (source_valid, source_payload) in reversed(list(enumerate(sources))):
            payload = Mux(grant[bit], source_payload, payload)
            valid = Mux(grant[bit], source_valid, valid)
        m.d.comb += [out_valid.eq(valid), out_ready.eq(register_stream(m, self.o, valid, payload)),
                     emitter.o.ready.eq(out_ready & grant[-1])]
        if b3:
            m.d.comb += packer.o.ready.eq(out_ready & grant[1])
        return m
