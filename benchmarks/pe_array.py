"""PE array: sustained throughput (cycle counts on Verilator) and area/Fmax against the baselines.

The syntheses run through `mixbit sweep`'s engine (synth.sweep: dask workers, cached
under <out>/pe_array). Prints Markdown tables and writes <out>/pe_array.json. Usage:

    python benchmarks/pe_array.py [--out build/bench] [--skip-synth] [--skip-throughput] [--only TEXT] [--workers 2]
                                  [--throughput-design pe_array|pe_array_parallel]

The ECP5 configuration that fills at least half of the LUTs has its own script,
benchmarks/pe_array_large.py (the flow's router does not finish it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from arch.bitmod import FAMILIES
from arch.pe_array_config import PeArrayConfig
from golden.bitmod import matmul_int, quantize
from sim.pe_array import run_pe_array_detailed
from synth import sweep
from synth.flow import lut4_equivalent

THROUGHPUT = [
    ("pe_array", {"rows": 2, "cols": 2, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 4096}),
    ("pe_array", {"rows": 2, "cols": 2, "lanes": 16, "group_size": 128, "scale_bits": 8, "max_k": 4096}),
    # The all-family bit-parallel baseline: a step of L weights per cycle where the weight stream allows.
    ("pe_array_parallel", {"rows": 2, "cols": 2, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 4096,
                           "families": ",".join(FAMILIES), "multiplier": "lut"}),
]

#: (label, design, params, target); MAC/s use 2 cycles per 4-bit weight for BitMoD, 1 for the baselines.
_MID = {"rows": 8, "cols": 2, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 4096}
_ICE = {"rows": 2, "cols": 1, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 1024}
_ALL = ",".join(FAMILIES)
SYNTH = [
    ("BitMoD, all six families", "pe_array", _MID, "ecp5-85f"),
    ("BitMoD, fp4+int4", "pe_array", {**_MID, "families": "fp4,int4"}, "ecp5-85f"),
    ("baseline int8 x int4, LUT", "pe_array_parallel", {**_MID, "multiplier": "lut"}, "ecp5-85f"),
    ("baseline int8 x int4, DSP", "pe_array_parallel", {**_MID, "multiplier": "dsp"}, "ecp5-85f"),
    ("baseline int8 x int8, all six families, LUT", "pe_array_parallel",
     {**_MID, "families": _ALL, "multiplier": "lut"}, "ecp5-85f"),
    ("baseline int8 x int8, all six families, DSP", "pe_array_parallel",
     {**_MID, "families": _ALL, "multiplier": "dsp"}, "ecp5-85f"),
    ("BitMoD, fp4+int4", "pe_array", {**_ICE, "families": "fp4,int4"}, "ice40-up5k"),
    ("BitMoD, all six families", "pe_array", _ICE, "ice40-up5k"),
    ("baseline int8 x int4, LUT", "pe_array_parallel", {**_ICE, "multiplier": "lut"}, "ice40-up5k"),
    ("baseline int8 x int8, all six families, LUT", "pe_array_parallel",
     {**_ICE, "families": _ALL, "multiplier": "lut"}, "ice40-up5k"),
]


SHAPES = (("GEMM", 2, 2), ("GEMV", 1, 16))    # (name, jobs, column tiles); K = 2048


def throughput(params: dict, design: str = "pe_array") -> list[dict]:
    """Cycles of unstalled runs per family: a GEMM (M = 2R, N = 2C) and a GEMV-like job (M = R, N = 16C).

    ``busy`` counts the cycles the PEs need at peak: ``G / L * T`` per group on ``pe_array``,
    ``G / L`` (a step per cycle) on ``pe_array_parallel``.
    """
    config = PeArrayConfig.from_params({**PeArrayConfig().params(), **params})
    per_group = config.cycles_per_group if design == "pe_array" else lambda name: config.steps_per_group
    rows = []
    for shape, jobs, tiles in SHAPES:
        for name in FAMILIES:
            generator = torch.Generator().manual_seed(1)
            m, n, k = jobs * config.rows, tiles * config.cols, 2048
            a_q = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
            bw = quantize(torch.randn((n, k), generator=generator), name, config.group_size, config.scale_bits)
            run = run_pe_array_detailed(params, a_q, bw, "verilator", seed=1, design=design)
            assert torch.equal(run.acc, matmul_int(a_q, bw)), f"{name}: the array disagrees with golden"
            groups = jobs * tiles * (k // config.group_size)
            busy = groups * per_group(name)
            compute = run.cycles - run.load_cycles
            rows.append({
                "design": design, "params": params, "shape": shape, "family": name, "m": m, "n": n, "k": k,
                "cycles": run.cycles, "cycles_per_group": round(compute / groups, 2),
                "load_cycles": run.load_cycles, "busy_cycles": busy, "efficiency": round(busy / compute, 4),
                "efficiency_with_loads": round(busy / run.cycles, 4),
                "macs_per_cycle": round(m * n * k / run.cycles, 2),
            })
    return rows


def synthesis(label: str, design: str, target: str, report: dict) -> dict:
    """A table row from a synthesis report."""
    p = report["parameters"]
    core = report["core"]
    luts = lut4_equivalent(report)
    fmax = report["timing"]["fmax_mhz"]
    macs = sweep.peak_ops_per_cycle(design, p) * fmax * 1e6
    return {
        "label": label, "design": design, "target": target, "params": p, "lut4": luts, "ff": core["ff"],
        "bram": core["bram"], "dsp": core["dsp"], "logic_percent": report["placed"]["logic_percent"],
        "fmax_mhz": fmax, "met": report["timing"]["met"], "mmac_per_s": round(macs / 1e6, 1),
        "mmac_per_s_per_lut4": round(macs / 1e6 / luts, 3),
        "lut4_per_lane": round(luts / (p["rows"] * p["cols"] * p["lanes"]), 1),
        # True where YoWASP's ABC9 died and yosys mapped LUTs without it (more LUT4s).
        "abc9_fallback": report["abc9_fallback"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--skip-synth", action="store_true", help="only the throughput runs")
    parser.add_argument("--skip-throughput", action="store_true", help="only the syntheses")
    parser.add_argument("--only", default="", help="synthesize only the rows whose label or target contains this")
    parser.add_argument("--workers", type=int, default=2, help="local dask workers for the syntheses (default 2)")
    parser.add_argument("--throughput-design", default="", help="measure throughput only on this design")
    args = parser.parse_args()
    result = {"throughput": [], "synthesis": []}
    if not args.skip_throughput:
        print("| design | R x C x L | shape (M x N x K) | family | cycles | loads | busy | efficiency "
              "| with loads | MAC/cycle | cycles/group |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for design, params in THROUGHPUT:
            if args.throughput_design not in ("", design):
                continue
            for row in throughput(params, design):
                result["throughput"].append(row)
                print(f"| {design} | {params['rows']}x{params['cols']}x{params['lanes']} "
                      f"| {row['shape']} {row['m']}x{row['n']}x{row['k']} | {row['family']} | {row['cycles']} "
                      f"| {row['load_cycles']} | {row['busy_cycles']} | {row['efficiency']:.1%} "
                      f"| {row['efficiency_with_loads']:.1%} | {row['macs_per_cycle']} "
                      f"| {row['cycles_per_group']} |", flush=True)
    if not args.skip_synth:
        print("\n| design | target | R x C x L | LUT4 | FF | BRAM | DSP | logic | Fmax | M MAC/s | per LUT4 |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        chosen = [row for row in SYNTH if args.only in row[0] or args.only in row[3]]
        points = [sweep.point(design, params, target) for _, design, params, target in chosen]
        for (label, design, _, target), report in zip(chosen, sweep.reports(points, args.out / "pe_array",
                                                                              workers=args.workers), strict=True):
            row = synthesis(label, design, target, report)
            result["synthesis"].append(row)
            p = row["params"]
            print(f"| {label} | {target} | {p['rows']}x{p['cols']}x{p['lanes']} | {row['lut4']} | {row['ff']} "
                  f"| {row['bram']} | {row['dsp']} | {row['logic_percent']}% | {row['fmax_mhz']} "
                  f"| {row['mmac_per_s']} | {row['mmac_per_s_per_lut4']} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pe_array.json").write_text(json.dumps(result, indent=2, default=list) + "\n")


if __name__ == "__main__":
    main()
