"""FP16 activations, exactly as the PE array sees them (docs/formats.md, "FP16 activations").

Decoding and the token's exponent matching, in integer torch ops:
:func:`golden.bitmod.matmul_fp16` builds the exact product on :func:`align_tokens`.
"""

from __future__ import annotations

import torch

from arch.fp16 import (
    EXPONENT_BITS,
    MANTISSA_BITS,
    MIN_EXPONENT,
    SPECIAL_EXPONENT,
    check_align_bits,
    zero_shift,
)

__all__ = ["check_fp16", "fp16_fields", "align_tokens"]


def check_fp16(a, argument: str = "a") -> None:
    """TypeError/ValueError unless ``a`` is a non-empty 2-D float16 tensor of finite values.

    A non-finite value is named by its token (row) and channel (column).
    """
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor, not {type(a).__name__}")
    if a.dtype != torch.float16:
        raise TypeError(f"{argument} must be a float16 tensor (FP16 activations), not dtype {a.dtype}")
    if a.dim() != 2:
        raise ValueError(f"{argument} must be 2-D [M, K], not shape {list(a.shape)}")
    if a.numel() == 0:
        raise ValueError(f"{argument} must not be empty, got shape {list(a.shape)}")
    bad = ~torch.isfinite(a)
    if bad.any():
        m, k = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{argument}[{m}, {k}] = {a[m, k].item()} (token {m}, channel {k}): "
                         f"FP16 activations must be finite")


def fp16_fields(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sign, e, M)`` of every element of a float16 tensor, as int64 tensors.

    ``e = max(E, 1)`` and ``M = F + 1024 [E > 0]``, so ``x = (-1)^sign * M * 2^(e - 25)``
    for normals, subnormals and both zeros alike. Inf/NaN keep ``e = 31``: check first.
    """
    bits = a.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF
    sign = bits >> (EXPONENT_BITS + MANTISSA_BITS)
    field = (bits >> MANTISSA_BITS) & SPECIAL_EXPONENT
    mantissa = bits & ((1 << MANTISSA_BITS) - 1)
    normal = field > 0
    return sign, torch.where(normal, field, MIN_EXPONENT), mantissa + (normal.to(torch.int64) << MANTISSA_BITS)


def align_tokens(a: torch.Tensor, align_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exponent matching over each token (row) of ``a`` [M, K].

    Returns ``(A, er)``: the aligned signed significands int64 [M, K]
    (``(-1)^s * round_half_away(M * 2^B / 2^(er - e))``) and each token's exponent
    ``er = max e`` int64 [M].
    """
    check_fp16(a)
    check_align_bits(align_bits)
    sign, e, significand = fp16_fields(a)
    er = e.amax(dim=-1)
    shift = (er[:, None] - e).clamp_(max=zero_shift(align_bits))
    # Round half away from zero on the magnitude: add half of the dropped weight, then shift.
    half = torch.where(shift > 0, 1 << (shift - 1).clamp_(min=0), torch.zeros_like(shift))
    magnitude = ((significand << align_bits) + half) >> shift
    return torch.where(sign.bool(), -magnitude, magnitude), er
