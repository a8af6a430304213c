"""FP16 activations in the PE array: decoding, a token's exponent, and exponent matching.

docs/formats.md, "FP16 activations": every finite binary16 value is
``(-1)^s * M * 2^(e - 25)`` with ``M = F + 1024 [E > 0]`` and ``e = max(E, 1)``; a token's
activations are aligned to its largest ``e`` (``er``) as
``A = (-1)^s * round_half_away(M * 2^B / 2^(er - e))``. The RTL computes ``A`` without a
negation adder: with ``t = (M << (B + 1)) >> (er - e)``, ``A = ((t ^ -s) + 1) >> 1``
(for ``s = 0`` that is ``floor((t + 1) / 2)``; for ``s = 1``, ``~t + 1 = -t`` and
``floor(-t / 2) = -floor((t + 1) / 2)``): one shifter and one incrementer per lane.
"""

from __future__ import annotations

from amaranth import C, Cat, Mux, Value

from arch.fp16 import EXPONENT_BITS, MANTISSA_BITS, MIN_EXPONENT, SIGNIFICAND_BITS, SPECIAL_EXPONENT

__all__ = ["fields", "exponent", "special", "aligned_lane", "int8_lane", "max_tree"]


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


def aligned_lane(value: Value, er: Value, align_bits: int) -> Value:
    """``A`` of one binary16 lane for a token of exponent ``er`` (signed, ``12 + align_bits`` bits).

    ``er`` must be at least the lane's ``e`` (it is the token's largest).
    """
    sign, field, mantissa = fields(value)
    width = SIGNIFICAND_BITS + align_bits + 1                                # t: M * 2^(B + 1)
    t = Cat(C(0, align_bits + 1), mantissa, field != 0) >> (er - exponent(value))[:EXPONENT_BITS]
    x = Cat(t, C(0, 1)).as_signed() ^ sign.replicate(width + 1).as_signed()
    return ((x + 1) >> 1)[:width].as_signed()


def int8_lane(value: Value, width: int) -> Value:
    """The int8 activation in a lane's low byte, sign-extended to ``width`` bits (``both``
    builds, int8 jobs)."""
    byte = Value.cast(value)[:8]
    return Cat(byte, byte[7].replicate(width - 8))


def max_tree(values: list) -> Value:
    """The largest of unsigned ``values`` (a balanced tree of compares)."""
    level = [Value.cast(v) for v in values]
    while len(level) > 1:
        paired = [Mux(a > b, a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]

