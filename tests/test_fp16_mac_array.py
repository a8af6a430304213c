"""The FP16 MAC baseline (hdl.fp16_mac_array) under Amaranth's simulator, bit for bit against
golden.fp16_mac, with random stalls on every stream; its FP32 adder and FP16 product alone; the
golden model's accuracy; bad parameters."""

import struct

import pytest
import torch
from amaranth import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from arch.pe_array_config import PeArrayConfig
from golden.bitmod import dequantize, quantize
from golden.fp16_mac import (
    acc_from_bits,
    errors_against_float64,
    fp16_mac_output,
    fp32_bits,
    matmul_fp16_mac,
    matmul_fp16_mac_acc,
    weights_fp16,
)
from hdl.fp16_mac_array import Fp16MacArray
from hdl.fp16_mul import pack_product, partial_products, unpack_fp16, weight_fp16
from hdl.fp32_add import fp32_add
from host.pe_array_jobs import assemble, assemble_tags, plan_jobs, random_fp16
from sim.pe_array_amaranth import simulate_jobs

SMALL = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 64}


def _config(**changes):
    return PeArrayConfig(**{**SMALL, **changes}, activations="fp16")


def _weights(config, name, n, k, generator):
    w = torch.randn((n, k), generator=generator, dtype=torch.float64)
    w = w * torch.rand((n, k), generator=generator, dtype=torch.float64) ** -0.5
    return quantize(w.to(torch.float32), name, config.group_size, config.scale_bits)


def run(config, a, bw, multiplier, *, stall=0.3, seed=1):
    jobs = plan_jobs(config, a, bw)
    result = simulate_jobs(Fp16MacArray(config, multiplier), jobs, stall=stall, seed=seed)
    acc = fp32_bits(acc_from_bits(assemble(config, a.shape[0], bw.shape[0], jobs, result.beats)))
    er, invalid = assemble_tags(config, a.shape[0], jobs, result.beats)
    return acc, er, invalid


def check(config, a, bw, multiplier, seed):
    acc, er, invalid = run(config, a, bw, multiplier, seed=seed)
    want = matmul_fp16_mac_acc(a, bw, config.lanes)
    diff = (acc != fp32_bits(want)).nonzero()
    assert not len(diff), (f"{len(diff)} results differ, first at {diff[0].tolist()}: got "
                           f"{acc[tuple(diff[0])]:#010x}, expected {int(fp32_bits(want)[tuple(diff[0])]):#010x} "
                           f"(seed {seed})")
    assert not er.any() and not invalid.any()
    y = fp16_mac_output(acc_from_bits(acc), bw.cs)
    assert torch.equal(fp32_bits(y), fp32_bits(matmul_fp16_mac(a, bw, config.lanes)))


@pytest.mark.parametrize("kind", ["gaussian", "subnormal", "spread"])
@pytest.mark.parametrize("name", ["fp4", "int8"])
def test_lut_array_is_bit_exact_with_stalls(name, kind, seed):
    config = _config()
    gen = torch.Generator().manual_seed(seed)
    m, n, k = 3, 5, config.max_k
    a = random_fp16(m, k, gen, kind)
    a[0, :3] = torch.tensor([65504.0, -65504.0, -0.0])           # the largest normals, a signed zero
    check(config, a, _weights(config, name, n, k, gen), "lut", seed)


@pytest.mark.parametrize("name", ["fp4", "int8"])
def test_dsp_array_is_bit_exact_with_stalls(name, seed):
    config = _config()
    gen = torch.Generator().manual_seed(seed)
    check(config, random_fp16(5, 32, gen, "mixed"), _weights(config, name, 3, 32, gen), "dsp", seed)


@pytest.mark.parametrize("name", ["fp3", "int4", "int3", "int6"])
def test_the_other_families_at_eight_lanes(name, seed):
    config = _config(lanes=8, cols=1, rows=1, group_size=64, max_k=128)
    gen = torch.Generator().manual_seed(seed)
    check(config, random_fp16(2, 64, gen, "heavy"), _weights(config, name, 2, 64, gen), "lut", seed)


@pytest.mark.parametrize("rows, cols, multiplier", [(3, 1, "lut"), (1, 3, "dsp")])
def test_odd_shapes_with_heavy_stalls(rows, cols, multiplier, seed):
    config = _config(rows=rows, cols=cols, max_k=96)
    gen = torch.Generator().manual_seed(seed)
    a = random_fp16(2 * rows + 1, 96, gen, "mixed")
    check_args = (config, a, _weights(config, "int6", 2 * cols + 1, 96, gen), multiplier)
    acc, _, _ = run(*check_args, stall=0.5, seed=seed)
    assert torch.equal(acc, fp32_bits(matmul_fp16_mac_acc(a, check_args[2], config.lanes))), f"seed {seed}"


def test_an_inf_or_nan_lane_sets_the_jobs_sticky_invalid_flag():
    config = _config()
    gen = torch.Generator().manual_seed(3)
    a = random_fp16(4, 32, gen, "gaussian")
    bw = _weights(config, "int4", 2, 32, gen)
    jobs = plan_jobs(config, a, bw)                              # two jobs of two tokens
    jobs[0].act[3] = jobs[0].act[3] & ~0xFFFF | 0x7E00           # token 0, channel 12: NaN
    result = simulate_jobs(Fp16MacArray(config), jobs, stall=0.2, seed=3)
    _, invalid = assemble_tags(config, 4, jobs, result.beats)
    assert invalid.tolist() == [True, True, False, False]


