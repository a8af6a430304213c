"""Baselines BitMoD is compared with: per-group RTN INT3/INT4 and OCP MX-FP4."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arch.bitmod import check_group_size, code_values

from .bitmod import check_weights

__all__ = ["RTNWeights", "rtn_quantize", "MXFP4Weights", "mxfp4_quantize", "MX_BLOCK", "E2M1_EMAX"]

#: OCP MX block size.
MX_BLOCK = 32
#: Exponent of the largest normal FP4 E2M1 value (6 = 1.5 * 2**2).
E2M1_EMAX = 2


@dataclass
class RTNWeights:
    """Per-group round-to-nearest integers: ``w_hat = (q - zero) * scale``.

    ``q`` is int16 [N, K]: ``-qmax..qmax`` (symmetric) or ``0..2**bits - 1`` (asymmetric);
    ``scale`` float32 and ``zero`` int16 are [N, K/G] (``zero`` is 0 when symmetric).
    """

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int
    symmetric: bool

    def dequantize(self) -> torch.Tensor:
        n, k = self.q.shape
        groups = self.q.reshape(n, -1, self.group_size).to(torch.float64) - self.zero.to(torch.float64)[..., None]
        return (groups * self.scale.to(torch.float64)[..., None]).reshape(n, k).to(torch.float32)


def rtn_quantize(w: torch.Tensor, bits: int = 4, group_size: int = 128, symmetric: bool = True) -> RTNWeights:
    """Round-to-nearest (half to even) per group of ``group_size`` along K.

    Symmetric: ``scale = amax / (2**(bits-1) - 1)``. Asymmetric: ``scale = (max - min) /
    (2**bits - 1)``, ``zero = round(-min / scale)``, with the range widened to include 0.
    All-zero groups get scale 1.
    """
    check_weights(w)
    if bits not in (3, 4):
        raise ValueError(f"bits must be 3 or 4, not {bits!r}")
    check_group_size(group_size)
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"K = {k} (w.shape[1]) must be a multiple of group_size {group_size}")
    groups = w.to(torch.float64).reshape(n, k // group_size, group_size)
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        amax = groups.abs().amax(dim=-1)
        scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax)).to(torch.float32)
        q = torch.round(groups / scale.to(torch.float64)[..., None]).clamp(-qmax, qmax)
        zero = torch.zeros_like(scale, dtype=torch.int16)
    else:
        levels = (1 << bits) - 1
        # The range always includes 0 (as GPTQ does), so the zero point fits in 0..levels
        # even for a group of one sign.
        low, high = groups.amin(dim=-1).clamp(max=0), groups.amax(dim=-1).clamp(min=0)
        span = high - low
        scale = torch.where(span > 0, span / levels, torch.ones_like(span)).to(torch.float32)
        zero = torch.round(-low / scale.to(torch.float64)).clamp(0, levels)
        q = (torch.round(groups / scale.to(torch.float64)[..., None]) + zero[..., None]).clamp(0, levels)
        zero = zero.to(torch.int16)
    return RTNWeights(q.reshape(n, k).to(torch.int16), scale, zero, bits, group_size, symmetric)


@dataclass
class MXFP4Weights:
    """OCP MX-FP4: FP4 E2M1 elements with one power-of-two scale per block of 32.

    ``codes`` uint8 [N, K] are sign-magnitude E2M1 code words (the fp4 code words of
    arch.bitmod without the special value); ``exponent`` int16 [N, K/32] is the
    shared E8M0 scale's exponent: ``w_hat = e2m1(code) * 2**exponent``.
    """

    codes: torch.Tensor
    exponent: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        n, k = self.codes.shape
        lut = torch.tensor(code_values("fp4", 0), dtype=torch.float64, device=self.codes.device) / 2
        lut[8] = 0.0                                  # E2M1's -0
        values = lut[self.codes.to(torch.int64)].reshape(n, -1, MX_BLOCK)
        scale = torch.pow(2.0, self.exponent.to(torch.float64))[..., None]
        return (values * scale).reshape(n, k).to(torch.float32)


def mxfp4_quantize(w: torch.Tensor) -> MXFP4Weights:
    """Quantize to MX-FP4 as the OCP MX v1.0 spec's conversion does.

    Per block of 32: ``exponent = floor(log2(amax)) - 2`` (E2M1's emax, clamped to
    E8M0's -127..127), elements
    ``w / 2**exponent`` rounded to nearest E2M1 value with ties to even mantissa and
    saturated at 6. An all-zero block gets exponent 0.
    """
    check_weights(w)
    n, k = w.shape
    if k % MX_BLOCK:
        raise ValueError(f"K = {k} (w.shape[1]) must be a multiple of the MX block {MX_BLOCK}")
    blocks = w.to(torch.float64).reshape(n, k // MX_BLOCK, MX_BLOCK)
    amax = blocks.abs().amax(dim=-1)
    exponent = torch.where(amax > 0, torch.floor(torch.log2(torch.where(amax > 0, amax, 1.0))) - E2M1_EMAX,
                           torch.zeros_like(amax)).clamp(-127, 127)          # E8M0's range
    x = blocks / torch.pow(2.0, exponent)[..., None]
    magnitudes = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64, device=w.device)
    mag = x.abs().clamp(max=6.0)
    index = torch.searchsorted((magnitudes[1:] + magnitudes[:-1]) / 2, mag.contiguous(), side="left")
    # searchsorted(side="left") breaks ties downward; E2M1 breaks them toward the even mantissa.
    tie = (index < 7) & (mag == (magnitudes[index.clamp(max=6)] + magnitudes[(index + 1).clamp(max=7)]) / 2)
    index = torch.where(tie & (index % 2 == 1), index + 1, index)
    sign = (x < 0) & (index > 0)
    codes = (sign.to(torch.int64) << 3) | index
    return MXFP4Weights(codes.reshape(n, k).to(torch.uint8), exponent.to(torch.int16))
