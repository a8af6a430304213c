"""An FP32 adder for the FP16 MAC baseline: IEEE binary32 bits in, the sum rounded to nearest even out.

Defined for the operands the baseline produces (docs/fp16_baseline.md): normal numbers
and ``+0``, with results that neither overflow nor fall below the smallest normal (no
subnormal, infinity or NaN is handled). An exact zero result is ``+0``.

The algorithm: order the operands by magnitude (``big``, ``small``), align ``small``'s
24-bit significand to ``big``'s exponent with three extra bits (guard, round and a
sticky bit, the OR of everything shifted below it), add or subtract, then normalize
(a carry: one place right, the lost bit into the sticky; else left by the leading
zeros) and round to nearest even at the 24th significant bit. With ``pipelined`` a
register splits the two halves (align and add | normalize and round).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, Value, signed

__all__ = ["FP32_BITS", "leading_zeros", "fp32_add"]

FP32_BITS = 32
_MANTISSA = 23
_EXTRA = 3                       # guard, round, sticky
_WIDTH = _MANTISSA + 1 + _EXTRA  # an aligned significand: 27 bits


def _count(value: Value) -> tuple[Value, Value]:
    """``(all_zero, leading zeros)`` of ``value`` (width a power of two), as a balanced tree."""
    width = len(value)
    if width == 1:
        return ~value[0], Cat()                                     # log2(1) = 0 bits
    half = width // 2
    high_zero, high_count = _count(value[half:])
    low_zero, low_count = _count(value[:half])
    count = Mux(high_zero, Cat(low_count, C(1, 1)), Cat(high_count, C(0, 1)))
    return high_zero & low_zero, count


def leading_zeros(m: Module, value: Value, name: str) -> Signal:
    """The count of leading zeros of ``value`` (its width if it is 0), combinational, a tree of muxes."""
    value = Value.cast(value)
    width = len(value)
    padded = 1 << (width - 1).bit_length()
    zero, count = _count(Cat(C(0, padded - width), value))         # zeros below: counted only if all zero
    result = Signal(range(width + 1), name=name)
    m.d.comb += result.eq(Mux(zero, width, count))
    return result


def fp32_add(m: Module, a: Value, b: Value, name: str, *, pipelined: bool = False) -> Value:
    """``a + b`` of two FP32 bit patterns (see the module docstring), ``pipelined``: a cycle later."""
    a, b = Value.cast(a), Value.cast(b)
    # ---- stage 1: order, align, add -----------------------------------------------------------------
    swap = a[:31] < b[:31]
    big, small = Mux(swap, b, a), Mux(swap, a, b)
    e_big, e_small = big[_MANTISSA:31], small[_MANTISSA:31]
    x = Cat(C(0, _EXTRA), big[:_MANTISSA], e_big != 0)
    y_full = Cat(C(0, _EXTRA), small[:_MANTISSA], e_small != 0)
    distance = Signal(8, name=f"{name}_d")
    m.d.comb += distance.eq(e_big - e_small)
    shift = Mux(distance > _WIDTH, _WIDTH, distance[:5])
    y = Signal(_WIDTH, name=f"{name}_y")
    m.d.comb += y.eq(y_full >> shift)
    below = Cat(i < shift for i in range(_WIDTH))                   # the bits shifted out
    sticky = (y_full & below) != 0
    y_s = y | sticky
    subtract = big[31] ^ small[31]
    total_1 = Signal(_WIDTH + 1, name=f"{name}_total")
    exponent_1 = Signal(8, name=f"{name}_e")
    sign_1 = Signal(name=f"{name}_sign")
    domain = m.d.sync if pipelined else m.d.comb
    domain += [total_1.eq(Mux(subtract, x - y_s, x + y_s)), exponent_1.eq(e_big), sign_1.eq(big[31])]

    # ---- stage 2: normalize, round --------------------------------------------------------------------
    carry = total_1[_WIDTH]
    zeros = leading_zeros(m, total_1[:_WIDTH], f"{name}_lz")
    shifted = Signal(_WIDTH, name=f"{name}_norm")
    with m.If(carry):
        m.d.comb += shifted.eq(Cat(total_1[0] | total_1[1], total_1[2:]))
    with m.Else():
        m.d.comb += shifted.eq((total_1[:_WIDTH] << zeros)[:_WIDTH])
    guard, round_bit, sticky_bit, lsb = shifted[2], shifted[1], shifted[0], shifted[3]
    up = guard & (round_bit | sticky_bit | lsb)
    significand = Signal(_MANTISSA + 2, name=f"{name}_sig")
    m.d.comb += significand.eq(shifted[_EXTRA:] + up)
    exponent = Signal(signed(10), name=f"{name}_exp")
    m.d.comb += exponent.eq(exponent_1 + carry - Mux(carry, 0, zeros) + significand[_MANTISSA + 1])
    fraction = Mux(significand[_MANTISSA + 1], 0, significand[:_MANTISSA])
    result = Signal(FP32_BITS, name=f"{name}_sum")
    m.d.comb += result.eq(Mux(total_1 == 0, 0, Cat(fraction, exponent[:8], sign_1)))
    return result
