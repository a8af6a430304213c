"""Building blocks of the KV quantize engine: element encoders, channel ranking, the b3 packer.

The encoders are the division-free forms of spec/vidkv.md section 2 (golden/vidkv.py):

* 2-bit: ``q = floor((6 d + r) / (2 r))`` clamped to 3, with ``d = x - mn``, is the
  number of ``k`` in 1..3 with ``6 d >= (2 k - 1) r``; 0 when ``r = 0``.
* 1-bit: ``b = x >= 0``.
* ternary: ``|x| 2 Tg > S`` keeps ``sign(x)``; the ``i2`` code is ``t + 1``.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.vidkv_pack import b3_byte

__all__ = ["popcount", "code_2bit", "sign_bit", "code_i2", "ChannelRanker", "TritPacker", "TRITS_PER_WORD", "TIE_STEP"]

#: Channels the ranker resolves ties for per cycle.
TIE_STEP = 8
#: Trits in one 32-bit word of the ``b3`` layout: four bytes of five.
TRITS_PER_WORD = 20


def popcount(bits):
    """Number of set bits of ``bits`` as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def code_2bit(x, mn, r, in_bits: int):
    """2-bit asymmetric code of ``x`` (signed) against its channel's ``mn`` and ``r``."""
    d = (x - mn)[:in_bits]                        # 0 <= x - mn <= r < 2**in_bits
    d6 = (d << 2) + (d << 1)
    q = (d6 >= r) + (d6 >= r + (r << 1)) + (d6 >= r + (r << 2))
    return Mux(r == 0, 0, q)[:2]


def sign_bit(x):
    """1-bit code: 1 when ``x >= 0``."""
    return ~x[-1]


def code_i2(x, s, group_tokens: int):
    """Ternary ``i2`` code ``t + 1`` of ``x`` against its channel's ``S = sum |x|``."""
    magnitude = Mux(x[-1], -x, x).as_unsigned()
    keep = (magnitude << (group_tokens.bit_length())) > s       # |x| 2 Tg > S
    return Mux(keep, Mux(x[-1], 0, 2), 1)[:2]


class ChannelRanker(wiring.Component):
    """The ``n_hi`` channels of widest range, lower index first among equals (a radix select).

    Load the D ranges ``lanes`` at a time in channel order (``load`` high for D / lanes
    cycles), then pulse ``start``. For ``range_bits`` cycles, from the most significant
    bit down, the ranker decides one bit of the ``n_hi``-th largest range from the count
    of channels still equal to the threshold so far; then, D / lanes cycles more, it
    marks the channels above the threshold and the lowest-indexed channels equal to it.
    ``mask`` (bit c = channel c) is valid when ``busy`` falls and holds until the next
    ``start``.
    """

    def __init__(self, d: int, lanes: int, range_bits: int, n_hi: int):
        if not 0 < n_hi < d:
            raise ValueError(f"n_hi must be in 1..{d - 1} for a ranking, not {n_hi}")
        self.d, self.lanes, self.range_bits, self.n_hi = d, lanes, range_bits, n_hi
        super().__init__({
            "load": In(1),
            "ranges": In(data.ArrayLayout(unsigned(range_bits), lanes)),
            "start": In(1),
            "busy": Out(1),
            "mask": Out(d),
        })

    def elaborate(self, platform):
        m = Module()
        d, lanes = self.d, self.lanes
        step_width = min(TIE_STEP, d)
        ranges = [Signal(self.range_bits, name=f"range{c}") for c in range(d)]
        above = Signal(d)            # channels known to be above the threshold
        equal = Signal(d)            # channels equal to the threshold's bits so far
        count_above = Signal(range(d + 1))
        step = Signal(range(max(self.range_bits, d // step_width) + 1))
        selecting = Signal()
        taken = Signal(range(d + 1))

        with m.If(self.load):
            moved = ranges[lanes:] + [self.ranges[i] for i in range(lanes)]
            m.d.sync += [r.eq(new) for r, new in zip(ranges, moved)]

        top = Cat(r[-1] for r in ranges)
        ones = popcount(equal & top)
        with m.If(self.start):
            m.d.sync += [above.eq(0), equal.eq(-1), count_above.eq(0), step.eq(0),
                         selecting.eq(1), self.busy.eq(1), taken.eq(0)]
        with m.Elif(self.busy & selecting):
            m.d.sync += [r.eq(r << 1) for r in ranges]
            with m.If(count_above + ones >= self.n_hi):
                m.d.sync += equal.eq(equal & top)            # the threshold has this bit
            with m.Else():
                m.d.sync += [above.eq(above | (equal & top)), equal.eq(equal & ~top),
                             count_above.eq(count_above + ones)]
            m.d.sync += step.eq(step + 1)
            with m.If(step == self.range_bits - 1):
                m.d.sync += [selecting.eq(0), step.eq(0)]
        with m.Elif(self.busy):
            # Ties, in channel order: take the first equal channels until n_hi are marked.
            # The mask fills from the top as above/equal shift down.
            need = self.n_hi - count_above
            block_equal = equal[:step_width]
            take = Signal(step_width)
            running = taken
            for i in range(step_width):
                m.d.comb += take[i].eq(block_equal[i] & (running < need))
                running = running + block_equal[i]
            m.d.sync += [taken.eq(taken + popcount(take)), above.eq(above >> step_width),
                         equal.eq(equal >> step_width),
                         self.mask.eq(Cat(self.mask[step_width:], above[:step_width] | take)), step.eq(step + 1)]
            with m.If(step == d // step_width - 1):
                m.d.sync += self.busy.eq(0)
        return m


class TritPacker(wiring.Component):
    """``b3`` bytes of a channel-major trit stream, four bytes (20 trits) per output word.

    ``push`` takes one channel's Tg digits ``d = t + 1`` (2 bits each, token 0 lowest)
    when fewer than 20 digits wait; a word goes out whenever 20 are there. With
    ``flush`` high (after the group's last push) the remaining digits go out padded with
    digit 0 (``t = -1``), and ``empty`` rises when nothing is left.
    """

    def __init__(self, group_tokens: int):
        self.group_tokens = group_tokens
        super().__init__({
            "push": In(stream.Signature(2 * group_tokens)),
            "flush": In(1),
            "empty": Out(1),
            "o": Out(stream.Signature(32)),
        })

    def elaborate(self, platform):
        m = Module()
        capacity = self.group_tokens + TRITS_PER_WORD - 1
        queue = Signal(2 * capacity)
        count = Signal(range(capacity + 1))
        table = Array(Const(b3_byte(v), 8) for v in range(243))

        def byte(k):
            digits = [queue[2 * (5 * k + n):2 * (5 * k + n) + 2] for n in range(5)]
            value = digits[0] * 81 + digits[1] * 27 + digits[2] * 9 + digits[3] * 3 + digits[4]
            return table[value]

        m.d.comb += [
            self.o.payload.eq(Cat(byte(k) for k in range(4))),
            self.o.valid.eq((count >= TRITS_PER_WORD) | (self.flush & (count != 0))),
            self.push.ready.eq((count < TRITS_PER_WORD) & ~self.flush),
            self.empty.eq(count == 0),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [queue.eq(queue >> (2 * TRITS_PER_WORD)),
                         count.eq(Mux(count > TRITS_PER_WORD, count - TRITS_PER_WORD, 0))]
        with m.Elif(self.push.valid & self.push.ready):
            # Digits above `count` are zero, so the new channel's digits can be ORed in.
            m.d.sync += [queue.eq(queue | (self.push.payload << (count << 1))),
                         count.eq(count + self.group_tokens)]
        return m
