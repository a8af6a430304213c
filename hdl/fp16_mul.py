"""FP16 operands and their exact FP32 product, for the FP16 MAC baseline (docs/fp16_baseline.md).

An operand is *unpacked*: a sign, an 11-bit significand ``M`` with its leading one at
bit 10 (normalized, also for FP16 subnormals), a signed exponent ``x`` with value
``(-1)^s * M * 2^x``, and a zero flag. The product of two is ``P * 2^(xa + xw)`` with
``P = Ma * Mw`` (22 bits, leading one at bit 21 or 20): exact in FP32.

``lut_product`` writes an unsigned product as shift-and-add (a select of the shifted
multiplicand per multiplier bit, an adder tree), which yosys does not map to a DSP.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data

from arch.fp16 import MANTISSA_BITS, SIGNIFICAND_BITS

from .fp16_align import exponent, fields
from .fp32_add import FP32_BITS, leading_zeros

__all__ = ["ACT_EXPONENT", "WEIGHT_EXPONENT", "unpacked_layout", "lut_product", "unpack_fp16",
           "weight_fp16", "partial_products", "pack_product"]

#: Signed widths of an activation's exponent (-34..5) and a weight's (-10..5).
ACT_EXPONENT = 7
WEIGHT_EXPONENT = 5
#: FP16's exponent bias plus its mantissa bits: ``x = e - 25`` for a normal value.
_OFFSET = 15 + MANTISSA_BITS
#: FP32's exponent bias.
_BIAS = 127


def unpacked_layout(exponent_bits: int) -> data.StructLayout:
    """An unpacked FP16 operand: ``sign``, ``significand`` (11 bits), ``exponent`` (signed), ``zero``."""
    return data.StructLayout({"sign": 1, "significand": SIGNIFICAND_BITS, "exponent": signed(exponent_bits),
                              "zero": 1})


def lut_product(a: Value, b: Value) -> Value:
    """``a * b`` (unsigned) as a sum of selected shifted copies of ``a``: no ``*``, so no DSP."""
    a, b = Value.cast(a), Value.cast(b)
    width = len(a) + len(b)
    terms = [Mux(b[i], Cat(C(0, i), a), 0) for i in range(len(b))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0][:width]


def unpack_fp16(m: Module, value: Value, name: str) -> Value:
    """An FP16 activation (raw bits, finite) unpacked: ``M * 2^x`` with ``M`` normalized, combinational."""
    sign, field, mantissa = fields(value)
    raw = Cat(mantissa, field != 0)                                         # F + 1024 [E > 0]
    zeros = leading_zeros(m, raw, f"{name}_lz")
    unpacked = Signal(unpacked_layout(ACT_EXPONENT), name=name)
    m.d.comb += [unpacked.sign.eq(sign), unpacked.significand.eq((raw << zeros)[:SIGNIFICAND_BITS]),
                 unpacked.exponent.eq(exponent(value) - _OFFSET - zeros), unpacked.zero.eq(raw == 0)]
    return unpacked


def weight_fp16(m: Module, sign: Value, magnitude: Value, name: str) -> Value:
    """The integer ``(-1)^sign * magnitude`` (at most 15 bits) rounded to FP16 (nearest even), unpacked.

    ``magnitude << zeros`` puts its leading one at bit 14; the top 11 bits are the
    significand, bit 3 the guard, bits 2..0 the sticky (all zero when ``magnitude < 2^11``:
    exact). A round up to 2048 becomes 1024 with the exponent one higher.
    """
    magnitude = Value.cast(magnitude)
    assert len(magnitude) <= 15
    magnitude = magnitude.as_unsigned() if len(magnitude) == 15 else Cat(magnitude, C(0, 15 - len(magnitude)))
    zeros = leading_zeros(m, magnitude, f"{name}_lz")
    shifted = (magnitude << zeros)[:15]
    truncated = shifted[4:15]
    up = shifted[3] & ((shifted[:3] != 0) | truncated[0])
    rounded = Signal(SIGNIFICAND_BITS + 1, name=f"{name}_rounded")
    m.d.comb += rounded.eq(truncated + up)
    carry = rounded[SIGNIFICAND_BITS]
    unpacked = Signal(unpacked_layout(WEIGHT_EXPONENT), name=name)
    m.d.comb += [unpacked.sign.eq(sign),
                 unpacked.significand.eq(Mux(carry, 1 << MANTISSA_BITS, rounded[:SIGNIFICAND_BITS])),
                 unpacked.exponent.eq(4 - zeros + carry), unpacked.zero.eq(magnitude == 0)]
    return unpacked


def partial_products(a: Value, w: Value, multiplier: str) -> tuple[Value, Value]:
    """Two values whose sum is ``Ma * Mw`` (22 bits): ``lut`` the halves of the shift-and-add,
    ``dsp`` the product (``*``) and 0."""
    ma, mw = a.significand, w.significand
    if multiplier == "dsp":
        return ma * mw, C(0, 2 * SIGNIFICAND_BITS)
    half = SIGNIFICAND_BITS // 2
    low = lut_product(ma, mw[:half])
    high = Cat(C(0, half), lut_product(ma, mw[half:]))
    return low, high


def pack_product(m: Module, product: Value, exponent_sum: Value, sign: Value, zero: Value, name: str) -> Value:
    """The FP32 bits of ``(-1)^sign * product * 2^exponent_sum`` (``product`` 22 bits, leading one at
    bit 21 or 20); ``+0`` when ``zero``."""
    product = Value.cast(product)[:2 * SIGNIFICAND_BITS]
    high = product[-1]
    fraction = Mux(high, Cat(C(0, 2), product[:-1]), Cat(C(0, 3), product[:-2]))    # 23 bits below the one
    biased = Signal(signed(10), name=f"{name}_biased")
    m.d.comb += biased.eq(exponent_sum + (2 * SIGNIFICAND_BITS - 2 + _BIAS) + high)
    packed = Signal(FP32_BITS, name=name)
    m.d.comb += packed.eq(Mux(zero, 0, Cat(fraction[:23], biased[:8], sign)))
    return packed
