"""Harnesses for the data path's small units: the BitMoD weight decoder against the format
table, and the KV engines' b3 trit packer and unpacker as a round trip and for latency."""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Cat, Const, Mux, Signal, signed
from amaranth.hdl import Assert, Assume

from arch.bitmod import FAMILIES, FAMILY_IDS, code_values, family, max_digit_shift
from hdl.decoder import WeightDecoder
from hdl.kv_units import TritPacker, TritUnpacker

from .links import FAIR
from .streams import Harness

__all__ = ["DecoderHarness", "TritHarness", "TritDrainHarness"]


class DecoderHarness(Harness):
    """:class:`WeightDecoder` with every family built in: for every family ID, code word
    and ``dt``, the digits it sends sum (``sum(d[t] * 4**t)``) to the format table's value
    ``arch.bitmod.code_values(family, dt)[code]``; each digit is 0 or ``+-2**shift`` with
    ``shift <= 2``; an ID that is no built family gives all-zero digits; ``o`` keeps the
    stream contract and holds at most the one code in flight."""

    def __init__(self, block=WeightDecoder, families=FAMILIES):
        super().__init__()
        self.block, self.families = block, families

    def build(self, m):
        dut = m.submodules.dut = self.block(self.families)
        family_id = self.free(len(dut.family), "family")
        m.d.comb += dut.family.eq(family_id)
        word, taken = self.source(m, dut.i, "i")
        given = self.sink(m, dut.o, "o")
        code, dt = word[:dut.widths["code_bits"]], word[dut.widths["code_bits"]]

        # The table's value of the code taken, and whether the ID is a built family: one
        # case per (family, dt, code), don't-care above the family's code bits.
        value, built = Signal(signed(12)), Signal()
        code_bits, id_bits = len(code), len(family_id)
        with m.Switch(Cat(code, dt, family_id)):
            for name in self.families:
                bits, kind = family(name).bits, family(name).kind
                for d in ((0,) if kind == "int" else (0, 1)):
                    for c, v in enumerate(code_values(name, d)):
                        pattern = (f"{FAMILY_IDS[name]:0{id_bits}b}" + ("-" if kind == "int" else str(d))
                                   + "-" * (code_bits - bits) + f"{c:0{bits}b}")
                        with m.Case(pattern):
                            m.d.comb += [value.eq(v), built.eq(1)]
        want, want_built, in_flight = Signal(signed(12)), Signal(), Signal()
        with m.If(given):
            m.d.sync += in_flight.eq(0)
        with m.If(taken):
            m.d.sync += [want.eq(value), want_built.eq(built), in_flight.eq(1)]
            m.d.comb += Assert(~in_flight | given, "i: a second code taken while one waits")

        total = 0
        shift_limit = max_digit_shift(self.families)
        shifts_ok = []
        for t, term in enumerate(dut.o.payload):
            digit, magnitude = Signal(signed(8), name=f"digit{t}"), Signal(signed(8), name=f"magnitude{t}")
            m.d.comb += [magnitude.eq(Const(1, 8) << term.shift),
                         digit.eq(Mux(term.nonzero, Mux(term.negative, -magnitude, magnitude), 0))]
            shifts_ok.append(~term.nonzero | (term.shift <= shift_limit))
            total = total + (digit << (2 * t))
        # One assertion for all digits (a mutation is named by the assertion it breaks).
        with m.If(dut.o.valid):
            m.d.comb += Assert(Cat(*shifts_ok).all(), f"o: a digit shifts by more than {shift_limit}")
        sum_of_digits = Signal(signed(16))
        m.d.comb += sum_of_digits.eq(total)
        with m.If(given):
            m.d.comb += Assert(in_flight, "o: a digit set nobody asked for")
            m.d.comb += Assert(sum_of_digits == want, "o: the digits do not sum to the table's value")
            with m.If(~want_built):
                m.d.comb += Assert(dut.o.payload.as_value() == 0, "o: an unbuilt family gave nonzero digits")


class _Pipeline(NamedTuple):
    pack: TritPacker
    unpack: TritUnpacker
    digits: Signal          # the channel offered to the packer
    pushed: Signal          # ... taken
    n_in: Signal            # channels taken by the packer before this cycle
    n_out: Signal           # ... and out of the unpacker
    given: Signal           # a channel taken from the unpacker
    draining: Signal        # every channel is in, not every one is out


