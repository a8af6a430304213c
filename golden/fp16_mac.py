"""The bit-parallel FP16 MAC baseline (:class:`hdl.fp16_mac_array.Fp16MacArray`), bit for bit.

docs/fp16_baseline.md defines the arithmetic; in short, for token ``m``, output channel
``n`` and an array of ``L`` lanes:

* every weight becomes an FP16 number ``w16 = fp16_rne((-1)^sg * sq * v)`` (an integer
  with ``|sq * v| <= 255 * 128 = 32640 < 65504``: ``scale_bits`` at most 8);
* every product ``p = a * w16`` is exact in FP32 (two 11-bit significands: 22 bits),
  and a zero product is ``+0``;
* step ``t`` (channels ``t*L .. t*L + L - 1``, lane ``l`` takes channel ``t*L + l``)
  adds its ``L`` products in a fixed pairwise tree, ``s = (p0 + p1) + (p2 + p3)`` ...,
  each add an FP32 add rounded to nearest even;
* consecutive steps are added in pairs, ``q_j = s_{2j} + s_{2j+1}``, and the PE
  accumulates the pairs in order: ``acc = (((+0 + q_0) + q_1) + ...)``, FP32 adds rounded
  to nearest even (K / L is even: the array's groups have at least 4 steps);
* the host applies the channel scale: ``y = fl32(acc * cs)`` (one rounding).

No FP32 subnormal, infinity or ``-0`` can arise: every product and every sum is an
integer multiple of ``2^-24`` below ``2^48`` in magnitude, so a nonzero rounded sum is
at least ``2^-24``, far above FP32's smallest normal; a sum of ``+0`` and ``x`` is ``x``,
and an exact cancellation gives ``+0``. Float32 torch adds in the same order are
therefore exactly the RTL's adds (no matmul: its reduction order is not this one).
"""

from __future__ import annotations

import torch

from .bitmod import BitmodWeights, _group_values, _signed_sq, dequantize
from .fp16 import check_fp16

__all__ = ["MAX_SCALE_BITS", "check_scale_bits_fp16", "weights_fp16", "mac_products", "matmul_fp16_mac_acc",
           "fp32_bits", "acc_from_bits", "fp16_mac_output", "matmul_fp16_mac", "errors_against_float64"]

#: ``|sq * v| <= (2^S - 1) * 128`` must stay an FP16 integer: S <= 8 gives at most 32640 < 65504.
MAX_SCALE_BITS = 8


def check_scale_bits_fp16(scale_bits) -> int:
    """``scale_bits`` if the FP16 MAC baseline takes it (<= 8), else ValueError naming it."""
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int) or scale_bits > MAX_SCALE_BITS:
        raise ValueError(f"scale_bits of the FP16 MAC baseline must be at most {MAX_SCALE_BITS} "
                         f"(sq * v must fit FP16), not {scale_bits!r}")
    return scale_bits


def weights_fp16(bw: BitmodWeights) -> torch.Tensor:
    """``w16 = fp16_rne((-1)^sg * sq * v)`` of every weight, float16 [N, K] (``cs`` stays on the host)."""
    if not isinstance(bw, BitmodWeights):
        raise TypeError(f"bw must be golden.bitmod.BitmodWeights, not {type(bw).__name__}")
    check_scale_bits_fp16(bw.scale_bits)
    n, k = bw.shape
    w = (_group_values(bw) * _signed_sq(bw)[..., None]).reshape(n, k)
    # |w| <= 32640: exact in float32; float32 -> float16 rounds to nearest even.
    return w.to(torch.float32).to(torch.float16)


def mac_products(a: torch.Tensor, w16: torch.Tensor) -> torch.Tensor:
    """The exact FP32 products ``a[m, k] * w16[n, k]``, float32 [M, N, K], zeros as ``+0``."""
    p = a.to(torch.float32)[:, None, :] * w16.to(torch.float32)[None, :, :]
    return torch.where(p == 0, torch.zeros((), dtype=torch.float32), p)


