"""The bit-serial BitMoD PE and its bit-serial dequantization unit.

One PE holds ``lanes`` lanes. In each cycle every lane multiplies its int8 activation
by one radix-4 digit ``d`` of its weight (``d`` in ``{0, +-1, +-2, +-4}``, see
:mod:`hdl.decoder`), which is only a select of ``a``, ``2a`` or ``4a`` and a
conditional inversion. The lane sum is shifted by ``2t`` for digit ``t`` and added to
the group accumulator; when a group's last digit is in, the group sum moves to the
:class:`DequantUnit`, which multiplies it by the group scale ``sq`` one bit per cycle
while the PE already accumulates the next group.

Negation costs no adder in a lane: ``-m == ~m + 1``, so a lane sends ``m ^ neg`` into
the adder tree and the column adds the count of negative lanes once (``neg_count``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import ACTIVATION_BITS, signed_bits

from .replica import REPLICA_ATTR

__all__ = ["lane_select_layout", "lane_sum_bits", "neg_count_bits", "adder_tree", "BitSerialPE",
           "ScaleSerializer", "DequantUnit"]


def lane_select_layout(max_shift: int) -> data.StructLayout:
    """What a lane needs of a digit: one-hot ``e`` (bit ``s``: the digit is ``+-2**s``) and ``neg``.

    All-zero ``e`` is the digit 0; ``neg`` must then be 0 too.
    """
    return data.StructLayout({"e": max_shift + 1, "neg": 1})


def lane_sum_bits(lanes: int, max_shift: int, activation_bits: int = ACTIVATION_BITS) -> int:
    """Width of a lane sum: ``lanes`` digits of at most ``2**max_shift`` times a signed
    ``activation_bits`` activation (int8, or an aligned FP16 significand)."""
    return signed_bits(lanes << (activation_bits - 1 + max_shift))


def neg_count_bits(lanes: int) -> int:
    """Width of a column's count of negative lanes (``neg_count``, 0..``lanes``)."""
    return lanes.bit_length()


def adder_tree(m: Module, values, width: int, levels_per_stage: int) -> tuple[Signal, int]:
    """A balanced adder tree over ``values`` with a register after every ``levels_per_stage`` levels.

    Returns the (registered) sum, ``width`` bits signed, and its latency in cycles.
    """
    level, latency = list(values), 0
    depth = 0
    while len(level) > 1:
        paired = []
        for index in range(0, len(level) - 1, 2):
            paired.append(level[index] + level[index + 1])
        if len(level) % 2:
            paired.append(level[-1])
        depth += 1
        if depth % levels_per_stage == 0 or len(paired) == 1:
            registered = []
            for value in paired:
                reg = Signal(signed(width), reset_less=True)
                m.d.sync += reg.eq(value)
                registered.append(reg)
            paired = registered
            latency += 1
        level = paired
    if latency == 0:                           # a single value: still one register
        reg = Signal(signed(width), reset_less=True)
        m.d.sync += reg.eq(level[0])
        level, latency = [reg], 1
    return level[0], latency