class _Units(Elaboratable):
    """The FP32 adder and the FP16 product alone (combinational)."""

    def __init__(self):
        self.a, self.b, self.total = Signal(32), Signal(32), Signal(32)
        self.act, self.magnitude, self.sign, self.product = Signal(16), Signal(15), Signal(), Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.total.eq(fp32_add(m, self.a, self.b, "add"))
        a, w = unpack_fp16(m, self.act, "a"), weight_fp16(m, self.sign, self.magnitude, "w")
        low, high = partial_products(a, w, "lut")
        m.d.comb += self.product.eq(pack_product(m, low + high, a.exponent + w.exponent, a.sign ^ w.sign,
                                                 a.zero | w.zero, "p"))
        return m


def _f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def test_fp32_adder_and_fp16_product_round_like_ieee(seed):
    gen = torch.Generator().manual_seed(seed)
    count = 400
    # FP32 operands like the array's: multiples of 2^-24, some zeros, some near-cancellations.
    exponents = torch.randint(-24, 40, (2, count), generator=gen)
    signs = torch.randint(0, 2, (2, count), generator=gen) * 2 - 1
    ops = (signs * torch.randint(1, 1 << 24, (2, count), generator=gen)).double() * torch.exp2(exponents - 24.0)
    ops = ops.float()
    ops[0, :20] = 0
    ops[1, 20:60] = -ops[0, 20:60] * (1 + torch.randint(-3, 4, (40,), generator=gen).float() * 2 ** -23)
    want_sum = ops[0] + ops[1]
    want_sum = torch.where(want_sum == 0, torch.zeros(()), want_sum)
    act = random_fp16(1, count, gen, "mixed")[0]
    act[:30] = random_fp16(1, 30, gen, "subnormal")[0]
    magnitude = torch.randint(0, 32641, (count,), generator=gen)
    sign = torch.randint(0, 2, (count,), generator=gen)
    w16 = torch.where(sign.bool(), -magnitude, magnitude).float().half()
    want_product = act.float() * w16.float()
    want_product = torch.where(want_product == 0, torch.zeros(()), want_product)
    dut = _Units()
    failures = []

    async def testbench(ctx):
        for i in range(count):
            ctx.set(dut.a, int(fp32_bits(ops[0, i])))
            ctx.set(dut.b, int(fp32_bits(ops[1, i])))
            ctx.set(dut.act, int(act[i].view(torch.int16)) & 0xFFFF)
            ctx.set(dut.magnitude, int(magnitude[i]))
            ctx.set(dut.sign, int(sign[i]))
            if ctx.get(dut.total) != int(fp32_bits(want_sum[i])):
                failures.append(("sum", ops[0, i].item(), ops[1, i].item(), _f32(ctx.get(dut.total))))
            if ctx.get(dut.product) != int(fp32_bits(want_product[i])):
                failures.append(("product", act[i].item(), w16[i].item(), _f32(ctx.get(dut.product))))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    assert not failures, f"{len(failures)} wrong, first {failures[0]} (seed {seed})"


def test_golden_weights_are_fp16_roundings_of_sq_times_v():
    gen = torch.Generator().manual_seed(5)
    bw = quantize(torch.randn(4, 256, generator=gen), "int8", 128, 8)
    w16 = weights_fp16(bw)
    assert w16.dtype == torch.float16 and w16.shape == bw.shape
    assert torch.equal(w16.double(), w16.double().round())          # integers (|sq * v| >= 1 or 0)
    # Times cs: the dequantized weight, up to FP16's rounding of sq * v (half an ulp: 2^-11).
    w_hat = w16.double() * bw.cs.double()[:, None]
    assert torch.allclose(w_hat, dequantize(bw).double(), rtol=2 ** -11, atol=0)


def test_golden_error_against_float64_on_gaussian_inputs():
    gen = torch.Generator().manual_seed(0)
    bw = quantize(torch.randn(64, 512, generator=gen), "fp4")
    a = torch.randn(8, 512, generator=gen).half()
    errors = errors_against_float64(matmul_fp16_mac(a, bw, 8), a, bw)
    assert errors["rms"] < 1e-6 and errors["worst"] < 1e-6, errors


@pytest.mark.parametrize("make, match", [
    (lambda: Fp16MacArray(PeArrayConfig(**SMALL)), "activations of the FP16 MAC baseline must be fp16, not 'int8'"),
    (lambda: Fp16MacArray(_config(), multiplier="wallace"), "multiplier must be one of lut, dsp, not 'wallace'"),
    (lambda: Fp16MacArray(_config(scale_bits=9, group_size=128, max_k=128)),
     "scale_bits of the FP16 MAC baseline must be at most 8 .*, not 9"),
    (lambda: Fp16MacArray(_config(group_size=32, max_k=32, families=("int3",), align_bits=0)),
     "acc_bits=.* too few for the FP16 MAC baseline's FP32 results"),
    (lambda: weights_fp16(quantize(torch.ones(1, 128), "int4", 128, 12)),
     "scale_bits of the FP16 MAC baseline must be at most 8 .*, not 12"),
    (lambda: matmul_fp16_mac(torch.ones(1, 128).half(), quantize(torch.ones(1, 128), "int4"), lanes=6),
     "lanes must be a power of two, not 6"),
])
def test_bad_parameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_inf_and_nan_activations_are_refused_on_the_host():
    config = _config()
    gen = torch.Generator().manual_seed(1)
    bw = _weights(config, "fp4", 2, 32, gen)
    a = random_fp16(2, 32, gen, "gaussian")
    a[1, 7] = float("nan")
    with pytest.raises(ValueError, match=r"a\[1, 7\] = nan \(token 1, channel 7\)"):
        matmul_fp16_mac(a, bw, config.lanes)
    with pytest.raises(ValueError, match=r"a\[1, 7\] = nan"):
        plan_jobs(config, a, bw)
