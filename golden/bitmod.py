"""BitMoD golden model: the mixture-of-datatypes quantizer and the integer-exact PE-array result.

Implements docs/bitmod_contract.md sections 2 to 5 step by step, and the FP16-activation
product of docs/formats.md ("FP16 activations"), vectorized in torch (no Python loop over
groups or elements; rows are processed in blocks to bound memory) on whatever device the
input lives on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arch.bitmod import (
    ACTIVATION_BITS,
    accumulator_widths,
    check_group_size,
    check_scale_bits,
    family,
    quantizer_grid,
)
from arch.fp16 import DEFAULT_ALIGN_BITS, output_shift

from .formats import decode, encode
from .fp16 import align_tokens

__all__ = [
    "BitmodWeights",
    "quantize",
    "dequantize",
    "quantize_activations",
    "matmul_int",
    "matmul",
    "int8_output",
    "matmul_fp16_int",
    "fp16_output",
    "matmul_fp16",
    "accumulator_widths",     # from arch.bitmod, so the RTL can import it without torch
    "candidates",
    "check_weights",
]

#: Elements per row block inside :func:`quantize`; bounds its temporary memory.
_BLOCK_ELEMENTS = 1 << 19


@dataclass
class BitmodWeights:
    """Quantized weights: raw code words plus per-group and per-channel metadata.

    Attributes
    ----------
    codes : uint8 tensor [N, K]
        Raw unsigned code words (contract section 2), what sits in memory.
    dt : uint8 tensor [N, K/G]
        Datatype bit per group (0 = ER, 1 = EA); 0 for int families.
    sg : uint8 tensor [N, K/G]
        Sign of the group scale (1 = NEG group); 0 for int families.
    sq : int32 tensor [N, K/G]
        Unsigned group scale, ``0..2**scale_bits - 1`` (0 only for an all-zero group).
    cs : float32 tensor [N]
        Channel scale (host side only).
    family, group_size, scale_bits
        The parameters the weights were quantized with.
    """

    codes: torch.Tensor
    dt: torch.Tensor
    sg: torch.Tensor
    sq: torch.Tensor
    cs: torch.Tensor
    family: str
    group_size: int = 128
    scale_bits: int = 8

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, K)``."""
        return tuple(self.codes.shape)


def candidates(name: str) -> list[tuple[int, int, tuple[int, ...]]]:
    """The quantizer's candidate grids in spec order: ``(dt, sg, sorted grid)``.

    fp families: ER+, ER-, EA+, EA-; int families: the one int grid.
    """
    fam = family(name)
    if fam.kind == "int":
        return [(0, 0, quantizer_grid(name, 0))]
    result = []
    for dt in (0, 1):
        pos = quantizer_grid(name, dt)
        result.append((dt, 0, pos))
        result.append((dt, 1, tuple(sorted(-v for v in pos))))
    return result


class _Grid:
    """A sorted integer grid with the tables that round to it without a search.

    Grid values are integers, so every midpoint is a multiple of 1/2. With
    ``c = ceil(2 x)``, "midpoint < x" is "2 * midpoint <= c - 1" (exact in float64, ties
    included), so the index of the nearest value, ties to the lower one, is a lookup
    of ``c`` in a table of running midpoint counts. Values beyond the ends clamp.
    """

    def __init__(self, values, device):
        self.values = torch.tensor(values, dtype=torch.float64, device=device)
        doubled_mids = [a + b for a, b in zip(values[:-1], values[1:], strict=True)]
        self.low, high = doubled_mids[0], doubled_mids[-1] + 1
        counts = [sum(m <= c - 1 for m in doubled_mids) for c in range(self.low, high + 1)]
        self.index_of = torch.tensor(counts, dtype=torch.int64, device=device)
        self.high = high

    def index(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.ceil(x * 2).clamp_(self.low, self.high) - self.low
        return self.index_of[c.to(torch.int64)]


def _check_scale(scale32: torch.Tensor, used: torch.Tensor, what: str, argument: str, first_row: int) -> None:
    """A stored float32 scale must be a normal number, or the codes computed from it are garbage."""
    bad = used & ~(torch.isfinite(scale32) & (scale32.abs() >= torch.finfo(torch.float32).tiny))
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{argument} row {first_row + row}: {what} {scale32[row].item()!r} is not a normal float32 "
            f"(the row's magnitudes are too small or too large to quantize)"
        )


