"""golden.bitmod against a plain-Python transcription of docs/bitmod_contract.md sections 3-5."""

import math

import pytest
import torch

from arch.bitmod import FAMILIES, code_values, family
from golden.bitmod import (
    BitmodWeights,
    accumulator_widths,
    candidates,
    dequantize,
    matmul,
    matmul_int,
    quantize,
    quantize_activations,
)
from golden.formats import decode, encode

# --- the spec, step by step, one group at a time, in Python floats (float64) ------------------


def ref_round(x, grid):
    """Nearest grid value; an exact tie goes to the lower one; clamp to the ends."""
    best = grid[0]
    for value in grid:
        if abs(x - value) < abs(x - best):
            best = value                # strictly closer only: ties keep the lower value
    return best


def ref_quantize(w, name, group_size, scale_bits):
    rows = []
    qmax_sq = 2 ** scale_bits - 1
    for row in w.tolist():
        groups = [row[i:i + group_size] for i in range(0, len(row), group_size)]
        chosen = []
        for g in groups:
            amax = max(abs(x) for x in g)
            if amax == 0:
                chosen.append(None)
                continue
            best = None
            for dt, sg, grid in candidates(name):
                s = amax / max(abs(v) for v in grid)
                err = sum((ref_round(x / s, grid) * s - x) ** 2 for x in g) / len(g)
                if best is None or err < best[0]:
                    best = (err, s, dt, sg)
            chosen.append(best)
        s_max = max((c[1] for c in chosen if c), default=0.0)
        cs = float(torch.tensor(s_max / qmax_sq if s_max > 0 else 1.0, dtype=torch.float32))
        codes, meta = [], []
        for g, c in zip(groups, chosen, strict=True):
            if c is None:
                codes += [0] * len(g)
                meta.append((0, 0, 0))
                continue
            _, s, dt, sg = c
            sq = min(max(round(s / cs), 1), qmax_sq)          # Python round() is half-even
            e = sq * cs
            pos = [v for v in sorted(set(code_values(name, dt)))]
            if family(name).kind == "int":
                pos = pos[1:]
            values = [ref_round((-x if sg else x) / e, pos) for x in g]
            codes += encode(torch.tensor(values), name, dt).tolist()
            meta.append((dt, sg, sq))
        rows.append((codes, meta, cs))
    return rows


def assert_matches_reference(w, name, group_size=32, scale_bits=8):
    bw = quantize(w, name, group_size, scale_bits)
    for n, (codes, meta, cs) in enumerate(ref_quantize(w, name, group_size, scale_bits)):
        assert bw.codes[n].tolist() == codes, f"row {n} codes"
        assert [tuple(m) for m in zip(bw.dt[n].tolist(), bw.sg[n].tolist(), bw.sq[n].tolist(),
                                      strict=True)] == meta, f"row {n} dt/sg/sq"
        assert bw.cs[n].item() == cs, f"row {n} cs"
    return bw


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dist", ["normal", "laplace", "student"])
def test_quantizer_matches_spec_reference(name, dist):
    # torch.distributions draw from the global generator, which starts from the test's seed (conftest.py).
    if dist == "normal":
        w = torch.randn(4, 128)
    elif dist == "laplace":
        w = torch.distributions.Laplace(0.0, 1.0).sample((4, 128))
    else:
        w = torch.distributions.StudentT(3.0).sample((4, 128))
    assert_matches_reference(w, name)


def test_exact_ties_round_down():
    # s = 255 * 2**-8 makes cs = 2**-8 exact in float32, so e = s and w / e = +-0.5 exactly.
    s = 255 / 256
    w = torch.tensor([[7 * s, 0.5 * s, -0.5 * s, 2.5 * s] + [0.0] * 28], dtype=torch.float64)
    bw = assert_matches_reference(w, "int4")
    values = decode(bw.codes.to(torch.int64), "int4").tolist()[0]
    assert values[:4] == [7, 0, -1, 2]


def test_all_equal_group_takes_the_first_candidate():
    for sign in (1.0, -1.0):
        w = torch.full((1, 32), sign * 0.37)
        bw = assert_matches_reference(w, "fp4")
        assert (bw.dt.item(), bw.sg.item(), bw.sq.item()) == (0, 0, 255)   # ER+ wins the tie


def test_neg_group_is_chosen_when_it_fits_better():
    w = torch.zeros(1, 32)
    w[0, 0], w[0, 1] = -10.0, 12.0
    bw = assert_matches_reference(w, "fp4")
    assert (bw.dt.item(), bw.sg.item()) == (0, 1)                            # ER-
    assert torch.allclose(dequantize(bw)[0, :2], torch.tensor([-10.0, 12.0]), rtol=1e-6)


