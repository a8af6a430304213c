"""The KV dequantize engine's input parser: tagged beats -> code words and metadata in the lane banks.

A group's beats (golden/vidkv_stream.py): a header, then its positions (STP value
groups) or its outlier mask (key groups), then per channel its code words and one
metadata word; ``b3`` groups send trit words (any time after the header) instead of
code words, which a :class:`TritUnpacker` turns into one channel's digits at a time.
Channel ``c`` lives in lane bank ``c % lanes``, row ``c // lanes``.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig
from arch.vidkv import CODE, HEADER, MASK, META, POSITION, TRITS

from .kv_dequant_table import meta_signature
from .kv_emit import beat_layout
from .kv_units import TritUnpacker, index_bits, popcount

__all__ = ["slot_signature", "GroupParser"]


def slot_signature(config: KvConfig) -> wiring.Signature:
    """What the sender needs to know of each of the two slots' groups (members as seen by the parser).

    ``stp`` (bit per slot: the tokens' positions are in the position bank), ``key`` (bit
    per slot: an FFT key group), ``mask`` (per slot: its outlier mask, FFT builds only)
    and ``base`` (per slot: the position of token 0 of a group without positions).
    """
    return wiring.Signature({
        "stp": Out(2), "key": Out(2),
        "mask": Out(config.d).array(2), "base": Out(config.position_bits).array(2),
    })


class GroupParser(wiring.Component):
    """Parses one group's tagged beats at a time into the receiving slot of the lane banks.

    ``i`` takes at most one beat per cycle. Its ``ready`` is high except: a header
    waits while the receiving slot is ``full`` (not yet sent); a trit word waits for the
    unpacker; after a group's last metadata word only its missing trit words are taken
    until the group is complete (its last table written, every trit word in). Then the
    group's slot is marked in ``fill`` (one cycle), its ``slots`` entries are set and
    ``slot`` flips. A beat with a tag the group's format does not expect is taken and
    dropped, and sets ``error`` (held until reset).

    A code word reaches its bank through a register (one cycle after its beat), a
    position word in the cycle of its beat, a metadata word the ``meta`` registers one
    cycle after its beat. A non-STP group's token positions count on per path (key,
    value, salient value) from 0.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.

    Members
    -------
    value_2bit, stp : In(1)
        The run-time mode, as given to the quantize engine; used from a group's header
        until it completes (held steady meanwhile).
    i : In(stream.Signature(beat_layout(config)))
        The beats ``{data, tag}`` as the quantize engine sends them.
    error : Out(1)
        An unexpected tag was seen.
    full : In(2)
        Bit per slot: the slot holds a group not yet sent.
    fill : Out(2)
        Bit per slot: the slot's group is complete (one cycle).
    slot : Out(1)
        The receiving slot.
    slots : Out(slot_signature(config))
        The two slots' group facts, set as the group completes.
    code_write : In(WritePort.Signature(...)).array(lanes)
        Each lane bank's code write (rows ``2 * blocks``, 2 bits per token, token 0 lowest,
        granularity 32); registered. (``In`` of a memory port's signature: the parser drives
        ``addr``, ``data`` and ``en``.)
    position_write : In(WritePort.Signature(addr_width=index_bits(2 * Tg), shape=position_bits))
        The position bank's write (an STP group's positions, token ``t`` at ``t`` of the slot).
    meta : Out(meta_signature(config))
        A channel's metadata, for the :class:`~hdl.kv_dequant_table.TableDecoder`.
    table_busy : In(1)
        The table decoder is still writing a table.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        tg = config.group_tokens
        super().__init__({
            "value_2bit": In(1),
            "stp": In(1),
            "i": In(stream.Signature(beat_layout(config))),
            "error": Out(1),
            "full": In(2),
            "fill": Out(2),
            "slot": Out(1),
            "slots": Out(slot_signature(config)),
            "code_write": In(WritePort.Signature(addr_width=index_bits(2 * config.blocks), shape=2 * tg,
                                                 granularity=32)).array(config.lanes),
            "position_write": In(WritePort.Signature(addr_width=index_bits(2 * tg), shape=config.position_bits)),
            "meta": Out(meta_signature(config)),
            "table_busy": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, d = config.lanes, config.group_tokens, config.d
        b3, spectral = config.ternary_layout == "b3", config.fft_points > 0
        beat, tag = self.i.payload.data, self.i.payload.tag
        accept = self.i.valid & self.i.ready
        with m.If(accept & (tag > TRITS)):
            m.d.sync += self.error.eq(1)

        in_slot = self.slot
        value, salient = Signal(), Signal()
        mask = Signal(d)                                     # bit 0: the current channel's (shifts per channel)
        channel = Signal(range(d + 1))
        word = Signal(range(config.code_words_2bit + 1))
        index = Signal(range(max(tg, config.mask_words) + 1))
        group_base = Signal(config.position_bits)                  # position of a non-STP group's token 0

        two_bit = Mux(value, salient | self.value_2bit, mask[0])
        one_bit = ~value & ~two_bit
        b3_group = Const(b3) & value & ~two_bit
        code_words = Mux(b3_group, 0, Mux(one_bit, config.code_words_1bit, config.code_words_2bit))
        lane_of, row_of = self._bank_of(channel)

        code_writes = self._code_writes(m, row_of)
        # 1-bit words hold 32 tokens' bits; spread them to 2-bit codes (64 bits, two granules).
        spread = Cat(Cat(beat[i], Const(0, 1)) for i in range(32))
        meta = self.meta
        m.d.sync += meta.valid.eq(0)

        # b3 digits: a channel at a time from the unpacker, in channel order.
        trit_channel = Signal(range(d + 1))
        in_group = Signal()                                 # between a header and the group's end
        trits_done = Mux(b3_group, trit_channel == d, 1)
        trit_beat = tag == TRITS
        if b3:
            unpacker = self._unpacker(m, code_writes, trit_channel)
            m.d.comb += unpacker.push.valid.eq(self.i.valid & trit_beat & in_group & b3_group)
            trit_ready = unpacker.push.ready
        else:
            trit_ready = Const(1)
        # Any state after the header takes a trit word when the unpacker can (b3 groups; an
        # error elsewhere), and the beats of its own sequence.
        with m.If(accept & trit_beat & in_group & ~b3_group):
            m.d.sync += self.error.eq(1)
        slot_stp, slot_key = self.slots.stp, self.slots.key
        slot_mask, slot_base = Array(self.slots.mask), Array(self.slots.base)

        with m.FSM(name="parser"):
            with m.State("Header"):
                m.d.comb += self.i.ready.eq(~self.full.bit_select(in_slot, 1) | (tag != HEADER))
                with m.If(accept & (tag == HEADER)):
                    is_value, is_salient = beat[1], beat[0] & beat[1]
                    m.d.sync += [value.eq(is_value), salient.eq(is_salient), channel.eq(0), word.eq(0),
                                 index.eq(0), trit_channel.eq(0), in_group.eq(1)]
                    self._count_positions(m, Mux(is_value, Mux(is_salient, 2, 1), 0), group_base)
                    with m.If(is_value & self.stp):
                        m.next = "Positions"
                    with m.Elif(is_value):
                        m.next = "Channels"
                    with m.Else():
                        m.next = "Mask"
                with m.Elif(accept):
                    m.d.sync += self.error.eq(1)
            with m.State("Positions"):
                pos_w = self.position_write
                m.d.comb += [self.i.ready.eq(Mux(trit_beat, trit_ready, 1)),
                             pos_w.addr.eq(Cat(index[:index_bits(tg)], in_slot)), pos_w.data.eq(beat),
                             pos_w.en.eq(accept & (tag == POSITION))]
                with m.If(accept & (tag == POSITION)):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == tg - 1):
                        m.next = "Channels"
                with m.Elif(accept & (tag != TRITS)):
                    m.d.sync += self.error.eq(1)
            with m.State("Mask"):
                m.d.comb += self.i.ready.eq(Mux(trit_beat, trit_ready, 1))
                with m.If(accept & (tag == MASK)):
                    whole = Cat(mask[32:], beat)
                    m.d.sync += [mask.eq(whole), index.eq(index + 1)]
                    with m.If(index == config.mask_words - 1):
                        m.next = "Channels"
                        if spectral:                       # the FFT needs exactly N normal channels
                            m.d.sync += slot_mask[in_slot].eq(whole)
                            with m.If(popcount(whole) != config.n_hi):
                                m.d.sync += self.error.eq(1)
                with m.Elif(accept & ~trit_beat):
                    m.d.sync += self.error.eq(1)
            with m.State("Channels"):
                m.d.comb += self.i.ready.eq(Mux(trit_beat, trit_ready, 1))
                with m.If(accept & (tag == CODE) & (word < code_words)):
                    m.d.sync += word.eq(word + 1)
                    for lane in range(lanes):
                        with m.If(lane_of == lane):
                            m.d.comb += code_writes[lane].en.eq(Mux(one_bit, 3 << (word << 1), 1 << word))
                            m.d.comb += code_writes[lane].data.eq(Mux(one_bit, spread << (word << 6),
                                                                      beat << (word << 5)))
                with m.Elif(accept & (tag == META) & (word == code_words)):
                    m.d.sync += [meta.valid.eq(1), meta.two.eq(two_bit), meta.ternary.eq(value & ~two_bit),
                                 meta.lane.eq(lane_of), meta.row.eq(row_of), meta.mn.eq(beat[:16]),
                                 meta.r.eq(beat[16:]), meta.s.eq(beat), word.eq(0), channel.eq(channel + 1),
                                 mask.eq(mask >> 1)]
                    with m.If(channel == d - 1):
                        m.next = "Finish"
                with m.Elif(accept & (tag != TRITS)):
                    m.d.sync += self.error.eq(1)
            with m.State("Finish"):
                # The last table entry is written and every trit word is in (the next
                # group's header waits).
                m.d.comb += self.i.ready.eq(trit_beat & trit_ready & b3_group & ~trits_done)
                with m.If(~meta.valid & ~self.table_busy & trits_done):
                    m.d.comb += self.fill.eq(1 << in_slot)
                    m.d.sync += [in_slot.eq(~in_slot), in_group.eq(0),
                                 slot_stp.bit_select(in_slot, 1).eq(value & self.stp),
                                 slot_key.bit_select(in_slot, 1).eq(Const(spectral) & ~value),
                                 slot_base[in_slot].eq(group_base)]
                    if b3:
                        m.d.comb += unpacker.clear.eq(1)
                    m.next = "Header"
        return m

    def _bank_of(self, channel):
        """``(lane, row)``: the bank of ``channel`` and its row there."""
        lanes, d = self.config.lanes, self.config.d
        lane = channel[:index_bits(lanes)] if lanes > 1 else Const(0, 1)
        row = channel[index_bits(lanes):index_bits(d)] if self.config.blocks > 1 else Const(0, 0)
        return lane, row

    def _code_writes(self, m: Module, row_of) -> list[Signal]:
        """The code writes (to ``row_of`` of the receiving slot unless set otherwise), each through a
        register next to its memory."""
        code_writes = []
        for lane, port in enumerate(self.code_write):
            write = Signal(data.StructLayout({"addr": len(port.addr), "data": len(port.data), "en": len(port.en)}),
                           name=f"code_write{lane}")
            m.d.sync += [port.addr.eq(write.addr), port.data.eq(write.data), port.en.eq(write.en)]
            code_writes.append(write)
        for write in code_writes:
            m.d.comb += write.addr.eq(Cat(row_of, self.slot))
        return code_writes

    def _count_positions(self, m: Module, path, group_base):
        """At a header: ``group_base`` takes the running token count of ``path`` (0 keys, 1 values,
        2 salient values), which moves on by Tg."""
        next_position = [Signal(self.config.position_bits, name=f"next_position{p}") for p in range(3)]
        m.d.sync += group_base.eq(Array(next_position)[path])
        for p in range(3):
            with m.If(path == p):
                m.d.sync += next_position[p].eq(next_position[p] + self.config.group_tokens)

    def _unpacker(self, m: Module, code_writes, trit_channel) -> TritUnpacker:
        """The b3 unpacker: one channel's digits at a time into the code writes of ``trit_channel``
        (counted here), the words from ``i``. Its ``push.valid`` and ``clear`` are the caller's."""
        d = self.config.d
        m.submodules.unpacker = unpacker = TritUnpacker(self.config.group_tokens)
        m.d.comb += [unpacker.push.payload.eq(self.i.payload.data), unpacker.o.ready.eq(trit_channel != d)]
        trit_lane, trit_row = self._bank_of(trit_channel)
        with m.If(unpacker.o.valid & unpacker.o.ready):
            m.d.sync += trit_channel.eq(trit_channel + 1)
            for lane, write in enumerate(code_writes):
                with m.If(trit_lane == lane):
                    m.d.comb += [write.addr.eq(Cat(trit_row, self.slot)), write.data.eq(unpacker.o.payload),
                                 write.en.eq(-1)]
        return unpacker
