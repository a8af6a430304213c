"""Building blocks of the KV quantize engine: element encoders, channel ranking, the b3 packer.

The encoders are the division-free forms of docs/vidkv_contract.md section 2 (golden/vidkv.py):

* 2-bit: ``q = floor((6 d + r) / (2 r))`` clamped to 3, with ``d = x - mn``, is the
  number of ``k`` in 1..3 with ``6 d >= (2 k - 1) r``; 0 when ``r = 0``.
* 1-bit: ``b = x >= 0``, the inverted sign bit.
* ternary: ``|x| 2 Tg > S`` keeps ``sign(x)``; the ``i2`` code is ``t + 1``.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.vidkv import b3_byte

__all__ = ["index_bits", "register_stream", "times", "sum_tree", "divmod3", "popcount", "six_distance",
           "code_2bit", "magnitude", "code_i2", "ChannelRanker", "TritPacker", "TritUnpacker", "b3_digits",
           "TRITS_PER_WORD", "TIE_STEP"]

#: Channels the ranker resolves ties for per cycle.
TIE_STEP = 8
#: Trits in one 32-bit word of the ``b3`` layout: four bytes of five.
TRITS_PER_WORD = 20


def index_bits(n: int) -> int:
    """Bits of an index into ``n`` entries (0 for one entry)."""
    return (n - 1).bit_length()


def times(value, constant: int):
    """``value * constant`` as shifts and adds (no multiplier cell for a small constant)."""
    terms = [value << i for i in range(constant.bit_length()) if constant >> i & 1]
    return sum_tree(terms) if terms else Const(0, 1)


def sum_tree(terms):
    """The sum of ``terms`` as a balanced adder tree."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def divmod3(m: Module, n, name: str = "div3"):
    """``(n // 3, n % 3)`` of unsigned ``n``, most significant bits first, two bits per level
    (a remainder and two bits in, one LUT4 per output bit): no multiplier or divider.
    Adds the levels' signals to ``m``."""
    width = len(n) + len(n) % 2
    rem = Const(0, 2)
    quotient = []
    for i in reversed(range(0, width, 2)):
        both = Cat(n[i] if i < len(n) else 0, n[i + 1] if i + 1 < len(n) else 0)
        partial = Signal(4, name=f"{name}_partial{i}")           # 4 rem + both, at most 11
        digit = Signal(2, name=f"{name}_digit{i}")
        m.d.comb += [partial.eq(Cat(both, rem)),
                     digit.eq(Mux(partial >= 9, 3, Mux(partial >= 6, 2, Mux(partial >= 3, 1, 0))))]
        quotient.append(digit)
        rem = Signal(2, name=f"{name}_rem{i}")
        m.d.comb += rem.eq(partial - (digit << 1) - digit)
    return Cat(*reversed(quotient))[:len(n)], rem


def register_stream(m: Module, o, valid, payload):
    """Drive stream ``o`` from registers loaded with ``valid``/``payload``; return the source's ready.

    A register slice: the consumer sees only flip-flops, and the source may move
    whenever the register is empty or being emptied (``~o.valid | o.ready``).
    """
    ready = Signal(name="slice_ready")
    m.d.comb += ready.eq(~o.valid | o.ready)
    with m.If(ready):
        m.d.sync += [o.valid.eq(valid), o.payload.eq(payload)]
    return ready


def popcount(bits):
    """Number of set bits of ``bits`` as a balanced adder tree."""
    return sum_tree(bits[i] for i in range(len(bits))) if len(bits) else Const(0, 1)


def six_distance(x, mn, in_bits: int):
    """``6 (x - mn)``, unsigned (``0 <= x - mn <= r < 2**in_bits``): the 2-bit encoder's first stage."""
    d = (x - mn)[:in_bits]
    return ((d << 2) + (d << 1))[:in_bits + 3]


def code_2bit(six_d, r, r3, r5):
    """2-bit asymmetric code from ``6 (x - mn)`` and the channel's ``r``, ``3 r``, ``5 r``."""
    q = (six_d >= r) + (six_d >= r3) + (six_d >= r5)
    return Mux(r == 0, 0, q)[:2]


def magnitude(x):
    """``|x|`` of a signed value, unsigned."""
    return Mux(x[-1], -x, x).as_unsigned()[:len(x)]


