"""The record emitter of the KV quantize engine: one block of channels -> tagged output beats.

The encoder hands over a block of ``lanes`` channels (their codes along the group's
tokens, their format and metadata) in one cycle; the emitter then sends each channel's
record in channel order (golden/vidkv_stream.py): code words, then metadata words.
``b3`` channels send their digits to the trit packer instead of code words. While it
sends, the encoder reads the next block.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig
from arch.vidkv import CODE, META

__all__ = ["Fmt", "Emitter", "beat_layout", "lane_layout"]


class Fmt(enum.Enum, shape=2):
    """A channel's format in a group."""

    TWO_BIT = 0     # codes q, META (mn, r)
    ONE_BIT = 1     # sign bits, META s
    I2 = 2          # ternary codes t + 1, META s
    B3 = 3          # ternary digits to the trit packer, META s


def beat_layout(config: KvConfig) -> data.StructLayout:
    """An output beat: a 32-bit word and its tag."""
    return data.StructLayout({"data": 32, "tag": config.tag_bits})


def lane_layout(config: KvConfig) -> data.StructLayout:
    """What the emitter keeps of one channel: codes (2 bits per token, token 0 lowest), format, metadata."""
    return data.StructLayout({"codes": 2 * config.group_tokens, "fmt": Fmt, "mn": signed(config.mn_bits),
                              "r": unsigned(config.r_bits), "s": unsigned(max(config.s_bits, config.s_fft_bits))})


class Emitter(wiring.Component):
    """Sends the records of a block of channels, one beat per cycle.

    ``load`` (with ``idle``) takes ``lanes``; ``o`` carries the beats; ``trits`` pushes
    a ``b3`` channel's digits before its ``s``.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "load": In(1),
            "lanes": In(data.ArrayLayout(lane_layout(config), config.lanes)),
            "idle": Out(1),
            "o": Out(stream.Signature(beat_layout(config))),
            "trits": Out(stream.Signature(2 * config.group_tokens)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        tg, lanes = config.group_tokens, config.lanes
        layout = lane_layout(config)
        held = Array(Signal(layout.size, name=f"held{i}", reset_less=True) for i in range(lanes))
        pending = Signal(lanes)
        word = Signal(range(config.code_words_2bit + 1))
        pushed = Signal()

        # The lane whose record goes out: the lowest pending one, kept in a register. The
        # lane after it is found from registers alone, beside the record's end (which needs
        # the lane's format), and one multiplexer picks.
        lane = Signal(range(lanes))
        others = Signal(lanes)
        after = Signal.like(lane)
        m.d.comb += others.eq(pending & ~(1 << lane))
        for i in reversed(range(lanes)):
            with m.If(others[i]):
                m.d.comb += after.eq(i)
        current = Signal(layout)
        m.d.comb += current.eq(held[lane])
        fmt = current.fmt
        bits = Cat(current.codes[2 * t] for t in range(tg))
        code_words = Mux(fmt == Fmt.ONE_BIT, config.code_words_1bit, Mux(fmt == Fmt.B3, 0, config.code_words_2bit))
        last = code_words                                          # the record's one metadata word
        code = Mux(fmt == Fmt.ONE_BIT, bits.word_select(word, 32), current.codes.word_select(word, 32))
        mn16 = Signal(signed(16))
        m.d.comb += mn16.eq(current.mn)
        value = Mux(fmt == Fmt.TWO_BIT, Cat(mn16, current.r), current.s)
        needs_push = (fmt == Fmt.B3) & ~pushed

        m.d.comb += [
            self.idle.eq(pending == 0),
            self.trits.payload.eq(current.codes),
            self.trits.valid.eq((pending != 0) & needs_push),
            self.o.valid.eq((pending != 0) & ~needs_push),
            self.o.payload.tag.eq(Mux(word < code_words, CODE, META)),
            self.o.payload.data.eq(Mux(word < code_words, code, value)),
        ]
        with m.If(self.trits.valid & self.trits.ready):
            m.d.sync += pushed.eq(1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += word.eq(word + 1)
            with m.If(word == last):
                m.d.sync += [word.eq(0), pushed.eq(0), pending.eq(others), lane.eq(after)]
        with m.If(self.load):
            m.d.sync += [h.eq(new) for h, new in zip(held, self.lanes, strict=True)]
            m.d.sync += [pending.eq(-1), lane.eq(0)]
        return m
