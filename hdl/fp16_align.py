"""FP16 activations in the PE array: decoding, a token's exponent, and exponent matching.

docs/formats.md, "FP16 activations": every finite binary16 value is
``(-1)^s * M * 2^(e - 25)`` with ``M = F + 1024 [E > 0]`` and ``e = max(E, 1)``; a token's
activations are aligned to its largest ``e`` (``er``) as
``A = (-1)^s * round_half_away(M * 2^B / 2^(er - e))``. The RTL computes ``A`` without a
negation adder: with ``t = (M << (B + 1)) >> (er - e)``, ``A = ((t ^ -s) + 1) >> 1``
(for ``s = 0`` that is ``floor((t + 1) / 2)``; for ``s = 1``, ``~t + 1 = -t`` and
``floor(-t / 2) = -floor((t + 1) / 2)``): one shifter and one incrementer per lane, in
two register stages (the XOR, the shift's difference and its coarse part; the fine part
and the incrementer) behind a register that holds the memory's read data.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data

from arch.fp16 import ALIGN_LATENCY, EXPONENT_BITS, MANTISSA_BITS, MIN_EXPONENT, SIGNIFICAND_BITS, SPECIAL_EXPONENT

__all__ = ["fields", "exponent", "special", "FINE_SHIFT_BITS", "ALIGN_LATENCY", "staged_layout",
           "staged_lane_value", "aligned_lane", "max_tree"]


def fields(value: Value) -> tuple[Value, Value, Value]:
    """``(s, E, F)`` of a 16-bit binary16 value."""
    value = Value.cast(value)
    return (value[MANTISSA_BITS + EXPONENT_BITS], value[MANTISSA_BITS:MANTISSA_BITS + EXPONENT_BITS],
            value[:MANTISSA_BITS])


def exponent(value: Value) -> Value:
    """The effective exponent ``e = max(E, 1)``."""
    _, field, _ = fields(value)
    return Mux(field == 0, MIN_EXPONENT, field)


def special(value: Value) -> Value:
    """The value is Inf or NaN (``E = 31``)."""
    return fields(value)[1] == SPECIAL_EXPONENT


#: Bits of the shift that the aligner's second stage applies (the first applies the rest).
FINE_SHIFT_BITS = 3


def staged_layout(align_bits: int) -> data.StructLayout:
    """A lane between the aligner's two register stages: ``x`` shifted by the high bits of
    its shift, and the low ``FINE_SHIFT_BITS`` bits of the shift still to apply."""
    return data.StructLayout({"value": signed(SIGNIFICAND_BITS + align_bits + 2), "fine": FINE_SHIFT_BITS})


def staged_lane_value(value: Value, er: Value, align_bits: int, int8: Value | None = None) -> Value:
    """The aligner's first stage for one binary16 lane of a token of exponent ``er``
    (``staged_layout``); ``er`` must be at least the lane's ``e`` (it is the token's largest).

    ``x = (M << (B + 1)) ^ -s`` (signed; an arithmetic right shift of it is the shifted
    ``t`` with the same XOR, so the sign is applied before the shift), shifted right by
    the multiple of 8 in ``er - e``. With ``int8`` high (an int8 job of a ``both``
    build), the lane's low byte ``a`` instead, as ``2a`` with no shift: the second stage
    then gives ``a``.
    """
    sign, field, mantissa = fields(value)
    width = SIGNIFICAND_BITS + align_bits + 1                                # t: M * 2^(B + 1)
    x = Cat(C(0, align_bits + 1), mantissa, field != 0, C(0, 1)).as_signed()
    x = x ^ sign.replicate(width + 1).as_signed()
    shift = (er - exponent(value))[:EXPONENT_BITS]
    if int8 is not None:
        byte = Value.cast(value)[:8]
        x = Mux(int8, Cat(C(0, 1), byte, byte[7].replicate(width - 8)).as_signed(), x)
        shift = Mux(int8, 0, shift)
    return Cat(x >> Cat(C(0, FINE_SHIFT_BITS), shift[FINE_SHIFT_BITS:]), shift[:FINE_SHIFT_BITS])


def aligned_lane(staged: Value, align_bits: int) -> Value:
    """The aligner's second stage: ``A = ((x >> fine) + 1) >> 1`` of a ``staged_layout`` lane
    (signed, ``12 + align_bits`` bits)."""
    lane = data.View(staged_layout(align_bits), staged)
    return (((lane.value >> lane.fine) + 1) >> 1)[:SIGNIFICAND_BITS + align_bits + 1].as_signed()


def max_tree(m: Module, values: list, name: str, levels_per_stage: int = 2) -> tuple[Value, int]:
    """The largest of unsigned ``values``: a balanced tree of compares with a register stage
    (``{name}_s{stage}_{i}``) after every ``levels_per_stage`` levels but the last ones.

    Returns the (combinational) result and how many register stages it passed.
    """
    level, depth, stages = [Value.cast(v) for v in values], 0, 0
    while len(level) > 1:
        paired = [Mux(a > b, a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        if len(level) % 2:
            paired.append(level[-1])
        level, depth = paired, depth + 1
        if depth % levels_per_stage == 0 and len(level) > 1:
            registered = [Signal(v.shape(), name=f"{name}_s{stages}_{i}", reset_less=True)
                          for i, v in enumerate(level)]
            m.d.sync += [r.eq(v) for r, v in zip(registered, level, strict=True)]
            level, stages = registered, stages + 1
    return level[0], stages
