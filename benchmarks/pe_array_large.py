"""The half-full ECP5 PE array: harness synthesis, router2 place and route, the worst nets.

The flow's default P&R (router1) does not finish this design, so this script runs the
flow (`mixbit sweep`'s engine, synth.sweep: one point per seed, cached under --out) with
nextpnr options ``--router router2 --tmg-ripup --detailed-timing-report`` and a stronger
timing weight in the placer, prints Fmax, the critical path and the nets whose sinks are
reached latest (grouped by name, digits folded), and writes ``large.json``. About 45
minutes a seed (19 rows on this project's two cores; ``--no-tmg-ripup`` routes in about
half that); several seeds run in parallel on --workers. Usage:

    python benchmarks/pe_array_large.py [--out build/bench_large] [--seed 1 2 3] [--workers 2] [-p rows=19 ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shlex
from pathlib import Path

from synth import sweep
from synth.flow import pnr_report_path
from synth.targets import get_target

#: 19 rows fill 54.7 % of the ECP5-85F's logic (docs/performance.md).
LARGE = {"rows": 19, "cols": 4, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 4096}
TOP = "mixbit_pe_array_harness"
#: nextpnr's HeAP placer weighs timing this much more than its defaults (10 and 2): on the
#: 24x4x8 netlist of 2026-11-30 the placed (pre-route) estimate rose from 49.3 to 55.1 MHz.
HEAP_TIMING_WEIGHT, HEAP_CRITEXP = 40, 4


def worst_nets(report: dict, threshold_ns: float, limit: int = 30) -> list[dict]:
    """Nets of nextpnr's detailed timing report with a sink reached after ``threshold_ns``
    (the arrival time from the launching clock edge, the path up to that sink included),
    grouped by name with digits folded (``pe#_#.lane#``): latest arrival, count, largest fanout.
    Nets that nextpnr times from no clock edge (``<async>``: the harness's rst pin) are left out."""
    groups = collections.defaultdict(list)
    for net in report.get("detailed_net_timings", []):
        if not net.get("event", "posedge").startswith("posedge"):
            continue                             # `<async>`: from the harness's rst pin, not timed
        delays = [e["delay"][-1] if isinstance(e["delay"], list) else e["delay"] for e in net["endpoints"]]
        if delays and max(delays) >= threshold_ns:
            groups[re.sub(r"\d+", "#", net["net"])].append((max(delays), len(delays)))
    rows = [{"nets": name, "worst_ns": round(max(d for d, _ in v), 2), "count": len(v),
             "max_fanout": max(f for _, f in v)} for name, v in groups.items()]
    return sorted(rows, key=lambda row: -row["worst_ns"])[:limit]


def summarize(point: sweep.Point, result: dict, folder: Path, args) -> dict:
    """Fmax, cells, the critical path and the worst nets of one finished point."""
    target = get_target(point.target)
    placed, cells = result["report"], result["report"]["core"]["cells"]
    report = json.loads(pnr_report_path(folder / f"{TOP}.{target.name}.yosys.json", target).read_text())
    path = [{"type": s["type"], "ns": round(s["delay"], 2), "to": s["to"]["cell"]}
            for s in report["critical_paths"][0]["path"]]
    return {"params": point.param_dict, "seed": point.seed,
            "heap": {"timing_weight": args.heap_timing_weight, "critexp": args.heap_critexp},
            "target_mhz": placed["timing"]["constraint_mhz"], "nextpnr_args": point.nextpnr_opts,
            "fmax_mhz": placed["timing"]["fmax_mhz"], "logic_used": placed["placed"]["logic_used"],
            "logic_percent": placed["placed"]["logic_percent"],
            "bram_output_registers": placed["placed"]["bram_output_registers"],
            "cells": {k: cells.get(k, 0) for k in ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD")},
            "critical_path": path, "worst_nets": worst_nets(report, 6.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench_large"))
    parser.add_argument("--seed", type=int, nargs="+", default=[1], help="nextpnr seeds, one point each")
    parser.add_argument("--workers", type=int, default=2, help="local dask workers (default 2)")
    parser.add_argument("-p", "--param", action="append", default=[], help="a pe_array parameter, NAME=VALUE")
    parser.add_argument("--heap-timing-weight", type=int, default=HEAP_TIMING_WEIGHT,
                        help=f"nextpnr --placer-heap-timingweight (default {HEAP_TIMING_WEIGHT})")
    parser.add_argument("--heap-critexp", type=int, default=HEAP_CRITEXP,
                        help=f"nextpnr --placer-heap-critexp (default {HEAP_CRITEXP})")
    parser.add_argument("--mhz", type=float, default=None,
                        help="nextpnr's target frequency (default: the target's, 125 MHz); a higher one "
                             "makes the timing-driven placer and router push harder")
    parser.add_argument("--no-tmg-ripup", action="store_true",
                        help="route without nextpnr's timing-driven rip-up (faster; on the 19x4x8 netlist "
                             "of be003b6 at seed 1: 107.43 MHz instead of 127.32)")
    parser.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                        help="a further nextpnr option, as it is (repeat it: --nextpnr-arg=--placer-heap-beta=0.8)")
    args = parser.parse_args()
    given = dict(pair.split("=", 1) for pair in args.param if "=" in pair)
    if len(given) != len(args.param):
        parser.error(f"-p expects NAME=VALUE, not {args.param!r}")
    nextpnr = ["--router", "router2", "--detailed-timing-report", "--placer-heap-timingweight",
               str(args.heap_timing_weight), "--placer-heap-critexp", str(args.heap_critexp),
               *(() if args.no_tmg_ripup else ("--tmg-ripup",)), *args.nextpnr_arg]
    points = [sweep.point("pe_array", {**LARGE, **given}, "ecp5-85f", seed=seed, mhz=args.mhz,
                          nextpnr_opts=shlex.join(nextpnr)) for seed in args.seed]
    results = sweep.run(points, args.out, workers=args.workers)
    summaries = []
    for point in points:
        result = results[point]
        if result["status"] == "failed":
            print(f"seed {point.seed}: failed: {result['reason']}")
            continue
        summary = summarize(point, result, args.out / "points" / result["key"], args)
        summaries.append(summary)
        print(f"\nseed {point.seed}: Fmax {summary['fmax_mhz']} MHz, {summary['logic_used']} TRELLIS_COMB "
              f"({summary['logic_percent']} %), cells {summary['cells']}")
        print("critical path:")
        for step in summary["critical_path"]:
            print(f"  {step['type']:9} {step['ns']:6.2f} ns  {step['to']}")
        print("\n| latest arrival (ns) | nets | largest fanout | net names |\n|---:|---:|---:|---|")
        for row in summary["worst_nets"]:
            print(f"| {row['worst_ns']} | {row['count']} | {row['max_fanout']} | `{row['nets']}` |")
    (args.out / "large.json").write_text(json.dumps(summaries, indent=2) + "\n")


if __name__ == "__main__":
    main()
