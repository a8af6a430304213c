"""The VidKV KV-cache dequantize engine: the quantize engine's beats in, fixed-point tokens out.

::

    i stream (tagged beats, golden/vidkv_stream.py)
      |  parser: header -> positions (STP) -> mask (keys) -> per channel: code words, metadata
      |          (b3 values: trit words -> unpacker -> one channel's digits at a time)
      v
    per lane bank (channel c in bank c % lanes, two group slots):
      codes (2 bits per token) and a 4-entry table of the channel's decoded values,
      computed once per channel from its metadata (the only division, by 3, is a
      two-bits-a-level remainder chain)
      |  token t, block b: one read of every bank -> lanes table lookups
      v
    o stream: lanes channels of a token per beat, with the token's position

A group's tokens come out in order, each with its position in the original stream
(the position the STP path recorded, else the path's running token count); the two
STP paths' groups arrive in completion order, so restoring one original order across
them is the host's scatter by position (a merge in hardware would need an unbounded
number of groups buffered). The receiving slot and the sending slot alternate, so a
group is received while the previous one is sent.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig
from arch.vidkv import CODE, HEADER, MASK, META, POSITION, TRITS

from .kv_emit import beat_layout
from .kv_spectral import InverseStage
from .kv_units import TritUnpacker, divmod3, index_bits, popcount, register_stream

__all__ = ["KvDequantizer", "output_layout", "third_scaled"]


def third_scaled(m: Module, value, frac: int, name: str):
    """``(value 2**frac + 1) // 3`` (round half up of ``value 2**frac / 3``) for unsigned ``value``.

    ``value = 3 q + rem`` gives ``q 2**frac + (rem 2**frac + 1) // 3``: one division by 3
    of ``value`` itself (:func:`divmod3`) and a three-entry table.
    """
    quotient, rem = divmod3(m, value, name)
    small = Mux(rem == 2, ((2 << frac) + 1) // 3, Mux(rem == 1, ((1 << frac) + 1) // 3, 1 // 3))
    return (quotient << frac) + small


def output_layout(config: KvConfig) -> data.StructLayout:
    """An output beat: ``lanes`` fixed-point channels of one token and the token's position."""
    return data.StructLayout({"data": data.ArrayLayout(signed(config.out_bits), config.lanes),
                              "position": config.position_bits})


