"""Post-synthesis netlist simulation: yosys's netlists of the decoder and the PE array (int8 and FP16
jobs) compute what the RTL and golden compute."""

import json

import pytest

from gateware.designs import get_design
from sim.runner import build_design, run_regression
from synth.flow import synthesize_core
from synth.netlist import build_netlist


def _dump(build, params, seed, path):
    run_regression(build, "sim.tb_decoder", params, seed=seed, testcase="decoder_exhaustive",
                   env={"MIXBIT_DUMP": str(path)})
    return json.loads(path.read_text())


@pytest.mark.parametrize("target,simulator", [
    ("ice40-up5k", "icarus"), ("ice40-up5k", "verilator"), ("ecp5-85f", "verilator"),
])
def test_netlist_matches_rtl(tmp_path, target, simulator, seed):
    design = get_design("decoder")
    params = design.resolve({})
    rtl_build, _ = build_design("decoder", params, simulator)
    rtl = _dump(rtl_build, params, seed, tmp_path / "rtl.json")

    _, cells, netlist = synthesize_core("decoder", params, target, tmp_path)
    assert cells, "yosys produced no cells"
    gate = _dump(build_netlist(netlist, design.top, target, simulator), params, seed, tmp_path / "gate.json")

    assert gate["vectors"] == rtl["vectors"]
    assert len(gate["words"]) == len(rtl["words"])
    for index, (want, got) in enumerate(zip(rtl["words"], gate["words"], strict=True)):
        assert want == got, (
            f"netlist differs from RTL at item {index}: vector {rtl['vectors'][index]} "
            f"RTL 0x{want:x} netlist 0x{got:x} (seed {seed})"
        )


def test_ecp5_netlist_on_icarus_is_refused(tmp_path):
    with pytest.raises(ValueError, match="simulator for ecp5 netlists must be one of verilator, not 'icarus'"):
        build_netlist(tmp_path / "x.v", "top", "ecp5-85f", "icarus")


@pytest.mark.parametrize("target,simulator", [("ice40-up5k", "icarus"), ("ecp5-85f", "verilator")])
def test_pe_array_netlist_computes_the_golden_result(tmp_path, target, simulator, seed):
    import torch

    from arch.pe_array_config import PeArrayConfig
    from golden.bitmod import matmul_fp16_int, matmul_int
    from host.pe_array_jobs import first_mismatch, random_case, random_fp16
    from sim.pe_array import run_pe_array_detailed

    # activations=both: the netlist runs int8 and FP16 jobs.
    design = get_design("pe_array")
    params = design.resolve({"rows": 2, "cols": 1, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 64,
                             "families": ("fp4", "int8"), "activations": "both"})
    _, cells, netlist = synthesize_core("pe_array", params, target, tmp_path)
    assert cells, "yosys produced no cells"
    build = build_netlist(netlist, design.top, target, simulator)
    config = PeArrayConfig.from_params(params)
    for name in config.families:
        a_q, bw = random_case(config, name, torch.Generator().manual_seed(seed))
        run = run_pe_array_detailed(params, a_q, bw, simulator, stall=0.2, seed=seed, build=build)
        mismatch = first_mismatch(run.acc, matmul_int(a_q, bw), a_q, bw)
        assert mismatch is None, f"{target} netlist: {mismatch} (seed {seed})"
        a = random_fp16(a_q.shape[0], a_q.shape[1], torch.Generator().manual_seed(seed))
        run = run_pe_array_detailed(params, a, bw, simulator, stall=0.2, seed=seed, build=build)
        acc, er = matmul_fp16_int(a, bw, config.align_bits)
        mismatch = first_mismatch(run.acc, acc, a, bw)
        assert mismatch is None and torch.equal(run.exponent, er), f"{target} netlist, FP16: {mismatch} (seed {seed})"
