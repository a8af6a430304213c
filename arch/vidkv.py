"""VidKV facts shared by the golden model and the RTL: supported sizes, metadata widths,
the engines' stream tags and beat counts, and the fixed-point FFT's constants.

Plain Python (no torch, no Amaranth), so that ``golden`` and ``hdl`` import the same
numbers. The contract they implement is docs/vidkv_contract.md; the project's own choices
(fixed point, layouts, widths) are in docs/formats.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from arch.checks import check_int

__all__ = [
    "HEAD_DIMS", "GROUP_TOKENS", "KEY_FRACTIONS", "DEFAULT_IN_BITS", "DEFAULT_FRAC_BITS",
    "IN_BITS_RANGE", "FRAC_BITS_RANGE", "check_in_bits", "check_frac_bits", "n_high",
    "TERNARY_LAYOUTS", "POSITION_BITS", "metadata_widths", "b3_byte",
    "HEADER", "POSITION", "MASK", "CODE", "META", "TRITS", "TAGS", "TAG_NAMES", "TAG_BITS", "PATHS",
    "words_per_channel", "trit_words", "beats_per_group",
    "TWIDDLE_FRAC", "check_length", "fft_growth", "twiddle_list", "bit_reverse",
    "KvCacheFormat", "KV_CACHE_FORMATS",
]

#: Head dimensions D the formats support.
HEAD_DIMS = (32, 64, 128)
#: Tokens per group Tg.
GROUP_TOKENS = (16, 32, 64)
#: Fractions f of 2-bit key channels.
KEY_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class KvCacheFormat:
    """A KV cache format by VidKV's names: keys with ``f`` of their channels 2-bit (the rest
    1-bit), values ``ternary`` (1.58-bit) or ``2bit``, salient-token protection or not."""

    f: float
    value_format: str
    stp: bool
    description: str


#: The KV cache formats a model run takes (``mixbit run-model --kv``); ``off``: not quantized.
KV_CACHE_FORMATS = {
    "k1.5-v1.58": KvCacheFormat(0.5, "ternary", False, "keys 1.5-bit (half the channels 2-bit), values ternary"),
    "k1.5-v1.66-stp": KvCacheFormat(0.5, "ternary", True,
                                    "keys 1.5-bit, values ternary with the salient tokens 2-bit (STP)"),
    "k1-v1.58": KvCacheFormat(0.0, "ternary", False, "keys 1-bit, values ternary"),
    "2bit": KvCacheFormat(1.0, "2bit", False, "keys and values 2-bit"),
    "off": None,
}

#: Signed widths of the fixed-point input elements.
IN_BITS_RANGE = range(8, 17)
#: Input element width by default.
DEFAULT_IN_BITS = 16
#: Fraction bits of dequantized fixed-point outputs that the engines support.
FRAC_BITS_RANGE = range(0, 9)
#: Fraction bits of dequantized fixed-point outputs by default (docs/formats.md).
DEFAULT_FRAC_BITS = 4


def check_in_bits(in_bits) -> int:
    """``in_bits``; ValueError unless it is an integer in :data:`IN_BITS_RANGE`."""
    return check_int("in_bits", in_bits, IN_BITS_RANGE.start, IN_BITS_RANGE.stop - 1)


def check_frac_bits(frac_bits) -> int:
    """``frac_bits``; ValueError unless it is an integer in :data:`FRAC_BITS_RANGE`."""
    return check_int("frac_bits", frac_bits, FRAC_BITS_RANGE.start, FRAC_BITS_RANGE.stop - 1)


def n_high(d: int, f: float) -> int:
    """Number of 2-bit key channels, ``D * f``; ValueError unless f is a supported fraction."""
    if f not in KEY_FRACTIONS:
        raise ValueError(f"f must be one of {KEY_FRACTIONS}, not {f!r}")
    return int(d * f)


# ---- memory formats -------------------------------------------------------------------

#: Ternary layouts: 2 bits per trit, or five trits per byte.
TERNARY_LAYOUTS = ("i2", "b3")
#: Width of a recorded token position (STP).
POSITION_BITS = 32


def _log2(n: int) -> int:
    return n.bit_length() - 1


def metadata_widths(in_bits: int, group_tokens: int, fft_points: int | None = None) -> dict[str, int]:
    """Bit widths of the metadata fields.

    ``mn``: ``in_bits`` signed. ``r = max - min <= 2**in_bits - 1``: ``in_bits`` unsigned.
    ``s = sum |x| <= Tg 2**(in_bits-1)``: ``in_bits + log2 Tg`` unsigned. ``s_fft``: the sum
    of FFT lanes of N channels, ``|lane| <= 2**(in_bits + log2 N)`` with a guard for
    rounding: ``in_bits + log2 N + log2 Tg + 1`` unsigned (docs/formats.md); only with
    ``fft_points`` = N.
    """
    widths = {"mn": in_bits, "r": in_bits, "s": in_bits + _log2(group_tokens)}
    if fft_points:
        widths["s_fft"] = in_bits + _log2(fft_points) + _log2(group_tokens) + 1
    return widths


def b3_byte(value):
    """The ``b3`` byte of base-3 value ``v = sum d_n 3**(4 - n)`` (0..242): ``ceil(v 256 / 243)``."""
    return (value * 256 + 242) // 243


# ---- the quantize engine's output stream (golden.vidkv_stream documents the order) -----

HEADER, POSITION, MASK, CODE, META, TRITS = range(6)
#: Beat tags by name.
TAGS = {"header": HEADER, "position": POSITION, "mask": MASK, "code": CODE, "meta": META, "trits": TRITS}
#: Beat tags' names by value.
TAG_NAMES = {v: k for k, v in TAGS.items()}
#: Width of a beat's tag.
TAG_BITS = 3
#: Group formers: keys, (non-salient) values, salient values (STP).
PATHS = ("key", "value", "salient")


def words_per_channel(group_tokens: int, bits: int) -> int:
    """32-bit words one channel's ``bits``-bit codes of a group take."""
    return -(-group_tokens * bits // 32)


def trit_words(group_tokens: int, d: int) -> int:
    """32-bit words of a group's ``b3`` bytes: ``ceil(Tg D / 20)``."""
    return -(-group_tokens * d // 20)


def beats_per_group(path: str, *, d: int, group_tokens: int, n_hi: int = 0, value_format: str = "ternary",
                    ternary_layout: str = "i2", stp: bool = False) -> int:
    """How many beats one group of ``path`` takes in the stream."""
    tg = group_tokens
    two, one = words_per_channel(tg, 2), words_per_channel(tg, 1)
    if path == "key":
        return 1 + d // 32 + n_hi * (two + 1) + (d - n_hi) * (one + 1)
    head = 1 + (tg if stp else 0)
    if path == "salient" or value_format == "2bit":
        return head + d * (two + 1)
    if ternary_layout == "b3":
        return head + d + trit_words(tg, d)
    return head + d * (two + 1)


# ---- the fixed-point FFT of the normal key channels (golden.vidkv_fft, hdl.kv_fft) -----

#: Fraction bits of the twiddle factors.
TWIDDLE_FRAC = 14


def check_length(n: int, argument: str = "N") -> int:
    """``log2 n``; ValueError unless ``n`` is a power of two of at least 2."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"{argument} = {n} must be a power of two (>= 2) for the FFT")
    return n.bit_length() - 1


def fft_growth(points: int) -> int:
    """Bits an ``points``-point forward FFT may add to its inputs: ``log2 N + 1`` (no scaling)."""
    return check_length(points) + 1


@cache
def twiddle_list(n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Fixed-point ``W_n^k`` for ``k < n/2``: (real, imaginary) with :data:`TWIDDLE_FRAC` fraction bits."""
    scale = 1 << TWIDDLE_FRAC
    real = tuple(round(math.cos(2 * math.pi * k / n) * scale) for k in range(n // 2))
    imag = tuple(round(-math.sin(2 * math.pi * k / n) * scale) for k in range(n // 2))
    return real, imag


@cache
def bit_reverse(n: int) -> tuple[int, ...]:
    """The bit-reversed order of ``0..n-1`` (the decimation-in-time input order)."""
    bits = check_length(n)
    return tuple(int(f"{i:0{bits}b}"[::-1], 2) for i in range(n))
