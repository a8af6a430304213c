"""The generated PE-array Verilog on Verilator and Icarus, bit for bit against golden.matmul_int."""

import subprocess

import pytest
import torch

from arch.bitmod import FAMILIES, FAMILY_IDS, family
from arch.pe_array_config import PeArrayConfig
from gateware.designs import get_design
from gateware.generate import to_verilog
from golden.bitmod import BitmodWeights, matmul_int
from host.pe_array_jobs import first_mismatch, random_case
from sim.pe_array import run_pe_array, run_pe_array_detailed
from sim.runner import LINT_WAIVERS
from sim.tools import SIMULATORS, prepare_simulator

SMALL = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 128}
SHAPES = [
    SMALL,
    {"rows": 3, "cols": 1, "lanes": 8, "group_size": 64, "scale_bits": 8, "max_k": 256},
    {"rows": 1, "cols": 3, "lanes": 2, "group_size": 32, "scale_bits": 12, "max_k": 96,
     "families": ("fp3", "int4", "int6")},
    # taller than arch.pe_array_config.ROWS_PER_COPY: row groups with their own bus copies
    {"rows": 6, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 64,
     "families": ("fp4", "int8")},
]


def _check(got, a_q, bw, seed):
    mismatch = first_mismatch(got, matmul_int(a_q, bw), a_q, bw)
    assert mismatch is None, f"{mismatch} (seed {seed})"


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_every_family_random_with_stalls(simulator, shape, seed):
    params = SHAPES[shape]
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params})
    for name in config.families:
        family_seed = seed + config.families.index(name)
        a_q, bw = random_case(config, name, torch.Generator().manual_seed(family_seed))
        run = run_pe_array_detailed(params, a_q, bw, simulator, stall=0.3, seed=family_seed)
        _check(run.acc, a_q, bw, family_seed)


def test_a_family_not_built_takes_the_whole_stream_and_answers_zeros(seed):
    # SHAPES[3] is built with fp4 and int8 only (its Verilator build is shared with the test above).
    # The stream is packed as fp4, the family input says int4: the testbench sends every beat of
    # every job (with stalls), takes each job's results and then expects the output idle.
    params = SHAPES[3]
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params})
    a_q, bw = random_case(config, "fp4", torch.Generator().manual_seed(seed))
    run = run_pe_array_detailed(params, a_q, bw, "verilator", stall=0.3, seed=seed, family_id=FAMILY_IDS["int4"])
    assert not run.acc.any(), run.acc
    assert len(run.job_cycles) == -(-a_q.shape[0] // config.rows)


def _extreme_weights(name, n, k, group_size, scale_bits, generator):
    """Weights at the corners: the largest |v|, sq = 2**S - 1, both signs, ER/EA, zero groups."""
    fam = family(name)
    ng = k // group_size
    if fam.kind == "fp":
        codes = torch.full((n, k), fam.special_code, dtype=torch.uint8)          # +16 / +6 with dt = 1
        codes[:, 1::3] = (1 << fam.bits) - 1                                       # -12 / -4
    else:
        codes = torch.full((n, k), 1 << (fam.bits - 1), dtype=torch.uint8)       # -2**(bits-1)
        codes[:, 1::3] = (1 << (fam.bits - 1)) - 1                                 # the largest positive
    dt = torch.randint(0, 2, (n, ng), generator=generator, dtype=torch.uint8) if fam.kind == "fp" else \
        torch.zeros((n, ng), dtype=torch.uint8)
    dt[:, 0] = 1 if fam.kind == "fp" else 0
    sg = torch.randint(0, 2, (n, ng), generator=generator, dtype=torch.uint8) if fam.kind == "fp" else \
        torch.zeros((n, ng), dtype=torch.uint8)
    sq = torch.full((n, ng), (1 << scale_bits) - 1, dtype=torch.int32)
    sq[0, -1] = 0                                                                   # an all-zero group
    codes[0, (ng - 1) * group_size:] = 0
    return BitmodWeights(codes, dt, sg, sq, torch.ones(n), name, group_size, scale_bits)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_extremes_at_max_k(simulator):
    params = SMALL
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params})
    generator = torch.Generator().manual_seed(11)
    for name in FAMILIES:
        bw = _extreme_weights(name, 3, config.max_k, config.group_size, config.scale_bits, generator)
        a_q = torch.full((3, config.max_k), -128, dtype=torch.int8)
        a_q[1] = 127
        a_q[2, ::2] = 127
        a_q[2, 1::4] = 0
        run = run_pe_array_detailed(params, a_q, bw, simulator, stall=0.2, seed=11)
        _check(run.acc, a_q, bw, 11)
        assert run.acc.abs().max() > 0


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_reset_in_mid_run_loses_nothing_afterwards(simulator, seed):
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **SMALL})
    a_q, bw = random_case(config, "fp4", torch.Generator().manual_seed(seed))
    for reset_after in (5, 60, 150):
        run = run_pe_array_detailed(SMALL, a_q, bw, simulator, stall=0.3, seed=seed, reset_after=reset_after)
        _check(run.acc, a_q, bw, seed)