def code_i2(magnitude, negative, s, group_tokens: int):
    """Ternary ``i2`` code ``t + 1``: ``sign(x)`` kept where ``|x| 2 Tg > S``."""
    keep = (magnitude << group_tokens.bit_length()) > s       # |x| 2 Tg > S
    return Mux(keep, Mux(negative, 0, 2), 1)[:2]


class ChannelRanker(wiring.Component):
    """The ``n_hi`` channels of widest range, lower index first among equals (a radix select).

    Load the D ranges ``lanes`` at a time in channel order (``load`` high for D / lanes
    cycles), then pulse ``start``. The ranker decides the ``n_hi``-th largest range one
    bit at a time, from the most significant: a pass over the channels, :data:`TIE_STEP`
    a cycle (its registers rotate past a window of that many), counts the channels still
    equal to the threshold so far whose next bit is 1, and one more cycle decides the
    bit. Each pass also applies the previous bit's decision (channels above / still
    equal), one more pass the last decision. A last pass marks the channels above the
    threshold and the lowest-indexed channels equal to it. ``mask`` (bit c = channel c)
    is valid when ``busy`` falls, :meth:`cycles` after ``start``, and holds until the
    next ``start``. Every cycle's logic is a window of TIE_STEP channels and small counters.
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

    @staticmethod
    def cycles(d: int, range_bits: int) -> int:
        """Cycles from ``start`` until ``busy`` falls."""
        return (range_bits + 2) * (d // min(TIE_STEP, d)) + range_bits

    def elaborate(self, platform):
        m = Module()
        d, lanes, bits, window = self.d, self.lanes, self.range_bits, min(TIE_STEP, self.d)
        ranges = [Signal(bits, name=f"range{c}") for c in range(d)]
        last_bit = Signal(d)         # each channel's bit that the previous pass counted
        above = Signal(d)            # channels known to be above the threshold
        equal = Signal(d)            # channels equal to the threshold's bits so far
        count_above = Signal(range(d + 1))
        ones = Signal(range(d + 1))
        decision = Signal()          # the previous pass's bit of the threshold
        room = Signal(range(self.n_hi + 1))       # equal channels still to take (last pass)
        passes = Signal(range(bits + 2))
        cycle = Signal(range(d // window + 1))
        deciding = Signal()

        with m.If(self.load):
            moved = ranges[lanes:] + [self.ranges[i] for i in range(lanes)]
            m.d.sync += [r.eq(new) for r, new in zip(ranges, moved, strict=True)]

        win = ranges[:window]
        top = Cat(r[-1] for r in win)
        # Passes 0 .. bits-1 count (each but the first applies the previous decision), pass
        # `bits` applies the last decision, pass bits+1 resolves ties from registers alone.
        applying, counting, tying = (passes != 0) & (passes <= bits), passes < bits, passes == bits + 1
        eq_old, prev, above_old = equal[:window], last_bit[:window], above[:window]
        eq_new = Mux(applying, Mux(decision, eq_old & prev, eq_old & ~prev), eq_old)
        above_new = Mux(applying & ~decision, above_old | (eq_old & prev), above_old)
        take = Signal(window)
        room_now = Mux(room > window, window, room)
        for i in range(window):
            m.d.comb += take[i].eq(eq_old[i] & (popcount(eq_old[:i]) < room_now))
        # The tie pass's count of equal channels in the window, taken a cycle ahead from
        # the window that rotates in next (no popcount between the flags and `room`).
        equal_here = Signal(range(window + 1))
        m.d.sync += equal_here.eq(popcount(equal[window:2 * window]))

        with m.If(self.start):
            m.d.sync += [above.eq(0), equal.eq(-1), count_above.eq(0), ones.eq(0), passes.eq(0), cycle.eq(0),
                         deciding.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy & deciding):
            with m.If(count_above + ones >= self.n_hi):
                m.d.sync += [decision.eq(1), room.eq(self.n_hi - count_above)]
            with m.Else():
                m.d.sync += [decision.eq(0), count_above.eq(count_above + ones),
                             room.eq(self.n_hi - count_above - ones)]
            m.d.sync += [ones.eq(0), deciding.eq(0)]
        with m.Elif(self.busy):
            rotated = ranges[window:] + [r << 1 for r in win]
            m.d.sync += [r.eq(new) for r, new in zip(ranges, rotated, strict=True)]
            m.d.sync += [last_bit.eq(Cat(last_bit[window:], top)), equal.eq(Cat(equal[window:], eq_new)),
                         above.eq(Cat(above[window:], above_new)), cycle.eq(cycle + 1)]
            with m.If(counting):
                m.d.sync += ones.eq(ones + popcount(eq_new & top))
            with m.If(tying):
                m.d.sync += [self.mask.eq(Cat(self.mask[window:], above_old | take)),
                             room.eq(Mux(equal_here >= room, 0, room - equal_here))]
            with m.If(cycle == d // window - 1):
                m.d.sync += [cycle.eq(0), passes.eq(passes + 1), deciding.eq(counting)]
                with m.If(tying):
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

        def value(k):
            digits = [queue[2 * (5 * k + n):2 * (5 * k + n) + 2] for n in range(5)]
            return sum_tree([times(d, 3 ** (4 - n)) for n, d in enumerate(digits)])[:8]

        # The word's four base-3 values leave from a register; the byte table follows it.
        values = [Signal(8, name=f"value{k}") for k in range(4)]
        word, word_valid = Cat(table[v] for v in values), Signal()
        take = ((count >= TRITS_PER_WORD) | (self.flush & (count != 0))) & (~word_valid | self.o.ready)
        m.d.comb += [
            self.o.payload.eq(word),
            self.o.valid.eq(word_valid),
            self.push.ready.eq((count < TRITS_PER_WORD) & ~self.flush),
            self.empty.eq((count == 0) & ~word_valid),
        ]
        with m.If(take):
            m.d.sync += [*(v.eq(value(k)) for k, v in enumerate(values)), word_valid.eq(1),
                         queue.eq(queue >> (2 * TRITS_PER_WORD)),
                         count.eq(Mux(count > TRITS_PER_WORD, count - TRITS_PER_WORD, 0))]
        with m.Elif(self.o.ready):
            m.d.sync += word_valid.eq(0)
        with m.If(self.push.valid & self.push.ready):
            # Digits above `count` are zero, so the new channel's digits can be ORed in.
            m.d.sync += [queue.eq(queue | (self.push.payload << (count << 1))),
                         count.eq(count + self.group_tokens)]
        return m


def b3_digits(byte) -> list:
    """The five base-3 digits of a ``b3`` byte, without a division: ``((byte 3**n) mod 256 * 3) >> 8``."""
    digits = []
    for n in range(5):
        scaled = times(byte, 3 ** n)[:8]
        digits.append(((scaled << 1) + scaled)[8:10])
    return digits


class TritUnpacker(wiring.Component):
    """Channel-major digits ``d = t + 1`` of ``b3`` words, one channel (Tg digits) at a time.

    ``push`` takes a 32-bit ``b3`` word (four bytes, 20 digits) while fewer than Tg digits
    wait; ``o`` offers a channel's Tg digits (2 bits each, token 0 lowest) whenever Tg
    are there. ``clear`` drops what is left (a group's padding digits).
    """

    def __init__(self, group_tokens: int):
        self.group_tokens = group_tokens
        super().__init__({
            "push": In(stream.Signature(32)),
            "clear": In(1),
            "o": Out(stream.Signature(2 * group_tokens)),
        })

    def elaborate(self, platform):
        m = Module()
        tg = self.group_tokens
        capacity = tg + TRITS_PER_WORD - 1
        queue = Signal(2 * capacity)
        count = Signal(range(capacity + 1))
        # A pushed word's digits are decoded into a register first; the queue takes them
        # from there (the decoder and the queue's shift are two paths).
        staged = Signal(2 * TRITS_PER_WORD)
        staged_valid = Signal()
        digits = Cat(d for k in range(4) for d in b3_digits(self.push.payload[8 * k:8 * k + 8]))
        popping = self.o.valid & self.o.ready
        # Never both: popping needs Tg digits, moving fewer. `push.ready` depends on registers only.
        moving = staged_valid & (count < tg)
        m.d.comb += [
            self.o.payload.eq(queue[:2 * tg]),
            self.o.valid.eq(count >= tg),
            self.push.ready.eq(~staged_valid | moving),
        ]
        with m.If(self.clear):
            m.d.sync += [queue.eq(0), count.eq(0), staged_valid.eq(0)]
        with m.Elif(popping):
            m.d.sync += [queue.eq(queue >> (2 * tg)), count.eq(count - tg)]
        with m.Elif(moving):
            m.d.sync += [queue.eq(queue | (staged << (count << 1))), count.eq(count + TRITS_PER_WORD),
                         staged_valid.eq(0)]
        with m.If(self.push.valid & self.push.ready & ~self.clear):
            m.d.sync += [staged.eq(digits), staged_valid.eq(1)]
        return m
