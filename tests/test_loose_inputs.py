"""Loose inputs are refused with an error naming the argument and its value (issue 22, item 3):
the VidKV golden model, the simulation API's options, the command line; and the simulation
API and ``mixbit`` stay quiet, and stop cleanly on Ctrl-C."""

import glob
import math
import os
import re
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

import sim.kv_dequant
import sim.kv_quant
import sim.pe_array
import sim.runner
from golden.bitmod import quantize
from golden.vidkv import decode_2bit
from golden.vidkv_cache import QuantizedKVCache
from golden.vidkv_groups import quantize_keys, quantize_values
from golden.vidkv_pack import unpack
from golden.vidkv_stream import pack_tokens
from mixbit.cli import main
from sim.runner import SimulationFailed, build_design, run_regression

PE_SMALL = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 128}   # test_cocotb_pe_array
KV_SMALL = {"d": 32, "group_tokens": 16, "lanes": 8, "ternary_layout": "b3"}                       # test_cocotb_kv_*


def _groups(g=2, tg=16, d=32):
    return torch.randint(-1000, 1000, (g, tg, d), generator=torch.Generator().manual_seed(1))


# ---- golden ---------------------------------------------------------------------------------

@pytest.mark.parametrize("quantize_groups", [quantize_keys, quantize_values])
@pytest.mark.parametrize("x,kwargs,error,message", [
    (_groups().float(), {}, ValueError, "x must be an integer tensor .* not dtype torch.float32"),
    (torch.full((1, 16, 32), 40000), {}, ValueError, r"x\[0, 0, 0\] = 40000 is outside the 16-bit range"),
    (torch.full((1, 16, 32), -200), {"in_bits": 8}, ValueError, r"x\[0, 0, 0\] = -200 is outside the 8-bit range"),
    (_groups()[0], {}, ValueError, r"x must be groups \[G, Tg, D\], not shape \[16, 32\]"),
    (_groups().tolist(), {}, TypeError, "x must be a torch.Tensor, not list"),
])
def test_quantize_keys_and_values_check_their_groups(quantize_groups, x, kwargs, error, message):
    with pytest.raises(error, match=message):
        quantize_groups(x, **kwargs)


def test_quantize_keys_and_values_take_in_bits():
    x = torch.full((1, 16, 32), -128)
    assert quantize_keys(x, 0.5, in_bits=8).mn.eq(-128).all()
    assert quantize_values(x, "2bit", in_bits=8).mn.eq(-128).all()


@pytest.mark.parametrize("frac_bits", [9, -1, 4.0])
def test_cache_rejects_frac_bits_at_construction(frac_bits):
    with pytest.raises(ValueError, match=re.escape(f"frac_bits must be an integer in 0..8, not {frac_bits!r}")):
        QuantizedKVCache("key", d=32, group_tokens=16, frac_bits=frac_bits)


@pytest.mark.parametrize("q,error,message", [
    (torch.tensor([[0, 4]]), ValueError, r"q\[0, 1\] = 4 is not a 2-bit code \(0..3\)"),
    (torch.tensor([[-1, 0]]), ValueError, r"q\[0, 0\] = -1 is not a 2-bit code \(0..3\)"),
    (torch.tensor([[0.0, 1.0]]), ValueError, "q must be an integer tensor .* not dtype torch.float32"),
    ([[0, 1]], TypeError, "q must be a torch.Tensor, not list"),
])
def test_decode_2bit_rejects_what_is_not_a_2bit_code(q, error, message):
    mn, r = torch.tensor([0, 5]), torch.tensor([3, 6])
    with pytest.raises(error, match=message):
        decode_2bit(q, mn, r)


def test_unpack_names_what_it_got():
    packed = pack_tokens(torch.zeros((16, 32), dtype=torch.int64), "key", group_tokens=16)
    assert unpack(packed["key"]).mask.shape == (1, 32)
    with pytest.raises(TypeError, match=r"p must be a PackedKV \(from pack_keys or pack_values\), not dict"):
        unpack(packed)
    with pytest.raises(TypeError, match="p must be a PackedKV .*, not KeyGroups"):
        unpack(quantize_keys(_groups()))


# ---- the simulation API's options, checked before anything is built -----------------------------

