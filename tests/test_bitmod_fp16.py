"""The FP16-activation product (docs/formats.md, "FP16 activations"): golden.bitmod.matmul_fp16
against a second, element-by-element implementation of the contract in Python integers
and fractions, on the inputs where the arithmetic is delicate."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from arch.bitmod import FAMILIES
from arch.fp16 import DEFAULT_ALIGN_BITS, fp16_widths, output_shift
from golden import bitmod
from golden.fp16 import align_tokens, fp16_fields

G = 32


def _decode(x: float) -> tuple[int, int, int]:
    """``(sign, e, M)`` from the value alone (no bit fields): ``|x| = M * 2^(e - 25)``, e >= 1."""
    sign = int(math.copysign(1.0, x) < 0)
    if x == 0:
        return sign, 1, 0
    _, p = math.frexp(x)                       # |x| = f * 2^p, 0.5 <= f < 1
    e = max(p + 14, 1)
    significand = Fraction(abs(x)) * Fraction(2) ** (25 - e)
    assert significand.denominator == 1 and significand < 2048
    return sign, e, int(significand)


def _round_half_away(value: Fraction) -> int:
    return int(math.floor(value + Fraction(1, 2))) if value >= 0 else -int(math.floor(-value + Fraction(1, 2)))


def reference(a: torch.Tensor, bw: bitmod.BitmodWeights, align_bits: int) -> tuple[list, list, np.ndarray]:
    """The contract step by step, one element at a time: ``(acc, er, y)``."""
    values = bitmod._group_values(bw)
    m_count, k = a.shape
    n_count = bw.shape[0]
    acc_all, er_all = [], []
    y = np.zeros((m_count, n_count), dtype=np.float32)
    for m in range(m_count):
        fields = [_decode(float(x)) for x in a[m].tolist()]
        er = max(e for _, e, _ in fields)
        aligned = []
        for sign, e, significand in fields:
            shifted = Fraction(significand * 2 ** align_bits, 2 ** (er - e))
            aligned.append(-_round_half_away(shifted) if sign else _round_half_away(shifted))
        row = []
        for n in range(n_count):
            acc = 0
            for g in range(k // bw.group_size):
                s = sum(int(values[n, g, i]) * aligned[g * bw.group_size + i] for i in range(bw.group_size))
                acc += (-1) ** int(bw.sg[n, g]) * int(bw.sq[n, g]) * s
            row.append(acc)
            y[m, n] = np.float32(float(acc) * 2.0 ** (er - 25 - align_bits) * float(bw.cs[n]))
        acc_all.append(row)
        er_all.append(er)
    return acc_all, er_all, y


def _weights(n: int, k: int, family: str, seed: int) -> bitmod.BitmodWeights:
    gen = torch.Generator().manual_seed(seed)
    return bitmod.quantize(torch.randn(n, k, generator=gen), family, G, 8)


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def _activations(kind: str, m: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(m, k, generator=gen).half()
    if kind == "heavy":
        # Student's t with 2 degrees of freedom: a normal over the root of Exp(1) (= chi2(2) / 2).
        t2 = torch.randn(m, k, generator=gen) / torch.empty(m, k).exponential_(generator=gen).sqrt()
        return t2.clamp(-6e4, 6e4).half()
    if kind == "subnormal":                     # every element subnormal or zero, both signs
        bits = torch.randint(0, 1024, (m, k), generator=gen) | (torch.randint(0, 2, (m, k), generator=gen) << 15)
        return bits.to(torch.int16).view(torch.float16)
    if kind == "spread":                        # exponents across the whole range within each group
        exponent = torch.randint(-24, 16, (m, k), generator=gen).double()
        sign = torch.randint(0, 2, (m, k), generator=gen).double() * 2 - 1
        return (sign * torch.rand(m, k, generator=gen, dtype=torch.float64).add(1) * exponent.exp2()).clamp(
            -65504, 65504).half()
    if kind == "groups":                        # each group of a token 2^-5 below the one before it
        scale = torch.arange(k).div(G, rounding_mode="floor").mul(-5.0).exp2()
        return (torch.randn(m, k, generator=gen) * scale).half()
    if kind == "extremes":                      # the largest normals, the smallest subnormals, signed zeros
        choices = torch.tensor([65504.0, -65504.0, 2.0 ** -24, -(2.0 ** -24), 0.0, -0.0, 1.0, 6.1e-5]).half()
        return choices[torch.randint(0, len(choices), (m, k), generator=gen)]
    raise ValueError(kind)


KINDS = ("gaussian", "heavy", "subnormal", "spread", "groups", "extremes")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("align_bits", (0, DEFAULT_ALIGN_BITS, 8))
def test_matmul_fp16_equals_the_contract_element_by_element(kind, align_bits):
    a = _activations(kind, 3, 4 * G, seed=len(kind) + align_bits)
    bw = _weights(4, 4 * G, "fp4", seed=align_bits)
    acc, er = bitmod.matmul_fp16_int(a, bw, align_bits)
    ref_acc, ref_er, ref_y = reference(a, bw, align_bits)
    assert er.tolist() == ref_er
    mismatch = (acc != torch.tensor(ref_acc)).nonzero()
    assert len(mismatch) == 0, f"first mismatch at {mismatch[0].tolist()}: {acc[tuple(mismatch[0])]} " \
                               f"!= {ref_acc[mismatch[0][0]][mismatch[0][1]]}, a row {a[mismatch[0][0]].tolist()}"
    y = bitmod.matmul_fp16(a, bw, align_bits)
    assert torch.equal(_bits(y), _bits(torch.from_numpy(ref_y)))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_and_negative_groups(family):
    a = _activations("spread", 2, 2 * G, seed=7)
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 2 * G, generator=gen) - 0.7         # groups of mostly negative weights: sg = 1 (fp)
    bw = bitmod.quantize(w, family, G, 8)
    acc, _ = bitmod.matmul_fp16_int(a, bw)
    assert acc.tolist() == reference(a, bw, DEFAULT_ALIGN_BITS)[0]


def test_ties_round_half_away_from_zero():
    # Token max 2^1 (e = 16); 1.5 * 2^-3 (e = 12, M = 1536) shifts by 4 with B = 0: 96 exactly,
    # and 1025 * 2^-12 (M = 1025, e = 13) shifts by 3: 128.125 -> 128; 1028 / 8 = 128.5 -> 129.
    values = [2.0, 1.5 * 2 ** -3, 1025 * 2.0 ** -12, 1028 * 2.0 ** -12, -1028 * 2.0 ** -12] + [0.0] * (G - 5)
    a = torch.tensor([values]).half()
    aligned, er = align_tokens(a, 0)
    assert er.tolist() == [16]
    assert aligned[0, :5].tolist() == [1024, 96, 128, 129, -129]


def test_zeros_and_subnormals_share_exponent_one():
    a = torch.zeros(1, G).half()
    a[0, 1] = -0.0
    a[0, 2] = 2.0 ** -24                                   # smallest subnormal: M = 1, e = 1
    sign, e, significand = fp16_fields(a)
    assert e.tolist()[0][:3] == [1, 1, 1] and significand.tolist()[0][:3] == [0, 0, 1] and sign.tolist()[0][1] == 1
    aligned, er = align_tokens(a, 4)
    assert er.tolist() == [1] and aligned[0, 2] == 16


def test_channels_far_below_the_token_round_to_zero():
    # 2^-20 next to 1024: a shift of 30 > zero_shift, so A = 0; 2^-4 keeps one unit at B = 4 (shift 14),
    # 1.5 * 2^-4 is a tie: 1.5 -> 2.
    a = torch.tensor([[1024.0, 2.0 ** -20, -(2.0 ** -20), 2.0 ** -4, 1.5 * 2 ** -4] + [0.0] * (G - 5)]).half()
    aligned, er = align_tokens(a, 4)
    assert er.tolist() == [25] and aligned[0, :5].tolist() == [1024 * 16, 0, 0, 1, 2]
    bw = _weights(2, G, "int8", seed=2)
    assert bitmod.matmul_fp16_int(a, bw)[0].tolist() == reference(a, bw, DEFAULT_ALIGN_BITS)[0]


def test_the_widths_hold_the_worst_input():
    k = 4 * G
    a = torch.full((1, k), 65504.0).half()
    bw = _weights(1, k, "int8", seed=0)
    bw.codes.fill_(0x80)                                    # -128 in every lane
    bw.sq.fill_(255)
    bw.sg.fill_(0)
    widths = fp16_widths(k, G, 8, FAMILIES, DEFAULT_ALIGN_BITS)
    with pytest.raises(ValueError, match="beyond float64's exact integers"):
        fp16_widths(1 << 16, G, 12, FAMILIES, 8)
    acc, _ = bitmod.matmul_fp16_int(a, bw)
    assert int(acc) == -widths["max_abs_acc"]              # every bound is reached here
    assert widths["max_abs_acc"] < 2 ** (widths["acc_bits"] - 1)


def test_error_against_float64_is_small():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(16, 512, generator=gen).half()
    bw = bitmod.quantize(torch.randn(64, 512, generator=gen), "fp4", 128, 8)
    ref = a.double() @ bitmod.dequantize(bw).double().T
    y = bitmod.matmul_fp16(a, bw)
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-4
    coarse = bitmod.matmul_fp16(a, bw, align_bits=0)
    assert (coarse.double() - ref).norm() > (y.double() - ref).norm()   # kept bits buy accuracy


@pytest.mark.parametrize("bad, error, match", [
    (torch.ones(2, 64), TypeError, "float16"),
    (torch.ones(2, 64, dtype=torch.int8), TypeError, "float16"),
    (torch.ones(64).half(), ValueError, "2-D"),
    (torch.ones(2, 96).half(), ValueError, r"shape \[M, 64\]"),
])
def test_bad_activations_are_named(bad, error, match):
    bw = _weights(2, 64, "int4", seed=0)
    with pytest.raises(error, match=match):
        bitmod.matmul_fp16(bad, bw)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_inf_and_nan_name_token_and_channel(value):
    a = torch.ones(3, 64).half()
    a[2, 37] = value
    with pytest.raises(ValueError, match=r"a\[2, 37\] = .* \(token 2, channel 37\): FP16 activations must be finite"):
        bitmod.matmul_fp16(a, _weights(2, 64, "int4", seed=0))


@pytest.mark.parametrize("align_bits", (-1, 9, 2.0, True))
def test_align_bits_is_checked(align_bits):
    with pytest.raises(ValueError, match="align_bits must be an integer in 0..8"):
        bitmod.matmul_fp16(torch.ones(1, 64).half(), _weights(2, 64, "int4", seed=0), align_bits)


def test_output_shift_is_the_contract_exponent():
    assert output_shift(DEFAULT_ALIGN_BITS) == 25 + DEFAULT_ALIGN_BITS
