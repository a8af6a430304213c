"""The half-full ECP5 PE array: harness synthesis, router2 place and route, the worst nets.

The flow's own P&R (router1) does not finish this design, so this script runs the flow's
synthesis of the harness (``synth.flow.yosys_cells``) and its nextpnr step
(``synth.flow.place_and_route``) with ``--router router2 --tmg-ripup
--detailed-timing-report`` and a stronger timing weight in the placer, prints Fmax, the
critical path and the nets whose sinks are reached latest (grouped by name, digits
folded), and writes ``large.json``. About 45 minutes (19 rows, two runs sharing this
project's two cores; ``--no-tmg-ripup`` routes in about half that). Usage:

    python benchmarks/pe_array_large.py [--out build/bench_large] [--seed 1] [-p rows=19 ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

from gateware.designs import get_design
from gateware.generate import to_verilog
from synth.flow import place_and_route, pnr_report_path, yosys_cells
from synth.harness import Harness
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench_large"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-p", "--param", action="append", default=[], help="a pe_array parameter, NAME=VALUE")
    parser.add_argument("--skip-synth", action="store_true",
                        help="place and route the harness netlist already in --out (another seed, other options)")
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
    design, target = get_design("pe_array"), get_target("ecp5-85f")
    given = dict(pair.split("=", 1) for pair in args.param if "=" in pair)
    if len(given) != len(args.param):
        parser.error(f"-p expects NAME=VALUE, not {args.param!r}")
    params = design.resolve({**LARGE, **given})
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    verilog = out / f"{TOP}.v"
    netlist = out / f"{TOP}.{target.name}.yosys.json"
    if args.skip_synth:
        if not netlist.exists():
            parser.error(f"--skip-synth needs {netlist} (run once without it)")
        cells = json.loads((out / f"{TOP}.{target.name}.stat.json").read_text())["design"]["num_cells_by_type"]
    else:
        verilog.write_text(to_verilog(Harness(design.build(params)), TOP))
        cells = yosys_cells(verilog, TOP, target, out)
    mhz = args.mhz or target.default_mhz
    nextpnr_args = [*(() if args.no_tmg_ripup else ("--tmg-ripup",)), *args.nextpnr_arg]
    placed = place_and_route(netlist, target, mhz, args.seed, out,
                             extra_args=("--router", "router2", "--detailed-timing-report",
                                         "--placer-heap-timingweight", str(args.heap_timing_weight),
                                         "--placer-heap-critexp", str(args.heap_critexp), *nextpnr_args))
    report = json.loads(pnr_report_path(netlist, target).read_text())
    path = [{"type": s["type"], "ns": round(s["delay"], 2), "to": s["to"]["cell"]}
            for s in report["critical_paths"][0]["path"]]
    summary = {"params": params, "seed": args.seed,
               "heap": {"timing_weight": args.heap_timing_weight, "critexp": args.heap_critexp},
               "target_mhz": mhz, "nextpnr_args": nextpnr_args, "fmax_mhz": placed["timing"]["fmax_mhz"],
               "logic_used": placed["placed"]["logic_used"], "logic_percent": placed["placed"]["logic_percent"],
               "bram_output_registers": placed["placed"]["bram_output_registers"],
               "cells": {k: cells.get(k, 0) for k in ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD")},
               "critical_path": path, "worst_nets": worst_nets(report, 6.0)}
    (out / "large.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"Fmax {summary['fmax_mhz']} MHz, {summary['logic_used']} {target.logic_bel} ({summary['logic_percent']} %), "
          f"cells {summary['cells']}")
    print("\ncritical path:")
    for step in path:
        print(f"  {step['type']:9} {step['ns']:6.2f} ns  {step['to']}")
    print("\n| latest arrival (ns) | nets | largest fanout | net names |\n|---:|---:|---:|---|")
    for row in summary["worst_nets"]:
        print(f"| {row['worst_ns']} | {row['count']} | {row['max_fanout']} | `{row['nets']}` |")


if __name__ == "__main__":
    main()