@pytest.fixture
def nothing_built(monkeypatch):
    """Make every way to generate Verilog or build a simulator fail loudly (not with ValueError)."""
    def refuse(*args, **kwargs):
        raise AssertionError("built something before checking the options")

    for module in (sim.runner, sim.pe_array, sim.kv_quant, sim.kv_dequant):
        monkeypatch.setattr(module, "build_design", refuse)
    monkeypatch.setattr(sim.runner, "generate", refuse)
    monkeypatch.setattr(sim.runner, "build_sources", refuse)
    monkeypatch.setattr(sim.runner, "prepare_simulator", refuse)


def _pe_run(**options):
    a_q = torch.zeros((1, 64), dtype=torch.int8)
    bw = quantize(torch.randn(3, 64), "int4", group_size=32, scale_bits=4)
    sim.pe_array.run_pe_array_detailed(PE_SMALL, a_q, bw, "icarus", **options)


def _kv_quant_run(**options):
    sim.kv_quant.run_kv_quantizer_detailed(KV_SMALL, torch.zeros((16, 32), dtype=torch.int64), "key",
                                           simulator="icarus", **options)


def _kv_dequant_run(**options):
    packed = pack_tokens(torch.zeros((16, 32), dtype=torch.int64), "key", group_tokens=16)
    sim.kv_dequant.run_kv_dequantizer_detailed(KV_SMALL, packed, simulator="icarus", **options)


BAD_STALLS = [math.nan, 1.0, -0.1, False, "0.1"]


@pytest.mark.parametrize("run", [_pe_run, _kv_quant_run, _kv_dequant_run])
@pytest.mark.parametrize("stall", BAD_STALLS, ids=repr)
def test_stall_is_checked_before_building(nothing_built, run, stall):
    with pytest.raises(ValueError, match=re.escape(f"stall must be a real number in [0, 1), not {stall!r}")):
        run(stall=stall)


@pytest.mark.parametrize("reset_after", [0, True, 1.5], ids=repr)
def test_reset_after_is_checked_before_building(nothing_built, reset_after):
    with pytest.raises(ValueError, match=re.escape(f"reset_after must be None or an integer >= 1, "
                                                   f"not {reset_after!r}")):
        _pe_run(reset_after=reset_after)


# ---- the command line ---------------------------------------------------------------------------

