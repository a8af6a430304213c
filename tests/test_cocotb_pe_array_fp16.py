"""The generated PE-array Verilog with FP16 activations on Verilator and Icarus, bit for bit
against golden.bitmod.matmul_fp16, with random stalls, a reset in mid-run and the self-check
that ``mixbit sim pe_array -p activations=fp16`` runs; the FP16 MAC baseline
(``pe_array_parallel -p activations=fp16``) likewise against golden.fp16_mac."""

import pytest
import torch

from gateware.designs import get_design
from golden.bitmod import matmul_fp16, matmul_fp16_int, matmul_int, quantize
from golden.fp16_mac import fp32_bits, matmul_fp16_mac, matmul_fp16_mac_acc
from host.pe_array_jobs import first_mismatch, random_case, random_fp16
from sim.pe_array import run_pe_array, run_pe_array_detailed
from sim.runner import build_design, run_regression
from sim.tools import SIMULATORS

FP16 = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 96,
        "families": ("fp4", "int8"), "activations": "fp16"}


def _weights(name, n, k, generator):
    w = torch.randn((n, k), generator=generator) * torch.rand((n, k), generator=generator) ** -0.5
    return quantize(w, name, 32, 4)


def _check(run, a, bw, seed):
    want_acc, want_er = matmul_fp16_int(a, bw)
    mismatch = first_mismatch(run.acc, want_acc, a, bw)
    assert mismatch is None, f"{mismatch} (seed {seed})"
    assert torch.equal(run.exponent, want_er)
    assert torch.equal(run.out.view(torch.int32), matmul_fp16(a, bw).view(torch.int32))


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_fp16_random_with_stalls(simulator, seed):
    gen = torch.Generator().manual_seed(seed)
    for name in FP16["families"]:
        a = random_fp16(5, 96, gen)                 # subnormal, wide-spread, heavy and Gaussian tokens
        a[0, :2] = torch.tensor([65504.0, -0.0])
        bw = _weights(name, 5, 96, gen)
        _check(run_pe_array_detailed(FP16, a, bw, simulator, stall=0.3, seed=seed), a, bw, seed)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_mixbit_sim_self_check_of_an_fp16_build(simulator, seed):
    build, params = build_design("pe_array", FP16, simulator)
    assert run_regression(build, "sim.tb_pe_array", params, seed=seed, testcase="pe_array_self_check") == 1


def test_both_builds_take_int8_and_fp16_jobs_and_survive_a_reset(seed):
    params = {**FP16, "activations": "both"}
    config = get_design("pe_array").config(get_design("pe_array").resolve(params))
    gen = torch.Generator().manual_seed(seed)
    a_q, bw = random_case(config, "int8", gen)
    a = random_fp16(a_q.shape[0], a_q.shape[1], gen)
    _check(run_pe_array_detailed(params, a, bw, "verilator", stall=0.3, seed=seed, reset_after=37), a, bw, seed)
    acc, _ = run_pe_array(params, a_q, bw, "verilator")
    assert first_mismatch(acc, matmul_int(a_q, bw), a_q, bw) is None


MAC = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 64,
       "families": ("fp4", "int6"), "activations": "fp16"}


@pytest.mark.parametrize("simulator, multiplier", [("verilator", "dsp"), ("icarus", "lut")])
def test_fp16_mac_baseline_is_bit_exact_with_stalls(simulator, multiplier, seed):
    # The paper's comparison (`pe_array_parallel -p activations=fp16`): FP32 accumulators bit for
    # bit against golden.fp16_mac, with stalls on every stream; each simulator one multiplier
    # (tests/test_fp16_mac_array.py runs both under Amaranth's simulator).
    params = {**MAC, "multiplier": multiplier}
    gen = torch.Generator().manual_seed(seed)
    for name in MAC["families"]:
        a = random_fp16(5, 64, gen)
        a[0, :3] = torch.tensor([65504.0, -65504.0, -0.0])
        bw = _weights(name, 3, 64, gen)
        run = run_pe_array_detailed(params, a, bw, simulator, stall=0.3, seed=seed, design="pe_array_parallel")
        assert run.exponent is None
        want = matmul_fp16_mac_acc(a, bw, MAC["lanes"])
        mismatch = first_mismatch(fp32_bits(run.acc), fp32_bits(want), a, bw)
        assert mismatch is None, f"{name}: {mismatch} (seed {seed})"
        assert torch.equal(fp32_bits(run.out), fp32_bits(matmul_fp16_mac(a, bw, MAC["lanes"])))


def test_mixbit_sim_self_check_of_the_fp16_mac_baseline(seed):
    build, params = build_design("pe_array_parallel", {**MAC, "multiplier": "dsp"}, "verilator")
    assert run_regression(build, "sim.tb_pe_array", params, seed=seed, testcase="pe_array_self_check",
                          env={"MIXBIT_DESIGN": "pe_array_parallel"}) == 1