class KvDequantizer(wiring.Component):
    """Reconstructs fixed-point tokens (``frac_bits`` fraction bits) from quantized groups.

    Ports: ``i`` (beats ``{data, tag}`` as the quantize engine sends them), ``o``
    (D / lanes beats per token), the run-time mode ``value_2bit`` and ``stp`` (as given
    to the quantize engine), and ``error``, set when a beat's tag is not the one the
    group's format expects (the beat is dropped; cleared by reset).
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "value_2bit": In(1),
            "stp": In(1),
            "i": In(stream.Signature(beat_layout(config))),
            "o": Out(stream.Signature(output_layout(config))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, d, blocks, frac = config.lanes, config.group_tokens, config.d, config.blocks, config.frac_bits
        out_bits = config.out_bits
        b3 = config.ternary_layout == "b3"
        table_layout = data.ArrayLayout(signed(out_bits), 4)

        codes, tables, code_writes, table_writes, code_reads, table_reads = [], [], [], [], [], []
        for lane in range(lanes):
            code_mem = Memory(shape=2 * tg, depth=2 * blocks, init=[])
            table_mem = Memory(shape=table_layout, depth=2 * blocks, init=[])
            m.submodules[f"codes{lane}"], m.submodules[f"table{lane}"] = code_mem, table_mem
            codes.append(code_mem)
            tables.append(table_mem)
            port = code_mem.write_port(granularity=32)
            # The parser's write goes through a register next to the memory (its address
            # and enables come from counters and the beat's tag).
            code_writes.append(Signal(data.StructLayout({"addr": len(port.addr), "data": len(port.data),
                                                         "en": len(port.en)}), name=f"code_write{lane}"))
            m.d.sync += [port.addr.eq(code_writes[-1].addr), port.data.eq(code_writes[-1].data),
                         port.en.eq(code_writes[-1].en)]
            table_writes.append(table_mem.write_port())
            code_reads.append(code_mem.read_port())
            table_reads.append(table_mem.read_port())
        positions = m.submodules.positions = Memory(shape=config.position_bits, depth=2 * tg, init=[])
        pos_w, pos_r = positions.write_port(), positions.read_port()

        full = Signal(2)
        set_full, clear_full = Signal(2), Signal(2)
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        with m.If(self.i.valid & self.i.ready & (self.i.payload.tag > TRITS)):
            m.d.sync += self.error.eq(1)

        # ---- parser
        in_slot = Signal()
        value, salient = Signal(), Signal()
        mask = Signal(d)                                     # bit 0: the current channel's (shifts per channel)
        channel = Signal(range(d + 1))
        word = Signal(range(config.code_words_2bit + 1))
        index = Signal(range(max(tg, config.mask_words) + 1))
        next_position = [Signal(config.position_bits, name=f"next_position{p}") for p in range(3)]
        group_base = Signal(config.position_bits)                  # position of a non-STP group's token 0
        beat, tag = self.i.payload.data, self.i.payload.tag

        two_bit = Mux(value, salient | self.value_2bit, mask[0])
        one_bit = ~value & ~two_bit
        b3_group = Const(b3) & value & ~two_bit
        code_words = Mux(b3_group, 0, Mux(one_bit, config.code_words_1bit, config.code_words_2bit))
        lane_of = channel[:index_bits(lanes)] if lanes > 1 else Const(0, 1)
        row_of = channel[index_bits(lanes):index_bits(d)] if blocks > 1 else Const(0, 0)

        # 1-bit words hold 32 tokens' bits; spread them to 2-bit codes (64 bits, two granules).
        spread = Cat(Cat(beat[i], Const(0, 1)) for i in range(32))
        for lane in range(lanes):
            m.d.comb += code_writes[lane].addr.eq(Cat(row_of, in_slot))

        # Metadata -> decoded-value table, two pipeline stages (the multiplication by 1/3).
        meta_valid, meta_two, meta_lane, meta_row = Signal(), Signal(), Signal(range(lanes)), Signal.like(row_of)
        meta_ternary = Signal()
        mn, r, s = Signal(signed(16)), Signal(16), Signal(max(config.s_bits, config.s_fft_bits))
        m.d.sync += meta_valid.eq(0)
        stage_valid, stage_two = Signal(), Signal()
        stage_lane, stage_row = Signal(range(lanes)), Signal.like(row_of)
        stage_ternary = Signal()
        base, third, two_thirds = (Signal(signed(out_bits), name=n) for n in ("base", "third", "two_thirds"))
        full_range = Signal(out_bits)
        pos_value, neg_value = Signal(signed(out_bits)), Signal(signed(out_bits))
        m.d.sync += stage_valid.eq(meta_valid)
        with m.If(meta_valid):
            scaled = r << frac
            m.d.sync += [
                stage_two.eq(meta_two), stage_lane.eq(meta_lane), stage_row.eq(meta_row),
                stage_ternary.eq(meta_ternary),
                base.eq(mn << frac), full_range.eq(scaled),
                third.eq(third_scaled(m, r, frac, "third")),
                two_thirds.eq(third_scaled(m, r << 1, frac, "two_thirds")),
                # round half up of +-S 2**F / Tg (Tg a power of two)
                pos_value.eq(((s << frac) + (tg >> 1)) >> index_bits(tg)),
                neg_value.eq(-(((s << frac) + (tg >> 1) - 1) >> index_bits(tg))),
            ]
        entry = Signal(table_layout)
        with m.If(stage_two):
            m.d.comb += [entry[0].eq(base), entry[1].eq(base + third), entry[2].eq(base + two_thirds),
                         entry[3].eq(base + full_range)]
        with m.Elif(stage_ternary):                          # i2 / b3 codes t + 1
            m.d.comb += [entry[0].eq(neg_value), entry[1].eq(0), entry[2].eq(pos_value), entry[3].eq(0)]
        with m.Else():                                       # 1-bit codes b
            m.d.comb += [entry[0].eq(neg_value), entry[1].eq(pos_value), entry[2].eq(0), entry[3].eq(0)]
        for lane in range(lanes):
            m.d.comb += [table_writes[lane].addr.eq(Cat(stage_row, in_slot)), table_writes[lane].data.eq(entry),
                         table_writes[lane].en.eq(stage_valid & (stage_lane == lane))]

        # b3 digits: a channel at a time from the unpacker, in channel order.
        trit_channel = Signal(range(d + 1))
        if b3:
            m.submodules.unpacker = unpacker = TritUnpacker(tg)
            m.d.comb += [unpacker.push.payload.eq(beat), unpacker.o.ready.eq(trit_channel != d)]
            trit_lane = trit_channel[:index_bits(lanes)] if lanes > 1 else Const(0, 1)
            trit_row = trit_channel[index_bits(lanes):index_bits(d)] if blocks > 1 else Const(0, 0)
            with m.If(unpacker.o.valid & unpacker.o.ready):
                m.d.sync += trit_channel.eq(trit_channel + 1)
                for lane in range(lanes):
                    with m.If(trit_lane == lane):
                        m.d.comb += [code_writes[lane].addr.eq(Cat(trit_row, in_slot)),
                                     code_writes[lane].data.eq(unpacker.o.payload),
                                     code_writes[lane].en.eq(-1)]
        trits_done = Mux(b3_group, trit_channel == d, 1)
        trit_beat = tag == TRITS
        accept = self.i.valid & self.i.ready
        in_group = Signal()                                 # between a header and the group's end
        if b3:
            m.d.comb += unpacker.push.valid.eq(self.i.valid & trit_beat & in_group & b3_group)
            trit_ready = unpacker.push.ready
        else:
            trit_ready = Const(1)
        # Any state after the header takes a trit word when the unpacker can (b3 groups; an
        # error elsewhere), and the beats of its own sequence.
        with m.If(accept & trit_beat & in_group & ~b3_group):
            m.d.sync += self.error.eq(1)
        slot_stp = Signal(2)
        spectral = config.fft_points > 0
        slot_key = Signal(2)                                # the slot holds an FFT key group
        slot_mask = Array(Signal(d, name=f"slot_mask{i}") for i in range(2))
        slot_base = Array(Signal(config.position_bits, name=f"slot_base{i}") for i in range(2))

        with m.FSM(name="parser"):
            with m.State("HEADER"):
                m.d.comb += self.i.ready.eq(~full.bit_select(in_slot, 1) | (tag != HEADER))
                with m.If(accept & (tag == HEADER)):
                    is_value, is_salient = beat[1], beat[0] & beat[1]
                    m.d.sync += [value.eq(is_value), salient.eq(is_salient), channel.eq(0), word.eq(0),
                                 index.eq(0), trit_channel.eq(0), in_group.eq(1)]
                    path = Mux(is_value, Mux(is_salient, 2, 1), 0)
                    m.d.sync += group_base.eq(Array(next_position)[path])
                    for p in range(3):
                        with m.If(path == p):
                            m.d.sync += next_position[p].eq(next_position[p] + tg)
                    with m.If(is_value & self.stp):
                        m.next = "POSITIONS"
                    with m.Elif(is_value):
                        m.next = "CHANNELS"
                    with m.Else():
                        m.next = "MASK"
                with m.Elif(accept):
                    m.d.sync += self.error.eq(1)
            with m.State("POSITIONS"):
                m.d.comb += [self.i.ready.eq(Mux(trit_beat, trit_ready, 1)),
                             pos_w.addr.eq(Cat(index[:index_bits(tg)], in_slot)), pos_w.data.eq(beat),
                             pos_w.en.eq(accept & (tag == POSITION))]
                with m.If(accept & (tag == POSITION)):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == tg - 1):
                        m.next = "CHANNELS"
                with m.Elif(accept & (tag != TRITS)):
                    m.d.sync += self.error.eq(1)
            with m.State("MASK"):
                m.d.comb += self.i.ready.eq(Mux(trit_beat, trit_ready, 1))
                with m.If(accept & (tag == MASK)):
                    whole = Cat(mask[32:], beat)
                    m.d.sync += [mask.eq(whole), index.eq(index + 1)]
                    with m.If(index == config.mask_words - 1):
                        m.next = "CHANNELS"
                        if spectral:                       # the FFT needs exactly N normal channels
                            m.d.sync += slot_mask[in_slot].eq(whole)
                            with m.If(popcount(whole) != config.n_hi):
                                m.d.sync += self.error.eq(1)
                with m.Elif(accept & ~trit_beat):
                    m.d.sync += self.error.eq(1)
            with m.State("CHANNELS"):
                m.d.comb += self.i.ready.eq(Mux(trit_beat, trit_ready, 1))
                with m.If(accept & (tag == CODE) & (word < code_words)):
                    m.d.sync += word.eq(word + 1)
                    for lane in range(lanes):
                        with m.If(lane_of == lane):
                            m.d.comb += code_writes[lane].en.eq(Mux(one_bit, 3 << (word << 1), 1 << word))
                            m.d.comb += code_writes[lane].data.eq(Mux(one_bit, spread << (word << 6),
                                                                      beat << (word << 5)))
                with m.Elif(accept & (tag == META) & (word == code_words)):
                    m.d.sync += [meta_valid.eq(1), meta_two.eq(two_bit), meta_ternary.eq(value & ~two_bit),
                                 meta_lane.eq(lane_of), meta_row.eq(row_of), mn.eq(beat[:16]), r.eq(beat[16:]),
                                 s.eq(beat), word.eq(0), channel.eq(channel + 1), mask.eq(mask >> 1)]
                    with m.If(channel == d - 1):
                        m.next = "FINISH"
                with m.Elif(accept & (tag != TRITS)):
                    m.d.sync += self.error.eq(1)
            with m.State("FINISH"):
                # The last table entry is written and every trit word is in (the next
                # group's header waits).
                m.d.comb += self.i.ready.eq(trit_beat & trit_ready & b3_group & ~trits_done)
                with m.If(~meta_valid & ~stage_valid & trits_done):
                    m.d.comb += set_full.eq(1 << in_slot)
                    m.d.sync += [in_slot.eq(~in_slot), in_group.eq(0),
                                 slot_stp.bit_select(in_slot, 1).eq(value & self.stp),
                                 slot_key.bit_select(in_slot, 1).eq(Const(spectral) & ~value),
                                 slot_base[in_slot].eq(group_base)]
                    if b3:
                        m.d.comb += unpacker.clear.eq(1)
                    m.next = "HEADER"

        # ---- sender: token t, block b of the full slot; reads run ahead into the output.
        out_slot = Signal()
        out_token = Signal(range(tg))
        out_block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        sending = full.bit_select(out_slot, 1)
        pending, selected = Signal(), Signal()              # read data here, selected codes here
        out_ready = Signal()
        advance = ~selected | out_ready
        last = (out_token == tg - 1) & (out_block == blocks - 1)
        for lane in range(lanes):
            m.d.comb += [code_reads[lane].addr.eq(Cat(out_block, out_slot)), code_reads[lane].en.eq(advance),
                         table_reads[lane].addr.eq(Cat(out_block, out_slot)), table_reads[lane].en.eq(advance)]
        m.d.comb += [pos_r.addr.eq(Cat(out_token, out_slot)), pos_r.en.eq(advance)]
        read_token, read_slot = Signal.like(out_token), Signal()
        read_normal, read_fft, read_last = Signal(lanes), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [pending.eq(sending), read_token.eq(out_token), read_slot.eq(out_slot)]
            if spectral:
                m.d.sync += [read_normal.eq(~slot_mask[out_slot].word_select(out_block, lanes)),
                             read_fft.eq(slot_key.bit_select(out_slot, 1)), read_last.eq(out_block == blocks - 1)]
            with m.If(sending):
                if blocks > 1:
                    m.d.sync += out_block.eq(Mux(out_block == blocks - 1, 0, out_block + 1))
                with m.If(out_block == blocks - 1):
                    m.d.sync += out_token.eq(Mux(out_token == tg - 1, 0, out_token + 1))
                with m.If(last):
                    m.d.comb += clear_full.eq(1 << out_slot)
                    m.d.sync += out_slot.eq(~out_slot)
        # A register between the token's code select and the table select.
        codes_now = [Signal(2, name=f"code_now{lane}", reset_less=True) for lane in range(lanes)]
        tables_now = [Signal(table_layout, name=f"table_now{lane}", reset_less=True) for lane in range(lanes)]
        position_now = Signal(config.position_bits, reset_less=True)
        normal_now, fft_now, last_now = Signal(lanes), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [selected.eq(pending), normal_now.eq(read_normal), fft_now.eq(read_fft),
                         last_now.eq(read_last)]
            m.d.sync += [position_now.eq(Mux(slot_stp.bit_select(read_slot, 1), pos_r.data,
                                             slot_base[read_slot] + read_token))]
            for lane in range(lanes):
                m.d.sync += [codes_now[lane].eq(code_reads[lane].data.word_select(read_token, 2)),
                             tables_now[lane].eq(table_reads[lane].data)]
        decoded = Signal(output_layout(config))           # into the output register slice
        for lane in range(lanes):
            m.d.comb += decoded.data[lane].eq(tables_now[lane][codes_now[lane]])
        m.d.comb += decoded.position.eq(position_now)
        if spectral:                                        # FFT key groups: the inverse FFT
            m.submodules.inverse = inverse = InverseStage(config, output_layout(config))
            m.d.comb += [inverse.i.valid.eq(selected), inverse.i.payload.beat.eq(decoded),
                         inverse.i.payload.normal.eq(normal_now), inverse.i.payload.fft.eq(fft_now),
                         inverse.i.payload.last.eq(last_now), out_ready.eq(inverse.i.ready)]
            wiring.connect(m, inverse.o, wiring.flipped(self.o))
        else:
            m.d.comb += out_ready.eq(register_stream(m, self.o, selected, decoded))
        return m