def test_version():
    result = subprocess.run(["mixbit", "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mixbit {metadata.version('mixbit')}\n" and result.stderr == ""


@pytest.mark.parametrize("value", ["08", "-09"])
def test_a_malformed_integer_parameter_is_named(tmp_path, capsys, value):
    assert main(["generate", "pe_array", "-p", f"rows={value}", "-o", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"mixbit: error: parameter rows must be an integer, not {value!r}\n"
    assert not any(tmp_path.iterdir())


def test_a_missing_simulator_is_found_before_any_verilog(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIXBIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))              # no iverilog, no vvp
    assert main(["sim", "decoder", "--simulator", "icarus", "-p", "families=fp4"]) == 2
    assert capsys.readouterr().err.startswith("mixbit: error: simulator 'icarus' not found: iverilog is not on PATH")
    assert not list(cache.rglob("*.v")) and not (cache / "verilog").exists()


def _session_cpu(sid: int) -> dict[str, float]:
    """``{"pid name": CPU seconds so far}`` of every live process of session ``sid`` (Linux /proc)."""
    found = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as file:
                text = file.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        state, session, utime, stime = fields[0], fields[3], fields[11], fields[12]
        if int(session) == sid and state != "Z":
            found[f"{text.split()[0]} {name}"] = (int(utime) + int(stime)) / tick
    return found


def _session(sid: int) -> list[str]:
    """``pid name`` of every live process of session ``sid`` (Linux /proc)."""
    return list(_session_cpu(sid))


def _work_after(sid: int, limit_s: float = 30) -> dict[str, float]:
    """Wait until session ``sid`` has no live process (AssertionError after ``limit_s``);
    the CPU seconds each process that was still there used meanwhile.

    A tool that Ctrl-C stopped may take a moment to go on a busy machine (make deletes
    its half-built targets, then waits for its compilers), but it does no more work; one
    left running goes on using the CPU. Counting CPU time instead of waiting a fixed
    time tells them apart however slow the machine is."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    deadline = time.monotonic() + limit_s
    while live := _session_cpu(sid):
        assert time.monotonic() < deadline, f"still running {limit_s} s after mixbit ended: {sorted(live)}"
        for process, cpu in live.items():
            first.setdefault(process, cpu)
            last[process] = cpu
        time.sleep(0.02)
    return {process: round(last[process] - first[process], 2) for process in first}


#: Runs the command in argv[1:] (in the same process) with SIGINT's default action.
_WITH_SIGINT = ("import os, signal, sys\n"
                "signal.signal(signal.SIGINT, signal.SIG_DFL)\nos.execvp(sys.argv[1], sys.argv[1:])")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_ends_with_one_line_status_130_and_nothing_left_running(tmp_path):
    # A cold build (its own cache) takes long enough to be interrupted while verilator runs.
    env = {**os.environ, "MIXBIT_CACHE_DIR": str(tmp_path / "cache")}
    # mixbit gets SIGINT as a terminal's foreground job has it: a test run started in the
    # background (`pytest ... &` in a script) ignores SIGINT, and mixbit would inherit that.
    command = ["mixbit", "sim", "decoder", "-p", "families=fp4", "--simulator", "verilator"]
    process = subprocess.Popen([sys.executable, "-c", _WITH_SIGINT, *command],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        # Until a compiler of Verilator's C++ build runs (the deadline only ends a hang:
        # the build starts after mixbit's imports and the Verilog, slow on a busy machine).
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline and \
                not any(name in line for line in _session(process.pid) for name in (" c++", " cc1plus")):
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        os.killpg(process.pid, signal.SIGINT)   # what Ctrl-C in a terminal does: to mixbit and its tools
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert err == "mixbit: interrupted\n"
    # Nothing left running: what was still there when mixbit ended ends without working on.
    work = _work_after(process.pid)
    assert sum(work.values()) < 0.5, work


# ---- quiet simulations, with their log kept ---------------------------------------------------

def test_sim_runs_are_quiet_and_keep_their_log(capfd):
    a_q = torch.randint(-128, 128, (1, 64), dtype=torch.int8, generator=torch.Generator().manual_seed(3))
    bw = quantize(torch.randn(3, 64, generator=torch.Generator().manual_seed(4)), "int4", group_size=32,
                  scale_bits=4)
    build, _ = build_design("pe_array", PE_SMALL, "icarus")    # built (and any build output) before capfd looks
    capfd.readouterr()
    run = sim.pe_array.run_pe_array_detailed(PE_SMALL, a_q, bw, "icarus", seed=12345)
    captured = capfd.readouterr()
    assert run.cycles > 0
    assert "pe_array_run" not in captured.out + captured.err and len(captured.out + captured.err) < 200, captured
    log = build.directory / "runs" / f"{os.getpid()}-12345" / "sim.log"
    assert "pe_array_run" in log.read_text()


def test_a_failed_run_names_its_log(capfd):
    build, _ = build_design("decoder", {"families": ("fp4", "int8")}, "icarus")    # as test_cocotb_decoder
    capfd.readouterr()
    with pytest.raises(SimulationFailed, match=r"decoder_exhaustive: .* \(seed 7\) \(log .*sim\.log\)") as failed:
        run_regression(build, "sim.tb_decoder", {"families": ["fp4", "fp3", "int4", "int3", "int6", "int8"]},
                       seed=7, testcase="decoder_exhaustive")
    captured = capfd.readouterr()
    assert "decoder_exhaustive" not in captured.out + captured.err, captured
    log = Path(re.search(r"\(log (.*sim\.log)\)", str(failed.value)).group(1))
    assert "decoder_exhaustive" in log.read_text()


def test_mixbit_sim_is_quiet_unless_verbose():
    command = ["mixbit", "sim", "decoder", "--simulator", "icarus", "-p", "families=fp4,int8", "--seed", "3"]
    quiet = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "decoder: 2 cocotb tests passed on icarus (seed 3)\n" and quiet.stderr == ""
    verbose = subprocess.run([*command, "-v"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert verbose.returncode == 0, verbose.stderr
    assert "decoder_exhaustive" in verbose.stdout and verbose.stdout.endswith(quiet.stdout)