def check_weights(w, argument: str = "w") -> None:
    """Raise TypeError/ValueError unless ``w`` is a finite, non-empty, 2-D float tensor."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor, not {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"{argument} must be a float tensor, not dtype {w.dtype}")
    if w.dim() != 2:
        raise ValueError(f"{argument} must be 2-D [N, K], not shape {list(w.shape)}")
    if w.numel() == 0:
        raise ValueError(f"{argument} must not be empty, got shape {list(w.shape)}")
    bad = ~torch.isfinite(w)
    if bad.any():
        n, k = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{argument} must be finite; {argument}[{n}, {k}] = {w[n, k].item()}")


def _select(groups: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-4 for a block of groups [B, ng, G] (float64): chosen candidate index and scale."""
    amax = groups.abs().amax(dim=-1)
    nonzero = amax > 0
    best_err = best_scale = best_index = None
    for index, (_, _, grid_values) in enumerate(candidates(name)):
        grid = _Grid(grid_values, groups.device)
        scale = torch.where(nonzero, amax / max(abs(v) for v in grid_values), torch.ones_like(amax))
        q = grid.values[grid.index(groups / scale[..., None])]
        err = ((q * scale[..., None] - groups) ** 2).mean(dim=-1)
        if best_err is None:
            best_err, best_scale = err, scale
            best_index = torch.zeros_like(amax, dtype=torch.int64)
        else:
            # Strictly smaller only: on equal error the earlier candidate stays (step 4).
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_index = torch.where(better, torch.full_like(best_index, index), best_index)
    return best_index, torch.where(nonzero, best_scale, torch.zeros_like(best_scale)), nonzero


