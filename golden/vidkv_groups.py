"""VidKV key and value groups: mixed-precision keys (with the FFT option) and ternary/2-bit values.

Batched over groups: inputs are integer tensors ``[G, Tg, D]``. Spec/vidkv.md
sections 3 and 4; the fixed-point choices are in docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .vidkv import (
    DEFAULT_FRAC_BITS,
    DEFAULT_IN_BITS,
    _encode_1bit,
    _encode_2bit,
    _encode_ternary,
    _rank,
    check_tokens,
    decode_1bit,
    decode_2bit,
    decode_ternary,
    n_high,
)
from .vidkv_fft import check_length, irfft_lanes, rfft_lanes

__all__ = ["KeyGroups", "ValueGroups", "VALUE_FORMATS", "quantize_keys", "dequantize_keys",
           "quantize_values", "dequantize_values"]

#: Value formats: ternary (1.58-bit) or 2-bit asymmetric, per channel along tokens.
VALUE_FORMATS = ("ternary", "2bit")


@dataclass
class KeyGroups:
    """Quantized key groups, G of them.

    Attributes
    ----------
    mask : bool [G, D]
        True for the 2-bit ("anomalous") channels.
    q, mn, r : int64 [G, Tg, n_hi], [G, n_hi], [G, n_hi]
        2-bit codes and metadata of the 2-bit channels, in ascending channel order.
    b, s : int64 [G, Tg, N], [G, N]
        1-bit sign bits and absolute sums of the normal channels (ascending channel
        order), or of the N half-spectrum FFT lanes when ``fft``.
    fft : bool
    """

    mask: torch.Tensor
    q: torch.Tensor
    mn: torch.Tensor
    r: torch.Tensor
    b: torch.Tensor
    s: torch.Tensor
    fft: bool

    @property
    def group_tokens(self) -> int:
        return self.q.shape[-2] if self.q.shape[-1] else self.b.shape[-2]


def _split(mask: torch.Tensor):
    """Channel indices of the 2-bit and of the normal channels, each ascending: [G, n_hi], [G, N]."""
    d = mask.shape[-1]
    n_hi = int(mask[0].sum()) if mask.shape[0] else 0
    order = torch.arange(d, device=mask.device).expand_as(mask)
    # Sorting the keys (not mask, index) puts 2-bit channels first, each part ascending.
    key = torch.where(mask, order, order + d)
    ranked = torch.sort(key, dim=-1).values % d
    return ranked[:, :n_hi], ranked[:, n_hi:]


def _check_groups(x, in_bits: int = DEFAULT_IN_BITS, argument: str = "x") -> None:
    """Raise unless ``x`` is an integer tensor of groups ``[G, Tg, D]`` within ``in_bits`` signed bits."""
    check_tokens(x, in_bits, argument)
    if x.dim() != 3:
        raise ValueError(f"{argument} must be groups [G, Tg, D], not shape {list(x.shape)}")


def quantize_keys(x: torch.Tensor, f: float = 0.5, fft: bool = False, in_bits: int = DEFAULT_IN_BITS) -> KeyGroups:
    """Quantize key groups ``x`` [G, Tg, D]: top ``D f`` channels by range 2-bit, the rest 1-bit.

    ``x`` holds integers within ``in_bits`` signed bits; anything else raises ValueError/TypeError.
    """
    _check_groups(x, in_bits)
    g, tg, d = x.shape
    n_hi = n_high(d, f)
    if fft and d - n_hi:
        check_length(d - n_hi, argument="N (normal channels, D - D*f)")
    mask = _rank(x, n_hi)
    hi, lo = _split(mask)
    x = x.to(torch.int64)
    q, mn, r = _encode_2bit(torch.gather(x, 2, hi[:, None, :].expand(g, tg, n_hi)))
    normal = torch.gather(x, 2, lo[:, None, :].expand(g, tg, d - n_hi))
    if fft and d - n_hi:
        normal = rfft_lanes(normal)
    b, s = _encode_1bit(normal)
    return KeyGroups(mask, q, mn, r, b, s, bool(fft))


def dequantize_keys(k: KeyGroups, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Fixed-point keys [G, Tg, D] with ``frac_bits`` fraction bits."""
    g, d = k.mask.shape
    tg = k.group_tokens
    hi, lo = _split(k.mask)
    out = torch.zeros((g, tg, d), dtype=torch.int64, device=k.mask.device)
    out.scatter_(2, hi[:, None, :].expand(g, tg, hi.shape[1]), decode_2bit(k.q, k.mn, k.r, frac_bits))
    normal = decode_1bit(k.b, k.s, tg, frac_bits)
    if k.fft and lo.shape[1]:
        normal = irfft_lanes(normal)
    out.scatter_(2, lo[:, None, :].expand(g, tg, lo.shape[1]), normal)
    return out


@dataclass
class ValueGroups:
    """Quantized value groups: ternary ``(codes = t, s)`` or 2-bit ``(codes = q, mn, r)``, [G, Tg, D]."""

    format: str
    codes: torch.Tensor
    s: torch.Tensor | None = None
    mn: torch.Tensor | None = None
    r: torch.Tensor | None = None


def quantize_values(x: torch.Tensor, value_format: str = "ternary",
                    in_bits: int = DEFAULT_IN_BITS) -> ValueGroups:
    """Quantize value groups ``x`` [G, Tg, D] per channel along tokens.

    ``x`` holds integers within ``in_bits`` signed bits; anything else raises ValueError/TypeError.
    """
    _check_groups(x, in_bits)
    if value_format not in VALUE_FORMATS:
        raise ValueError(f"value_format must be one of {VALUE_FORMATS}, not {value_format!r}")
    if value_format == "ternary":
        t, s = _encode_ternary(x)
        return ValueGroups("ternary", t, s=s)
    q, mn, r = _encode_2bit(x)
    return ValueGroups("2bit", q, mn=mn, r=r)


def dequantize_values(v: ValueGroups, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Fixed-point values [G, Tg, D] with ``frac_bits`` fraction bits."""
    if v.format == "ternary":
        return decode_ternary(v.codes, v.s, v.codes.shape[-2], frac_bits)
    return decode_2bit(v.codes, v.mn, v.r, frac_bits)
