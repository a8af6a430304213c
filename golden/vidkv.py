"""VidKV golden model: the integer element formats of docs/vidkv_contract.md sections 2-3.

All functions work on integer tensors whose last two dimensions are one group,
``[..., Tg tokens, D channels]``, and quantize per channel along tokens. Results are
integers; dequantization gives fixed point with ``frac_bits`` fraction bits, rounded
half up, so it is within half an output LSB of the real value of its section 2.
"""

from __future__ import annotations

import torch

from arch.vidkv import (
    DEFAULT_FRAC_BITS,
    DEFAULT_IN_BITS,
    GROUP_TOKENS,
    HEAD_DIMS,
    KEY_FRACTIONS,
    check_frac_bits,
    check_in_bits,
    n_high,
)

__all__ = [
    "HEAD_DIMS",
    "GROUP_TOKENS",
    "KEY_FRACTIONS",
    "DEFAULT_IN_BITS",
    "DEFAULT_FRAC_BITS",
    "check_tokens",
    "encode_2bit",
    "encode_1bit",
    "encode_ternary",
    "rank_channels",
    "decode_2bit",
    "decode_1bit",
    "decode_ternary",
    "round_div",
    "n_high",
]

def check_tokens(x, in_bits: int = DEFAULT_IN_BITS, argument: str = "x", *, group: bool = True) -> None:
    """Raise unless ``x`` is an integer tensor ``[..., T, D]`` whose values fit ``in_bits`` signed bits.

    With ``group`` the token count must be a supported Tg; D must always be a
    supported head dimension.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor, not {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{argument} must be an integer tensor (fixed-point inputs), not dtype {x.dtype}")
    check_in_bits(in_bits)
    if x.dim() < 2:
        raise ValueError(f"{argument} must be [..., tokens, D], not shape {list(x.shape)}")
    if x.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"D = {x.shape[-1]} ({argument}.shape[-1]) is not supported; "
                         f"D must be one of {HEAD_DIMS}")
    if group and x.shape[-2] not in GROUP_TOKENS:
        raise ValueError(f"Tg = {x.shape[-2]} ({argument}.shape[-2]) is not supported; "
                         f"Tg must be one of {GROUP_TOKENS}")
    low, high = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    bad = (x < low) | (x > high)
    if bad.any():
        index = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(f"{argument}{index} = {int(x[tuple(index)])} is outside the {in_bits}-bit range "
                         f"{low}..{high}")


def round_div(numerator: torch.Tensor, denominator) -> torch.Tensor:
    """``round_half_up(numerator / denominator)`` for integers, ``denominator > 0``."""
    return torch.div(2 * numerator + denominator, 2 * denominator, rounding_mode="floor")


def _encode_2bit(x: torch.Tensor):
    x = x.to(torch.int64)
    mn = x.amin(dim=-2)
    r = x.amax(dim=-2) - mn
    safe = torch.where(r > 0, r, torch.ones_like(r))[..., None, :]
    q = torch.div(6 * (x - mn[..., None, :]) + safe, 2 * safe, rounding_mode="floor").clamp(0, 3)
    return torch.where(r[..., None, :] > 0, q, torch.zeros_like(q)), mn, r


def _encode_1bit(x: torch.Tensor):
    x = x.to(torch.int64)
    return (x >= 0).to(torch.int64), x.abs().sum(dim=-2)


def _encode_ternary(x: torch.Tensor):
    x = x.to(torch.int64)
    s = x.abs().sum(dim=-2)
    keep = 2 * x.shape[-2] * x.abs() > s[..., None, :]
    return torch.where(keep, torch.sign(x), torch.zeros_like(x)), s


def encode_2bit(x: torch.Tensor, in_bits: int = DEFAULT_IN_BITS):
    """2-bit asymmetric codes of one group ``x`` [Tg, D]: ``(q [Tg, D], mn [D], r [D])``.

    ``q = clamp(floor((6 (x - mn) + r) / (2 r)), 0, 3)``, 0 when ``r = 0``.
    """
    check_tokens(x, in_bits)
    return _encode_2bit(x)


def encode_1bit(x: torch.Tensor, in_bits: int = DEFAULT_IN_BITS):
    """1-bit sign-absmean of one group ``x`` [Tg, D]: ``(b [Tg, D] in {0, 1}, S [D])``."""
    check_tokens(x, in_bits)
    return _encode_1bit(x)


def encode_ternary(x: torch.Tensor, in_bits: int = DEFAULT_IN_BITS):
    """Ternary absmean of one group ``x`` [Tg, D]: ``(t [Tg, D] in {-1, 0, 1}, S [D])``.

    ``t = sign(x)`` where ``2 Tg |x| > S`` (strict), else 0.
    """
    check_tokens(x, in_bits)
    return _encode_ternary(x)


def _rank(x: torch.Tensor, n_hi: int) -> torch.Tensor:
    x = x.to(torch.int64)
    spread = x.amax(dim=-2) - x.amin(dim=-2)
    # A stable descending sort keeps equal ranges in channel order: the lower index ranks higher.
    order = torch.sort(spread, dim=-1, descending=True, stable=True).indices
    mask = torch.zeros_like(spread, dtype=torch.bool)
    return mask.scatter(-1, order[..., :n_hi], True)


def rank_channels(x: torch.Tensor, f: float, in_bits: int = DEFAULT_IN_BITS) -> torch.Tensor:
    """Mask [D] of the ``D * f`` channels of group ``x`` [Tg, D] with the largest range (2-bit)."""
    check_tokens(x, in_bits)
    return _rank(x, n_high(x.shape[-1], f))


def decode_2bit(q, mn, r, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Fixed point (``frac_bits``) of ``mn + q r / 3``, rounded half up; [..., Tg, D].

    ``q`` must be an integer tensor of 2-bit codes (0..3), else ValueError/TypeError.
    """
    check_frac_bits(frac_bits)
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, not {type(q).__name__}")
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise ValueError(f"q must be an integer tensor (2-bit codes), not dtype {q.dtype}")
    bad = (q < 0) | (q > 3)
    if bad.any():
        index = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(f"q{index} = {int(q[tuple(index)])} is not a 2-bit code (0..3)")
    numerator = (3 * mn[..., None, :] + q * r[..., None, :]) << frac_bits
    return round_div(numerator, 3)


def decode_1bit(b, s, group_tokens: int, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Fixed point of ``(2b - 1) S / Tg``, rounded half up."""
    check_frac_bits(frac_bits)
    return round_div((2 * b - 1) * (s[..., None, :] << frac_bits), group_tokens)


def decode_ternary(t, s, group_tokens: int, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Fixed point of ``t S / Tg``, rounded half up."""
    check_frac_bits(frac_bits)
    return round_div(t * (s[..., None, :] << frac_bits), group_tokens)