def quantize(w: torch.Tensor, family_name: str, group_size: int = 128, scale_bits: int = 8) -> BitmodWeights:
    """Quantize ``w`` [N, K] with BitMoD's mixture of datatypes (contract section 3).

    Parameters
    ----------
    w : float tensor [N, K]
        Weights, out-channels by in-features. Computed in float64 on ``w.device``.
    family_name : str
        ``fp4``, ``fp3``, ``int4``, ``int3``, ``int6`` or ``int8``.
    group_size : int
        G in {32, 64, 128}; K must be a multiple of it.
    scale_bits : int
        S in 4..12, the width of ``sq``.
    """
    check_weights(w)
    family(family_name)
    check_group_size(group_size)
    check_scale_bits(scale_bits)
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"K = {k} (w.shape[1]) must be a multiple of group_size {group_size}")
    ng = k // group_size
    device = w.device
    cand = candidates(family_name)
    cand_dt = torch.tensor([c[0] for c in cand], dtype=torch.uint8, device=device)
    cand_sg = torch.tensor([c[1] for c in cand], dtype=torch.uint8, device=device)
    qmax_sq = (1 << scale_bits) - 1

    codes = torch.empty((n, k), dtype=torch.uint8, device=device)
    dt = torch.empty((n, ng), dtype=torch.uint8, device=device)
    sg = torch.empty((n, ng), dtype=torch.uint8, device=device)
    sq = torch.empty((n, ng), dtype=torch.int32, device=device)
    cs = torch.empty((n,), dtype=torch.float32, device=device)
    pos_grids = [_Grid(quantizer_grid(family_name, d), device) for d in (0, 1)]
    # Code word of each grid index, per dt.
    grid_codes = [encode(grid.values, family_name, d).to(torch.uint8) for d, grid in enumerate(pos_grids)]

    rows = max(1, _BLOCK_ELEMENTS // k)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        groups = w[start:stop].to(torch.float64).reshape(stop - start, ng, group_size)
        index, scale, nonzero = _select(groups, family_name)
        block_dt, block_sg = cand_dt[index], cand_sg[index]
        # Step 5: channel scale (stored as float32, then used as stored) and group scale.
        row_max = scale.amax(dim=-1)
        block_cs = torch.where(row_max > 0, row_max / qmax_sq, torch.ones_like(row_max)).to(torch.float32)
        _check_scale(block_cs, row_max > 0, "channel scale cs", "w", start)
        cs64 = block_cs.to(torch.float64)[:, None]
        block_sq = torch.round(scale / cs64).clamp(1, qmax_sq)
        block_sq = torch.where(nonzero, block_sq, torch.zeros_like(block_sq))
        # Step 6: final codes against the stored scale e = sq * cs, on the POS grid.
        e = torch.where(nonzero, block_sq * cs64, torch.ones_like(block_sq))
        x = groups / e[..., None]
        x = torch.where(block_sg[..., None].bool(), -x, x)
        group_codes = torch.where(block_dt[..., None].bool(), grid_codes[1][pos_grids[1].index(x)],
                                  grid_codes[0][pos_grids[0].index(x)])
        group_codes = torch.where(nonzero[..., None], group_codes, torch.zeros_like(group_codes))
        codes[start:stop] = group_codes.reshape(stop - start, k)
        zero = ~nonzero
        dt[start:stop] = torch.where(zero, 0, block_dt)
        sg[start:stop] = torch.where(zero, 0, block_sg)
        sq[start:stop] = block_sq.to(torch.int32)
        cs[start:stop] = block_cs
    return BitmodWeights(codes, dt, sg, sq, cs, family_name, group_size, scale_bits)


def _group_values(bw: BitmodWeights) -> torch.Tensor:
    """``v(code, dt)`` of every weight, int64 [N, K/G, G]."""
    n, k = bw.shape
    ng = k // bw.group_size
    group_dt = bw.dt.to(torch.int64)[..., None].expand(n, ng, bw.group_size)
    return decode(bw.codes.to(torch.int64).reshape(n, ng, bw.group_size), bw.family, group_dt)


def _signed_sq(bw: BitmodWeights) -> torch.Tensor:
    return torch.where(bw.sg.bool(), -bw.sq.to(torch.int64), bw.sq.to(torch.int64))


def dequantize(bw: BitmodWeights) -> torch.Tensor:
    """``w_hat = (-1)**sg * sq * cs * v(code, dt)``, float32 [N, K]."""
    n, k = bw.shape
    v = _group_values(bw).to(torch.float64)
    scale = _signed_sq(bw).to(torch.float64) * bw.cs.to(torch.float64)[:, None]
    return (v * scale[..., None]).reshape(n, k).to(torch.float32)


def quantize_activations(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token symmetric int8 activations (contract section 4): ``(a_q int8 [M, K], s_a float32 [M])``.

    ``s_a = amax / 127`` (stored as float32, and used as stored), ``a_q =
    clamp(round_half_even(a / s_a), -127, 127)``; an all-zero row gets ``s_a = 1``.
    """
    check_weights(a, "a")
    a64 = a.to(torch.float64)
    amax = a64.abs().amax(dim=-1)
    qmax = (1 << (ACTIVATION_BITS - 1)) - 1
    s_a = torch.where(amax > 0, amax / qmax, torch.ones_like(amax)).to(torch.float32)
    _check_scale(s_a, amax > 0, "activation scale s_a", "a", 0)
    a_q = torch.round(a64 / s_a.to(torch.float64)[:, None]).clamp(-qmax, qmax).to(torch.int8)
    return a_q, s_a


def _exact_product(x: torch.Tensor, bw: BitmodWeights) -> torch.Tensor:
    """``sum_g (-1)**sg * sq * sum_{k in g} v * x`` of integer activations ``x`` [M, K], int64 [M, N].

    Group sums are float64 matrix products, exact while every partial sum is an integer
    below ``2**53`` (int8: ``128 * 128 * 128``; aligned FP16: ``2047 * 2**8 * 128 * 128``);
    the scaling and the sum over groups are int64.
    """
    m = x.shape[0]
    n, k = bw.shape
    ng = k // bw.group_size
    v = _group_values(bw).to(torch.float64)                                 # [N, ng, G]
    a = x.to(torch.float64).reshape(m, ng, bw.group_size).transpose(0, 1)  # [ng, M, G]
    group_sums = torch.bmm(a, v.permute(1, 2, 0)).round().to(torch.int64)    # [ng, M, N]
    return (group_sums * _signed_sq(bw).t()[:, None, :]).sum(dim=0)


def _check_k(a: torch.Tensor, bw: BitmodWeights, argument: str) -> None:
    if a.dim() != 2 or a.shape[1] != bw.shape[1]:
        raise ValueError(f"{argument} must have shape [M, {bw.shape[1]}] (K of the weights), not {list(a.shape)}")


def matmul_int(a_q: torch.Tensor, bw: BitmodWeights) -> torch.Tensor:
    """The PE array's exact result (contract section 5), int64 [M, N].

    ``acc[m, n] = sum_g (-1)**sg * sq * sum_{k in g} v(code[n, k], dt[n, g]) * a_q[m, k]``.
    """
    if not isinstance(a_q, torch.Tensor) or a_q.dtype != torch.int8:
        raise TypeError(f"a_q must be an int8 tensor, not {getattr(a_q, 'dtype', type(a_q).__name__)}")
    _check_k(a_q, bw, "a_q")
    return _exact_product(a_q, bw)


def int8_output(acc: torch.Tensor, cs: torch.Tensor, s_a: torch.Tensor) -> torch.Tensor:
    """``y = fl32(fl64(acc) * cs * s_a)``, float32 [M, N]: the host's last step of the int8 path."""
    product = acc.to(torch.float64) * cs.to(torch.float64)[None, :]
    return (product * s_a.to(torch.float64)[:, None]).to(torch.float32)


def matmul(a: torch.Tensor, bw: BitmodWeights) -> torch.Tensor:
    """Float result ``y = acc * cs * s_a`` of float activations ``a`` [M, K], float32 [M, N]."""
    a_q, s_a = quantize_activations(a)
    return int8_output(matmul_int(a_q, bw), bw.cs, s_a)



def matmul_fp16_int(a: torch.Tensor, bw: BitmodWeights, align_bits: int = DEFAULT_ALIGN_BITS
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The PE array's exact FP16-activation result: ``(acc int64 [M, N], er int64 [M])``.

    docs/formats.md, "FP16 activations": each token's activations are exponent-matched
    to its largest exponent ``er`` (:func:`golden.fp16.align_tokens`), and ``acc`` is the
    int8 mode's exact sum with the aligned significands ``A`` in place of ``a_q``.
    """
    aligned, er = align_tokens(a, align_bits)
    _check_k(a, bw, "a")
    return _exact_product(aligned, bw), er


def fp16_output(acc: torch.Tensor, er: torch.Tensor, cs: torch.Tensor, align_bits: int = DEFAULT_ALIGN_BITS
                ) -> torch.Tensor:
    """``y = fl32(fl64(fl64(acc) * 2^(er - output_shift(B))) * cs)``, float32 [M, N].

    The host's last step of the FP16 path (docs/formats.md): ``fl64(acc)`` is exact
    (``arch.fp16.fp16_widths`` keeps ``|acc| < 2**53``), the power of two is exact, and
    the product with the float32 channel scale is rounded to float64, then to float32,
    both to nearest even.
    """
    scale = torch.ldexp(torch.ones_like(er, dtype=torch.float64), er - output_shift(align_bits))
    return (acc.to(torch.float64) * scale[:, None] * cs.to(torch.float64)[None, :]).to(torch.float32)


def matmul_fp16(a: torch.Tensor, bw: BitmodWeights, align_bits: int = DEFAULT_ALIGN_BITS) -> torch.Tensor:
    """``y = a @ w_hat^T`` of float16 activations ``a`` [M, K] on the PE array's FP16 path, float32 [M, N].

    Bit for bit what the array and the host compute (docs/formats.md, "FP16 activations");
    Inf or NaN in ``a`` is a ValueError naming its token and channel.
    """
    acc, er = matmul_fp16_int(a, bw, align_bits)
    return fp16_output(acc, er, bw.cs, align_bits)