def test_all_zero_groups_and_rows():
    w = torch.randn(3, 64)
    w[0] = 0
    w[1, :32] = 0
    bw = assert_matches_reference(w, "fp3")
    assert bw.cs[0].item() == 1.0 and bw.sq[0].tolist() == [0, 0]
    assert bw.codes[0].eq(0).all() and bw.codes[1, :32].eq(0).all()
    assert (bw.dt[1, 0].item(), bw.sg[1, 0].item(), bw.sq[1, 0].item()) == (0, 0, 0)
    assert dequantize(bw)[0].eq(0).all()


def test_single_huge_outlier():
    w = torch.randn(2, 128) * 1e-3
    w[1, 5] = 1000.0
    bw = assert_matches_reference(w, "fp4", group_size=128)
    w_hat = dequantize(bw)
    assert abs(w_hat[1, 5].item() - 1000.0) <= 1000.0 / 255
    others = torch.ones(128, dtype=torch.bool)
    others[5] = False
    assert w_hat[1, others].eq(0).all()            # the rest of the group is far below one step
    # Row 0 has its own channel scale: the outlier of row 1 costs it nothing.
    assert (w_hat[0] - w[0]).abs().max() <= w[0].abs().max() / 6


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("scale_bits,group_size", [(4, 64), (12, 128)])
def test_other_scale_bits_and_group_sizes(name, scale_bits, group_size):
    w = torch.randn(3, 256, generator=torch.Generator().manual_seed(5))
    bw = assert_matches_reference(w, name, group_size, scale_bits)
    assert bw.sq.max().item() <= 2 ** scale_bits - 1


@pytest.mark.parametrize("name", FAMILIES)
def test_quantization_error_is_small(name):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    bw = quantize(w, name)
    sqnr = 10 * math.log10(w.pow(2).sum() / (w - dequantize(bw)).pow(2).sum())
    # 6 dB per bit less the Gaussian's crest factor; mixtures of fp grids do better.
    assert sqnr > {"int3": 9, "fp3": 12, "int4": 16, "fp4": 18, "int6": 29, "int8": 41}[name]


def test_float_inputs_of_any_precision_give_the_same_codes():
    w = torch.randn(4, 128, generator=torch.Generator().manual_seed(2)).to(torch.float16)
    a, b = quantize(w, "fp4"), quantize(w.to(torch.float64), "fp4")
    assert torch.equal(a.codes, b.codes) and torch.equal(a.sq, b.sq)