@pytest.mark.parametrize("name", ["fp4", "int8"])
def test_unstalled_long_gemv_sustains_90_percent_of_peak_with_loads(name):
    """One job of R tokens over 16 column tiles (N = 16C), K = 2048: every cycle counts,
    the activation loads too."""
    params = {"rows": 2, "cols": 2, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 2048}
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params})
    generator = torch.Generator().manual_seed(2)
    tiles, k = 16, 2048
    a_q = torch.randint(-128, 128, (config.rows, k), generator=generator, dtype=torch.int8)
    from golden.bitmod import quantize

    bw = quantize(torch.randn((tiles * config.cols, k), generator=generator), name)
    run = run_pe_array_detailed(params, a_q, bw, "verilator", stall=0.0, seed=2)
    _check(run.acc, a_q, bw, 2)
    busy = tiles * (k // config.group_size) * config.cycles_per_group(name)     # every PE busy
    assert busy / run.cycles >= 0.9, f"{name}: {busy} busy cycles took {run.cycles} ({run.load_cycles} loading)"


def test_run_pe_array_returns_acc_and_cycles():
    a_q = torch.randint(-128, 128, (1, 64), dtype=torch.int8)
    from golden.bitmod import quantize

    bw = quantize(torch.randn(3, 64), "int4", group_size=32, scale_bits=4)
    acc, cycles = run_pe_array(SMALL, a_q, bw, "icarus")
    assert torch.equal(acc, matmul_int(a_q, bw)) and acc.dtype == torch.int64
    assert cycles > 64 // 4 * 2


@pytest.mark.parametrize("change,error,message", [
    ({"a_q": torch.zeros((1, 64), dtype=torch.int32)}, ValueError, "a must be a 2-D int8 or float16 tensor"),
    ({"a_q": torch.zeros((1, 32), dtype=torch.int8)}, ValueError, "a has K = 32 columns but the weights have K = 64"),
    ({"params": {**SMALL, "families": "fp4"}}, ValueError, "bw.family 'int4' is not built into this array"),
    ({"params": {**SMALL, "group_size": 64}}, ValueError, "bw has group_size=32, scale_bits=4"),
    ({"params": {**SMALL, "max_k": 32}}, ValueError, "K = 64 exceeds the array's max_k = 32"),
    ({"params": {**SMALL, "lanes": 3}}, ValueError, "lanes must be a power of two"),
    ({"params": {**SMALL, "depth": 3}}, ValueError, "unknown parameter 'depth' for design pe_array"),
    ({"bw": "weights"}, TypeError, "bw must be golden.bitmod.BitmodWeights, not str"),
])
def test_bad_inputs_are_named(change, error, message):
    from golden.bitmod import quantize

    args = {"params": SMALL, "a_q": torch.zeros((1, 64), dtype=torch.int8),
            "bw": quantize(torch.randn(3, 64), "int4", group_size=32, scale_bits=4)}
    args.update(change)
    with pytest.raises(error, match=message):
        run_pe_array(args["params"], args["a_q"], args["bw"], "icarus")


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
def test_parallel_baseline_same_streams(simulator, multiplier, seed):
    params = {"rows": 2, "cols": 2, "lanes": 8, "group_size": 64, "scale_bits": 6, "max_k": 256,
              "multiplier": multiplier}
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params, "families": ("int4",)})
    a_q, bw = random_case(config, "int4", torch.Generator().manual_seed(seed))
    run = run_pe_array_detailed(params, a_q, bw, simulator, stall=0.3, seed=seed, design="pe_array_parallel")
    _check(run.acc, a_q, bw, seed)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
def test_family_parallel_baseline_same_streams(simulator, multiplier, seed):
    # The all-family int8 x int8 baseline (`-p families=...`, all six built): each simulator
    # runs every family, half of them through each multiplier (tests/test_pe_array.py runs
    # all six through both under Amaranth's simulator).
    params = {"rows": 2, "cols": 2, "lanes": 8, "group_size": 64, "scale_bits": 6, "max_k": 128,
              "families": ",".join(FAMILIES), "multiplier": multiplier}
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params})
    for name in {"lut": ("fp4", "int3", "int8"), "dsp": ("fp3", "int4", "int6")}[multiplier]:
        family_seed = seed + FAMILIES.index(name)
        a_q, bw = random_case(config, name, torch.Generator().manual_seed(family_seed))
        run = run_pe_array_detailed(params, a_q, bw, simulator, stall=0.3, seed=family_seed,
                                    design="pe_array_parallel")
        _check(run.acc, a_q, bw, family_seed)


@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
def test_family_parallel_baseline_verilog_passes_verilator_lint(tmp_path, multiplier):
    design = get_design("pe_array_parallel")
    params = design.resolve({"rows": 2, "families": ",".join(FAMILIES), "multiplier": multiplier})
    verilog = tmp_path / "mixbit_pe_array_parallel.v"
    verilog.write_text(to_verilog(design.build(params), design.top))
    prepare_simulator("verilator")
    result = subprocess.run(["verilator", "--lint-only", "-Wall", str(LINT_WAIVERS), str(verilog)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
