"""FP16 activations on the BitMoD PE array: the constants and widths of docs/formats.md,
"FP16 activations".

Pure Python, like :mod:`arch.bitmod`: the torch golden model (:mod:`golden.fp16`,
:func:`golden.bitmod.matmul_fp16`), the RTL, the tests and the docs import these facts
from here.

The arithmetic in one line per step (every name is defined in docs/formats.md):

* decode: ``x = (-1)^s * M * 2^(e - 25)``, ``M = F + 1024 [E > 0]``, ``e = max(E, 1)``;
* exponent matching over a token (all K channels of a row): ``er = max e``;
  ``A = (-1)^s * round_half_away(M * 2^B / 2^(er - e))`` with ``B = align_bits``;
* ``acc = sum_g (-1)^sg * sq * sum_{k in g} v * A``: exact integers, the int8 mode's
  data path with ``A`` in place of the int8 activation;
* ``y = fl32(fl64(fl64(acc) * 2^(er - output_shift(B))) * cs)``.
"""

from __future__ import annotations

from .bitmod import accumulator_widths, signed_bits

__all__ = [
    "ALIGN_LATENCY",
    "MANTISSA_BITS",
    "SIGNIFICAND_BITS",
    "EXPONENT_BITS",
    "SPECIAL_EXPONENT",
    "MIN_EXPONENT",
    "MAX_EXPONENT",
    "EXPONENT_OFFSET",
    "ALIGN_BITS_RANGE",
    "DEFAULT_ALIGN_BITS",
    "ACTIVATION_KINDS",
    "BASELINE_ACTIVATIONS",
    "check_align_bits",
    "aligned_bits",
    "zero_shift",
    "output_shift",
    "fp16_widths",
]

#: Registers from an activation memory's output register to the aligned lanes: a copy of
#: the read data in the logic fabric (the memory's own output register sits in the block
#: RAM, across the die from the aligner), then the aligner's two stages. The PE array's
#: digit bus waits ``ALIGN_LATENCY - 1`` cycles more than an int8 build's (the memories
#: read a cycle early: ``read_addr_next``).
ALIGN_LATENCY = 3

#: Stored mantissa bits of an IEEE binary16 value.
MANTISSA_BITS = 10
#: Significand bits with the hidden one: ``M`` is ``0..2047``.
SIGNIFICAND_BITS = MANTISSA_BITS + 1
#: Exponent field bits.
EXPONENT_BITS = 5
#: The exponent field of Inf and NaN: such an activation is rejected (golden, sim API) or
#: flagged (the RTL's sticky ``invalid``), never computed with.
SPECIAL_EXPONENT = (1 << EXPONENT_BITS) - 1
#: Smallest effective exponent ``e = max(E, 1)``: subnormals and zeros share normals' 1.
MIN_EXPONENT = 1
#: Largest effective exponent of a finite value.
MAX_EXPONENT = SPECIAL_EXPONENT - 1
#: ``x = M * 2^(e - EXPONENT_OFFSET)``: the bias 15 plus the 10 mantissa bits.
EXPONENT_OFFSET = 15 + MANTISSA_BITS

#: Supported ``align_bits`` B: fraction bits kept below a token's largest significand.
ALIGN_BITS_RANGE = range(0, 9)
#: The default B: 18-bit aligned activations, more accurate than an FP16 MAC array on
#: every measured set (docs/formats.md, "FP16 activations").
DEFAULT_ALIGN_BITS = 6

#: The PE array's ``activations`` parameter: what a lane can take.
ACTIVATION_KINDS = ("int8", "fp16", "both")
#: The bit-parallel baselines' ``activations``: the int8 arrays, or the FP16 MAC array.
BASELINE_ACTIVATIONS = ("int8", "fp16")


def check_align_bits(align_bits) -> int:
    """``align_bits`` if it is a supported B, else ValueError naming it."""
    if isinstance(align_bits, bool) or not isinstance(align_bits, int) or align_bits not in ALIGN_BITS_RANGE:
        low, high = ALIGN_BITS_RANGE.start, ALIGN_BITS_RANGE.stop - 1
        raise ValueError(f"align_bits must be an integer in {low}..{high}, not {align_bits!r}")
    return align_bits


def aligned_bits(align_bits: int) -> int:
    """Signed width of an aligned activation ``A``: ``|A| <= 2047 * 2^B``."""
    return signed_bits(((1 << SIGNIFICAND_BITS) - 1) << check_align_bits(align_bits))


def zero_shift(align_bits: int) -> int:
    """The alignment shift from which every significand rounds to 0: ``12 + B``.

    ``M * 2^B < 2^(11 + B) = 2^(d - 1)`` for ``d = 12 + B``, so rounding half away gives 0
    there and for any larger shift; hardware may clamp a shift to this value.
    """
    return SIGNIFICAND_BITS + 1 + check_align_bits(align_bits)


def output_shift(align_bits: int) -> int:
    """``y = acc * 2^(er - output_shift(B)) * cs``: the exponent offset and the kept bits."""
    return EXPONENT_OFFSET + check_align_bits(align_bits)


def fp16_widths(max_k: int, group_size: int, scale_bits: int, families, align_bits: int) -> dict[str, int]:
    """Bit widths that make overflow impossible on the FP16 path, for *any* finite FP16 input.

    :func:`arch.bitmod.accumulator_widths` with the aligned significands in place of int8
    (``aligned``: ``|A| <= 2047 * 2^B``), and a ValueError if ``acc`` could reach ``2^53``
    (the host's float64 conversion of ``acc`` must be exact).

    Returns the signed widths ``*_bits`` and the bounds ``max_abs_*`` they come from.
    """
    max_aligned = ((1 << SIGNIFICAND_BITS) - 1) << check_align_bits(align_bits)
    widths = accumulator_widths(max_k, group_size, scale_bits, families, max_aligned)
    max_acc = widths["max_abs_acc"]
    if max_acc >= 1 << 53:
        raise ValueError(f"max_k={max_k} with align_bits={align_bits}, scale_bits={scale_bits} and group_size="
                         f"{group_size} lets an FP16 result reach 2^{max_acc.bit_length() - 1}, beyond float64's "
                         f"exact integers: lower max_k, align_bits or scale_bits")
    return {"max_abs_aligned": max_aligned, "aligned_bits": signed_bits(max_aligned), **widths}