def _check(a: torch.Tensor, bw: BitmodWeights, lanes: int) -> None:
    check_fp16(a)
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, not {lanes!r}")
    if a.shape[1] != bw.shape[1]:
        raise ValueError(f"a has K = {a.shape[1]} columns but the weights have K = {bw.shape[1]}")
    if bw.shape[1] % (2 * lanes):
        raise ValueError(f"K = {bw.shape[1]} is not a multiple of 2 * lanes = {2 * lanes} (steps go in pairs)")


def matmul_fp16_mac_acc(a: torch.Tensor, bw: BitmodWeights, lanes: int, *, block_n: int = 64) -> torch.Tensor:
    """The FP16 MAC array's FP32 accumulators ``acc [M, N]`` (float32, before ``cs``).

    ``a`` is float16 [M, K] (finite, ValueError otherwise); ``lanes`` the array's L, which
    fixes the order of the adds. Computed ``block_n`` output channels at a time.
    """
    _check(a, bw, lanes)
    w16 = weights_fp16(bw)
    m, k = a.shape
    steps = k // lanes
    blocks = []
    for first in range(0, w16.shape[0], block_n):
        x = mac_products(a, w16[first:first + block_n]).reshape(m, -1, steps, lanes)
        while x.shape[-1] > 1:                      # the lane tree: neighbours pairwise, level by level
            x = x[..., 0::2] + x[..., 1::2]
        sums = x[..., 0]
        pairs = sums[..., 0::2] + sums[..., 1::2]   # steps 2j and 2j + 1
        acc = torch.zeros(sums.shape[:2], dtype=torch.float32)
        for j in range(steps // 2):                 # the accumulator: one pair per add, in order
            acc = acc + pairs[..., j]
        blocks.append(acc)
    return torch.cat(blocks, dim=1)


def fp32_bits(x: torch.Tensor) -> torch.Tensor:
    """The FP32 bit patterns of float32 ``x`` as int64 integers 0 .. 2^32 - 1 (the array's fields)."""
    return x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def acc_from_bits(fields: torch.Tensor) -> torch.Tensor:
    """The float32 accumulators from the array's result fields: FP32 bit patterns as int64
    integers, zero- or sign-extended from bit 31 (``assemble`` sign-extends a 32-bit field)."""
    if not isinstance(fields, torch.Tensor) or fields.dtype != torch.int64:
        raise TypeError(f"fields must be an int64 tensor, not {getattr(fields, 'dtype', type(fields).__name__)}")
    high = fields >> 32
    if ((high != 0) & (high != -1)).any():
        raise ValueError(f"fields must be FP32 bit patterns, not {int(fields[(high != 0) & (high != -1)][0])}")
    bits = fields & 0xFFFFFFFF
    return torch.where(bits >= 1 << 31, bits - (1 << 32), bits).to(torch.int32).view(torch.float32)


def fp16_mac_output(acc: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
    """``y = fl32(acc * cs)``: the float32 accumulators times the float32 channel scale, one rounding
    (the product of two 24-bit significands is exact in float64)."""
    return (acc.to(torch.float64) * cs.to(torch.float64)[None, :]).to(torch.float32)


def matmul_fp16_mac(a: torch.Tensor, bw: BitmodWeights, lanes: int = 8) -> torch.Tensor:
    """``y [M, N]`` float32: the FP16 MAC array's result with the host's channel scale."""
    return fp16_mac_output(matmul_fp16_mac_acc(a, bw, lanes), bw.cs)


def errors_against_float64(y: torch.Tensor, a: torch.Tensor, bw: BitmodWeights) -> dict[str, float]:
    """``rms = ||y - ref|| / ||ref||`` and ``worst = max |y - ref| / (|a| @ |w_hat|^T)`` against
    float64 ``ref = a @ dequantize(bw)^T`` (the metrics of docs/formats.md, "FP16 activations")."""
    w_hat = dequantize(bw).double()
    ref = a.double() @ w_hat.T
    magnitude = a.double().abs() @ w_hat.abs().T
    diff = (y.double() - ref).abs()
    worst = (diff / magnitude.clamp(min=torch.finfo(torch.float64).tiny)).max().item()
    return {"rms": (diff.norm() / ref.norm()).item(), "worst": worst}