class TritHarness(Harness):
    """:class:`TritPacker` into :class:`TritUnpacker` with free stalls between and after:
    the channels pushed into the packer (any digits 0..2, ``channels`` of them, then
    ``flush``) come out of the unpacker in order and unchanged, and none is created
    (the padding never reaches a reader that takes ``channels`` and clears). How soon
    they come out is :class:`TritDrainHarness`'s: its bound lies beyond this proof's depth."""

    def __init__(self, packer=TritPacker, unpacker=TritUnpacker, group_tokens: int = 20, max_channels: int = 1):
        super().__init__()
        self.packer, self.unpacker = packer, unpacker
        self.group_tokens, self.max_channels = group_tokens, max_channels

    def pipeline(self, m) -> _Pipeline:
        """The two blocks, the stalls between and after them, and the channel counts."""
        tg = self.group_tokens
        pack = m.submodules.pack = self.packer(tg)
        unpack = m.submodules.unpack = self.unpacker(tg)
        digits, pushed = self.source(m, pack.push, "push")
        # The wire between them, with its own free stall.
        link = self.free(1, "link_open")
        m.d.comb += [unpack.push.payload.eq(pack.o.payload), unpack.push.valid.eq(pack.o.valid & link),
                     pack.o.ready.eq(unpack.push.ready & link)]
        self.bounded(m, ~link, FAIR - 1, "link_closed", assume=True)

        channels = self.constant(m, range(1, self.max_channels + 1), "channels")
        m.d.comb += Assume((channels >= 1) & (channels <= self.max_channels))
        n_in = self.counter(m, pushed, 4, "n_in")
        m.d.comb += Assume(~pack.push.valid | (n_in < channels))
        m.d.comb += pack.flush.eq(n_in == channels)

        ready = self.free(1, "o_ready")
        n_out = Signal(4)
        reading = n_out < channels
        m.d.comb += unpack.o.ready.eq(ready & reading)
        self.bounded(m, ~ready, FAIR - 1, "o_ready_low", assume=True)
        given = Signal(name="given")
        m.d.comb += given.eq(unpack.o.valid & unpack.o.ready)
        with m.If(given):
            m.d.sync += n_out.eq(n_out + 1)
        m.d.comb += unpack.clear.eq(0)
        return _Pipeline(pack, unpack, digits, pushed, n_in, n_out, given, (n_in == channels) & reading)

    def build(self, m):
        tg = self.group_tokens
        pack, unpack, digits, pushed, n_in, n_out, given, _ = self.pipeline(m)
        for t in range(tg):
            m.d.comb += Assume(digits[2 * t:2 * t + 2] != 3)
        stalled, previous = Signal(), Signal(32)
        m.d.sync += [stalled.eq(pack.o.valid & ~pack.o.ready), previous.eq(pack.o.payload)]
        with m.If(stalled):
            m.d.comb += Assert(pack.o.valid & (pack.o.payload == previous), "pack.o: word changed while waiting")

        tracked = self.constant(m, 3, "tracked")
        seen, recorded = Signal(), Signal(2 * tg)
        with m.If(pushed & (n_in == tracked)):
            m.d.sync += [seen.eq(1), recorded.eq(digits)]
        with m.If(given & (n_out == tracked)):
            m.d.comb += Assert(seen, "o: channel out before it was pushed")
            m.d.comb += Assert(unpack.o.payload == recorded, "o: the channel's digits changed on the way")
        m.d.comb += Assert(n_out <= n_in, "o: more channels out than in")


class TritDrainHarness(TritHarness):
    """The same pipeline with the real KV group (Tg = 16: the last word is padded by
    ``flush``) and up to two channels, digits not checked: once the last channel is in,
    it is out of the unpacker within ``DRAIN`` cycles under the free (fair) stalls."""

    DRAIN = 12

    def __init__(self, packer=TritPacker, unpacker=TritUnpacker):
        super().__init__(packer, unpacker, group_tokens=16, max_channels=2)

    def build(self, m):
        self.bounded(m, self.pipeline(m).draining, self.DRAIN, "drain")