def brute_force_acc(a_q, bw):
    n, k = bw.shape
    g = bw.group_size
    v = decode(bw.codes.to(torch.int64), bw.family, bw.dt.to(torch.int64).repeat_interleave(g, dim=1)).tolist()
    result = []
    for a_row in a_q.tolist():
        out = []
        for r in range(n):
            total = 0
            for grp in range(k // g):
                part = sum(v[r][j] * a_row[j] for j in range(grp * g, (grp + 1) * g))
                total += (-1 if bw.sg[r, grp] else 1) * int(bw.sq[r, grp]) * part
            out.append(total)
        result.append(out)
    return result


@pytest.mark.parametrize("name", FAMILIES)
def test_matmul_int_is_the_spec_sum(name):
    gen = torch.Generator().manual_seed(3)
    bw = quantize(torch.randn(5, 128, generator=gen), name, group_size=32)
    a_q = torch.randint(-128, 128, (3, 128), generator=gen, dtype=torch.int8)
    acc = matmul_int(a_q, bw)
    assert acc.dtype == torch.int64
    assert acc.tolist() == brute_force_acc(a_q, bw)


def test_matmul_float_is_close_to_the_float_product():
    gen = torch.Generator().manual_seed(4)
    w, a = torch.randn(32, 256, generator=gen), torch.randn(8, 256, generator=gen)
    y, reference = matmul(a, quantize(w, "int8")), a @ w.T
    assert (y - reference).norm() / reference.norm() < 0.02      # int8 x int8: about 1 %


def test_activations():
    a = torch.tensor([[0.0, 1.0, -2.0, 0.5 * 2 / 127], [0.0, 0.0, 0.0, 0.0]])
    a_q, s_a = quantize_activations(a)
    assert a_q.dtype == torch.int8 and s_a.dtype == torch.float32
    assert s_a[0].item() == pytest.approx(2 / 127) and s_a[1].item() == 1.0
    assert a_q[0].tolist() == [0, 64, -127, 0] and a_q[1].tolist() == [0, 0, 0, 0]   # 63.5 -> 64, 0.5 -> 0


@pytest.mark.parametrize("families,scale_bits,group_size,max_k",
                         [(("fp4",), 8, 128, 512), (("int8",), 12, 32, 256), (("fp3", "int3"), 4, 64, 128)])
def test_accumulator_widths_are_tight_and_never_overflow(families, scale_bits, group_size, max_k):
    widths = accumulator_widths(max_k, group_size, scale_bits, families)
    name = families[0]
    # The largest |v| of the family (fp4's EA special 16, int8's -128) against a = -128.
    values = [v for dt in (0, 1) for v in code_values(name, dt)]
    v_max = max(values, key=abs)
    dt = int(v_max not in code_values(name, 0))
    code = encode(torch.tensor([v_max]), name, dt).item()
    ng = max_k // group_size
    bw = BitmodWeights(codes=torch.full((1, max_k), code, dtype=torch.uint8),
                       dt=torch.full((1, ng), dt, dtype=torch.uint8), sg=torch.zeros((1, ng), dtype=torch.uint8),
                       sq=torch.full((1, ng), 2 ** scale_bits - 1, dtype=torch.int32),
                       cs=torch.ones(1), family=name, group_size=group_size, scale_bits=scale_bits)
    acc = matmul_int(torch.full((1, max_k), -128, dtype=torch.int8), bw).item()
    if abs(v_max) * 128 == widths["max_abs_product"]:
        assert abs(acc) == widths["max_abs_acc"]
    bits = widths["acc_bits"]
    assert -(2 ** (bits - 1)) <= acc < 2 ** (bits - 1)                   # fits
    assert widths["max_abs_acc"] > 2 ** (bits - 2) - 1                   # one bit less would not
    for key in ("product", "group_sum", "scaled_group"):
        assert widths[f"max_abs_{key}"] > 2 ** (widths[f"{key}_bits"] - 2) - 1


@pytest.mark.parametrize("call,error,message", [
    (lambda: quantize(torch.tensor([[float("nan")] * 32]), "fp4"), ValueError, r"w must be finite; w\[0, 0\] = nan"),
    (lambda: quantize(torch.tensor([[1.0] * 31 + [float("inf")]]), "fp4"), ValueError, r"w\[0, 31\] = inf"),
    (lambda: quantize(torch.randn(2, 96), "fp4"), ValueError, "K = 96 .* must be a multiple of group_size 128"),
    (lambda: quantize(torch.randn(2, 128), "fp5"), ValueError, "family must be one of"),
    (lambda: quantize(torch.randn(2, 128), "fp4", scale_bits=3), ValueError, "scale_bits must be an integer in 4..12, not 3"),
    (lambda: quantize(torch.randn(2, 128), "fp4", scale_bits=13), ValueError, "not 13"),
    (lambda: quantize(torch.randn(2, 128), "fp4", group_size=48), ValueError, r"group_size must be one of \(32, 64, 128\), not 48"),
    (lambda: quantize(torch.ones(2, 128, dtype=torch.int32), "fp4"), TypeError, "w must be a float tensor, not dtype torch.int32"),
    (lambda: quantize(torch.randn(0, 128), "fp4"), ValueError, r"w must not be empty, got shape \[0, 128\]"),
    (lambda: quantize(torch.randn(128), "fp4"), ValueError, r"w must be 2-D \[N, K\], not shape \[128\]"),
    (lambda: quantize([[1.0]], "fp4"), TypeError, "w must be a torch.Tensor, not list"),
    (lambda: quantize_activations(torch.tensor([[1.0, float("nan")]])), ValueError, r"a must be finite; a\[0, 1\] = nan"),
    (lambda: matmul_int(torch.zeros(1, 128), quantize(torch.randn(1, 128), "fp4")), TypeError, "a_q must be an int8 tensor"),
    (lambda: matmul_int(torch.zeros(1, 64, dtype=torch.int8), quantize(torch.randn(1, 128), "fp4")), ValueError,
     r"a_q must have shape \[M, 128\]"),
    (lambda: accumulator_widths(100, 32, 8, ["fp4"]), ValueError, "max_k must be a positive multiple of group_size 32, not 100"),
])
def test_errors_name_the_argument_and_value(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", ["fp4", "int6"])
def test_cuda_gives_the_cpu_result(name):
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(9))
    cpu, gpu = quantize(w, name), quantize(w.cuda(), name)
    for field in ("codes", "dt", "sg", "sq", "cs"):
        assert torch.equal(getattr(cpu, field), getattr(gpu, field).cpu()), field
    a_q = torch.randint(-128, 128, (4, 512), dtype=torch.int8)
    assert torch.equal(matmul_int(a_q, cpu), matmul_int(a_q.cuda(), gpu).cpu())


@pytest.mark.parametrize("value,dtype", [(1e-44, torch.float32), (1e-300, torch.float64), (1e300, torch.float64)])
def test_scales_outside_float32_are_refused(value, dtype):
    w = torch.zeros(2, 32, dtype=dtype)
    w[1, 0], w[1, 1] = value, value / 3
    with pytest.raises(ValueError, match="w row 1: channel scale cs .* is not a normal float32"):
        quantize(w, "fp4", group_size=32)
    with pytest.raises(ValueError, match="a row 1: activation scale s_a .* is not a normal float32"):
        quantize_activations(w)