class BitSerialPE(wiring.Component):
    """``lanes`` bit-serial lanes, their adder tree and the group accumulator.

    Inputs are registered by the array and change every cycle: ``a[l]`` (a signed
    ``activation_bits`` activation: int8, or an aligned FP16 significand),
    ``sel[l]`` (the lane's digit, :func:`lane_select_layout`), ``neg_count`` (lanes with
    ``neg`` set), ``t`` (the digit's index: the lane sum weighs ``4**t``), ``valid``
    and ``last`` (the group's last digit). ``latency`` cycles after a ``valid & last``
    input, ``done`` is high for one cycle and ``group_sum`` holds the finished group
    sum (a register, held until the next ``done``); the accumulator restarts at 0 a
    cycle before, so that the next group's first digit may follow the last at once.
    ``done_next`` is ``done`` a cycle early.
    """

    def __init__(self, lanes: int, max_shift: int, max_t: int, group_sum_bits: int, levels_per_stage: int = 1,
                 activation_bits: int = ACTIVATION_BITS):
        self.lanes, self.max_shift, self.group_sum_bits = lanes, max_shift, group_sum_bits
        self.levels_per_stage, self.activation_bits = levels_per_stage, activation_bits
        self.sum_bits = lane_sum_bits(lanes, max_shift, activation_bits)
        # Register the products, the tree's stages and the weighted sum; the accumulator
        # adds after that, and the finished group sum is registered once more.
        tree_levels = lanes.bit_length()          # lanes + 1 inputs (the count of negatives)
        self._accumulated = 1 + -(-tree_levels // levels_per_stage) + 1 + 1
        self.latency = self._accumulated + 1
        super().__init__({
            "a": In(data.ArrayLayout(signed(activation_bits), lanes)),
            "sel": In(data.ArrayLayout(lane_select_layout(max_shift), lanes)),
            "neg_count": In(neg_count_bits(lanes)),
            "t": In(max(1, (max_t - 1).bit_length())),
            "valid": In(1),
            "last": In(1),
            "group_sum": Out(signed(group_sum_bits)),
            "done": Out(1),
            "done_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        product_bits = self.activation_bits + self.max_shift
        # Stage 1: each lane's select and inversion, registered.
        lanes = []
        for lane in range(self.lanes):
            a, sel = self.a[lane], self.sel[lane]
            picked = 0
            for shift in range(self.max_shift + 1):
                shifted = (a << shift).as_signed()
                picked = picked | Mux(sel.e[shift], shifted, 0)
            inverted = Signal(signed(product_bits), name=f"lane{lane}", reset_less=True)
            m.d.sync += inverted.eq(picked ^ sel.neg.replicate(product_bits).as_signed())
            lanes.append(inverted)
        count = Signal(self.neg_count.shape(), name="neg_count_1", reset_less=True)
        m.d.sync += count.eq(self.neg_count)
        tree, tree_latency = adder_tree(m, lanes + [Cat(count, 0).as_signed()], self.sum_bits,
                                        self.levels_per_stage)
        assert 1 + tree_latency + 1 + 1 == self._accumulated, (tree_latency, self._accumulated)

        # Control follows the data through the same number of registers (`t` is used
        # one stage before the accumulator). `restart` (= the accumulator stage's valid &
        # last) restarts the accumulator and loads the group sum register; `done` follows
        # it a cycle later and loads the dequantization unit and its serializer. The
        # control registers are replicas (hdl.replica): one control chain per PE.
        t, valid, last = self.t, self.valid, self.last
        control = {REPLICA_ATTR: 1}
        restart = Signal(name="restart", attrs=control)
        done = Signal(name="done_r", attrs=control)
        for stage in range(self._accumulated - 1):
            valid_next = Signal(name=f"valid_{stage}", attrs=control)
            last_next = Signal(name=f"last_{stage}", attrs=control)
            m.d.sync += [valid_next.eq(valid), last_next.eq(last)]
            if stage == self._accumulated - 2:
                m.d.sync += restart.eq(valid & last)
            valid, last = valid_next, last_next
            if stage < self._accumulated - 2:
                t_next = Signal.like(t, name=f"t_{stage}", reset_less=True, attrs=control)
                m.d.sync += t_next.eq(t)
                t = t_next

        # Stage 3: the lane sum weighted by 4**t, registered; stage 4: the group
        # accumulator, restarted when a group is done; stage 5: the group sum, a register
        # for the dequantization unit to load, with an adder of its own fed by a copy of
        # the weighted lane sum (one register per carry chain).
        accumulator = Signal(signed(self.group_sum_bits))
        # (Both copies are replicas: yosys would fold an unmarked one into the kept one.)
        shifted = Signal(signed(self.group_sum_bits), reset_less=True, attrs=control)
        shifted_copy = Signal.like(shifted, name="shifted_copy", reset_less=True, attrs=control)
        group_sum = Signal(signed(self.group_sum_bits), name="group_sum_r", reset_less=True)
        with m.Switch(t):
            for index in range(1 << len(t)):
                with m.Case(index):
                    m.d.sync += [shifted.eq(tree << (2 * index)), shifted_copy.eq(tree << (2 * index))]
        m.d.sync += done.eq(restart)
        m.d.comb += [self.group_sum.eq(group_sum), self.done.eq(done), self.done_next.eq(restart)]
        with m.If(restart):
            m.d.sync += [accumulator.eq(0), group_sum.eq(accumulator + shifted_copy)]
        with m.Elif(valid):
            m.d.sync += accumulator.eq(accumulator + shifted)
        return m


class ScaleSerializer(wiring.Component):
    """One group scale ``sq``, one bit per cycle, least significant first.

    ``load`` takes ``sq``; in each of the next ``scale_bits`` cycles ``active`` is high
    and ``add`` is the next bit of ``sq``. ``load_next`` must be ``load`` a cycle early:
    ``busy`` (= ``load | active``) is then a flip-flop too. ``add`` and ``busy`` are
    not decoded from the bit counter: they are the clock enables of the
    dequantization units the serializer feeds (and of its own registers).
    ``active_next`` is what ``active`` will be in the next cycle.
    """

    def __init__(self, scale_bits: int):
        self.scale_bits = scale_bits
        super().__init__({"sq": In(scale_bits), "load": In(1), "load_next": In(1), "add": Out(1),
                          "active": Out(1), "active_next": Out(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bits = Signal(self.scale_bits, reset_less=True)     # bit 0: the one `add` shows
        left = Signal(range(self.scale_bits + 1))           # cycles still active, this one included
        m.d.comb += self.active_next.eq(self.load | (self.active & (left != 1)))
        m.d.sync += [self.active.eq(self.active_next), self.busy.eq(self.load_next | self.active_next),
                     self.add.eq(Mux(self.load, self.sq[0], self.active_next & bits[1]))]
        with m.If(self.busy):
            m.d.sync += [bits.eq(Mux(self.load, self.sq, bits >> 1)),
                         left.eq(Mux(self.load, self.scale_bits, left - 1))]
        return m


class DequantUnit(wiring.Component):
    """Bit-serial ``acc += group_sum * sq``: one bit of ``sq`` per cycle, ``scale_bits`` cycles.

    ``load`` captures ``group_sum``; then, in each cycle in which the serializer is
    active, the captured value doubles, and before that it is added to ``acc`` when
    ``add`` (the bit of ``sq`` for this position, from a :class:`ScaleSerializer`) is
    set. ``busy`` is the serializer's (``load`` or active). ``clear`` zeroes ``acc``.
    The group's sign ``sg`` is already in the digits.
    """

    def __init__(self, group_sum_bits: int, scaled_bits: int, acc_bits: int):
        self.scaled_bits = scaled_bits
        super().__init__({
            "group_sum": In(signed(group_sum_bits)),
            "load": In(1),
            "add": In(1),
            "busy": In(1),
            "clear": In(1),
            "acc": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        shifted = Signal(signed(self.scaled_bits), reset_less=True)
        with m.If(self.busy):
            m.d.sync += shifted.eq(Mux(self.load, self.group_sum, shifted << 1))
        with m.If(self.clear):
            m.d.sync += self.acc.eq(0)
        with m.Elif(self.add):
            m.d.sync += self.acc.eq(self.acc + shifted)
        return m
