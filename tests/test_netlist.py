"""Post-synthesis netlist simulation: yosys's netlists of the decoder, the PE array (int8 and FP16
jobs) and the KV quantize engine compute what the RTL and golden compute. The PE array's and the
KV engine's netlists are the ones nextpnr places (on the ECP5, block RAMs given their output
registers by synth.ecp5_bram), with the project's model of the DP16KD block RAM (synth/dp16kd_sim.v)."""

import json

import pytest

from gateware.designs import get_design
from sim.runner import build_design, run_regression
from synth.flow import placed_netlist, synthesize_core
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


def _netlist_build(design_name, params, target, simulator, out):
    """The netlist nextpnr places (after the target's netlist pass: on the ECP5, block RAMs
    given their output registers), its block RAMs and how many of them took the register."""
    design = get_design(design_name)
    _, cells, _ = synthesize_core(design_name, params, target, out)
    assert cells, "yosys produced no cells"
    netlist, absorbed = placed_netlist(out / f"{design.top}.{target}.yosys.json", target)
    return build_netlist(netlist, design.top, target, simulator), cells.get("DP16KD", 0), absorbed


@pytest.mark.parametrize("target,simulator", [("ice40-up5k", "icarus"), ("ecp5-85f", "verilator")])
def test_pe_array_netlist_computes_the_golden_result(tmp_path, target, simulator, seed):
    import torch

    from arch.pe_array_config import PeArrayConfig
    from golden.bitmod import matmul_fp16_int, matmul_int
    from host.pe_array_jobs import first_mismatch, random_case, random_fp16
    from sim.pe_array import run_pe_array_detailed

    # activations=both: the netlist runs int8 and FP16 jobs. max_k 1024 puts the ECP5's
    # activation buffers in block RAMs, all with their output registers.
    params = get_design("pe_array").resolve({
        "rows": 2, "cols": 1, "lanes": 4, "group_size": 32, "scale_bits": 4, "families": ("fp4", "int8"),
        "activations": "both", "max_k": 1024 if target == "ecp5-85f" else 64})
    build, blocks, absorbed = _netlist_build("pe_array", params, target, simulator, tmp_path)
    if target == "ecp5-85f":
        assert blocks == absorbed > 0, f"{blocks} block RAMs, {absorbed} with output registers"
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


def test_kv_quant_netlist_on_the_ecp5_computes_the_golden_result(tmp_path, seed):
    """The placed ECP5 netlist of a KV quantize engine with block RAMs both with and
    without their output registers: keys and values with stalls, bit for bit."""
    from arch.kv_config import KvConfig
    from golden.vidkv_stream import pack_tokens
    from host.kv_beats import corner_tokens
    from sim.kv_quant import first_difference, run_kv_quantizer_detailed

    params = get_design("kv_quant").resolve({"d": 64, "group_tokens": 16, "lanes": 4})
    build, blocks, absorbed = _netlist_build("kv_quant", params, "ecp5-85f", "verilator", tmp_path)
    assert blocks > absorbed > 0, f"{blocks} block RAMs, {absorbed} with output registers"
    config = KvConfig.from_params(params)
    x = corner_tokens(config, 2 * config.group_tokens + 3, seed=seed)
    for kind in ("key", "value"):
        run = run_kv_quantizer_detailed(params, x, kind, simulator="verilator", stall=0.3, seed=seed, build=build)
        want = pack_tokens(x, kind, f=config.f, stp=False, **config.golden_options("ternary"))
        difference = first_difference(run.packed, want, x)
        assert difference is None, f"ECP5 netlist, {kind}: {difference} (seed {seed})"
