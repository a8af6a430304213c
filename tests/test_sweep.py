"""mixbit sweep: the grid, the dask engine (cached, resumable, failures recorded) and the reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import cloudpickle
import pytest

from mixbit.cli import main
from synth import sweep
from synth.flow import lut4_equivalent, synthesize
from synth.sweep_report import pareto_front, write_all

cloudpickle.register_pickle_by_value(sys.modules[__name__])      # the workers run this module's tasks

DECODER_GRID = {"families": "fp4,int4;int8"}


def test_grid_is_the_cross_product_of_every_axis():
    points = sweep.grid("decoder", "ice40-up5k", DECODER_GRID, seeds=[1, 2], nextpnr_opts=["", "--router router2"])
    assert len(points) == 8 and len(set(points)) == 8
    assert {p.param_dict["families"] for p in points} == {("fp4", "int4"), ("int8",)}
    assert points[0].swept == ("families",) and "families=fp4,int4 seed=1" in points[0].label()
    assert len({sweep.point_key(p) for p in points}) == 8


@pytest.mark.parametrize("given,message", [
    ({"rows": "1,2"}, "unknown parameter 'rows' for design decoder"),
    ({"families": "fp4;fp5"}, "fp5"),
    ({"families": "fp4;"}, "empty value"),
])
def test_bad_grids_are_refused_before_anything_runs(given, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        sweep.grid("decoder", "ice40-up5k", given)
    args = [a for name, value in given.items() for a in ("-p", f"{name}={value}")]
    assert main(["sweep", "decoder", "--target", "ice40-up5k", *args, "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixbit: error:") and not (tmp_path / "s").exists()


def test_out_of_range_value_anywhere_in_the_grid_is_refused(tmp_path, capsys):
    code = main(["sweep", "pe_array", "-p", "rows=2,9999", "-p", "lanes=4,8", "-o", str(tmp_path / "s")])
    assert code == 2 and "rows must be an integer in" in capsys.readouterr().err


#: `mixbit` (mixbit.cli.run) that also prints how long its main() took (its last line), after the imports:
#: a busy machine's slow start of Python, torch and dask is not the connect timeout.
_TIMED_MIXBIT = ("import sys, time\nimport distributed\nfrom mixbit.cli import main\n"
                 "start = time.monotonic()\nstatus = main(sys.argv[1:])\n"
                 "print(f'{time.monotonic() - start:.2f}')\nsys.exit(status)")


def test_an_unreachable_scheduler_is_one_line_within_a_timeout(tmp_path):
    result = subprocess.run([sys.executable, "-c", _TIMED_MIXBIT, "sweep", "decoder", "--target", "ice40-up5k",
                             "--scheduler", "tcp://127.0.0.1:9", "-o", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    # docs/sweeps.md: one line and status 2 after 10 s (dask's own connect timeout is 30 s).
    assert result.returncode == 2 and float(result.stdout.split()[-1]) < 25, result.stdout
    assert result.stderr.startswith("mixbit: error: cannot reach the dask scheduler tcp://127.0.0.1:9 within 10 s")
    assert len(result.stderr.strip().splitlines()) == 1


def test_pareto_front():
    assert pareto_front([(10, 5), (5, 5), (20, 9), (15, 2), (5, 1)]) == [(5, 5), (20, 9)]


def _killing_task(point, out, timeout_s):
    """The first time any point runs, its worker dies mid-point (as a lost machine would)."""
    marker = Path(out) / "killed"
    if not marker.exists():
        marker.write_text(sweep.point_key(point))
        os._exit(1)
    return sweep.run_point(point, out, timeout_s)


def _no_synthesis(point, out, timeout_s):
    raise AssertionError(f"a finished point was run again: {point.label()}")


@pytest.fixture(scope="module")
def client():
    with sweep.client_for(None, 2) as dask_client:
        yield dask_client


def test_decoder_sweep_equals_mixbit_synth_survives_a_killed_worker_and_resumes(client, tmp_path):
    points = sweep.grid("decoder", "ice40-up5k", DECODER_GRID, seeds=[1, 2])
    results = sweep.run(points, tmp_path, client=client, task=_killing_task, progress=None)
    assert (tmp_path / "killed").exists(), "no worker was killed"
    assert [r["status"] for r in results.values()] == ["met"] * 4
    for point, result in results.items():
        report = synthesize("decoder", point.param_dict, "ice40-up5k", tmp_path / f"alone-{result['key']}",
                            seed=point.seed)
        assert (result["lut4"], result["ff"], result["fmax_mhz"]) == \
            (lut4_equivalent(report), report["core"]["ff"], report["timing"]["fmax_mhz"]), point.label()
    again = sweep.run(points, tmp_path, client=client, task=_no_synthesis, progress=None)
    assert {p: json.dumps(r, sort_keys=True) for p, r in again.items()} == \
        {p: json.dumps(r, sort_keys=True) for p, r in results.items()}
    write_all(results, tmp_path)
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 5
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("pareto.png", "fmax.png", "seeds.png"))


def test_a_point_that_does_not_fit_is_recorded_with_its_reason(client, tmp_path):
    # 35 block RAMs where the UP5K has 30 (docs/performance.md); the sweep goes on.
    points = sweep.grid("kv_quant", "ice40-up5k", {"d": "64", "group_tokens": "16", "lanes": "4", "in_bits": "8"})
    (result,) = sweep.run(points, tmp_path, client=client, progress=None).values()
    assert result["status"] == "failed" and "no BELs remaining" in result["reason"], result
    recorded = json.loads((tmp_path / "points" / result["key"] / "result.json").read_text())
    assert recorded["status"] == "failed"


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS's pick, not a guess that another run may share)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _wait_until_listening(port: int, process: subprocess.Popen, limit_s: float = 300) -> None:
    """Return once 127.0.0.1:``port`` takes connections; AssertionError if ``process`` (the
    server) ends first or after ``limit_s`` (only a hang takes that long)."""
    deadline = time.monotonic() + limit_s
    while True:
        assert process.poll() is None, f"the server for port {port} ended with status {process.returncode}"
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
            return
        assert time.monotonic() < deadline, f"nothing listens on port {port} after {limit_s} s"
        time.sleep(0.2)


def test_a_sweep_runs_on_a_cluster_started_as_docs_sweeps_says(tmp_path):
    """`dask scheduler` and `dask worker` as separate processes (as on other machines),
    then `mixbit sweep --scheduler`."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(["dask", "scheduler", "--port", str(port), "--dashboard-address", ":0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen(["dask", "worker", address, "--nworkers", "1", "--nthreads", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        # mixbit gives a scheduler 10 s to answer; one that is still starting on a busy
        # machine has not failed, so the sweep starts once it listens.
        _wait_until_listening(port, scheduler)
        result = subprocess.run(["mixbit", "sweep", "decoder", "--target", "ice40-up5k", "-p", "families=int8",
                                 "--scheduler", address, "-o", str(tmp_path / "s")],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "sweep: 1 met, 0 timing not met, 0 failed" in result.stdout
        assert len((tmp_path / "s" / "sweep.csv").read_text().splitlines()) == 2
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=30)
