"""The headline area and Fmax rows at three nextpnr placement seeds.

One placement is one sample: the same netlist closes up to 10 % apart at different
seeds (docs/performance.md). Every row at every seed is one point of a sweep
(`synth.sweep`, the engine of `mixbit sweep`: cached under ``<out>/headline``, so a rerun
only does what changed). Prints a Markdown table (Fmax at each seed, min / median, met
at how many), writes ``<out>/headline_seeds.json``.

    python benchmarks/headline_seeds.py [--out build/bench] [--only TEXT] [--seeds 1 2 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from synth import sweep

#: label -> (design, parameters, target): the rows README.md and docs/performance.md quote.
ROWS = {
    "main job: pe_array defaults": ("pe_array", {}, "ecp5-85f"),
    "README: pe_array 2x1x8 fp4+int4, max_k 1024": (
        "pe_array", {"cols": 1, "families": "fp4,int4", "max_k": 1024}, "ice40-up5k"),
    "README: kv_quant D=32 Tg=16 lanes=2 8-bit b3, no STP": (
        "kv_quant", {"d": 32, "group_tokens": 16, "lanes": 2, "in_bits": 8, "ternary_layout": "b3", "stp": False},
        "ice40-up5k"),
    "kv_quant D=64 Tg=16 lanes=2 8-bit b3, no STP": (
        "kv_quant", {"d": 64, "group_tokens": 16, "lanes": 2, "in_bits": 8, "ternary_layout": "b3", "stp": False},
        "ice40-up5k"),
    "kv_quant D=128 Tg=32 lanes=8 b3, STP": (
        "kv_quant", {"d": 128, "group_tokens": 32, "lanes": 8, "ternary_layout": "b3"}, "ecp5-85f"),
    "kv_dequant D=128 Tg=32 lanes=8 b3, STP": (
        "kv_dequant", {"d": 128, "group_tokens": 32, "lanes": 8, "ternary_layout": "b3"}, "ecp5-85f"),
    "pe_array 8x2x8, all six families": ("pe_array", {"rows": 8}, "ecp5-85f"),
    "pe_array 8x2x8, all six families, FP16 activations": ("pe_array", {"rows": 8, "activations": "fp16"},
                                                           "ecp5-85f"),
}


def points(design: str, params: dict, target: str, seeds: list[int]) -> list[sweep.Point]:
    return [sweep.point(design, params, target, seed=seed) for seed in seeds]


def row(label: str, results: list[dict]) -> dict:
    """One table row from the row's points (one per seed)."""
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        return {"label": label, "failed": failed[0]["reason"]}
    first = results[0]
    fmax = {r["point"]["seed"]: r["fmax_mhz"] for r in results}
    return {"label": label, "design": first["point"]["design"], "params": first["point"]["params"],
            "target": first["point"]["target"], "lut4": first["lut4"], "ff": first["ff"], "bram": first["bram"],
            "target_mhz": first["target_mhz"], "fmax_mhz": fmax, "min": min(fmax.values()),
            "median": statistics.median(fmax.values()), "met": sum(r["met"] for r in results)}


def markdown(rows: list[dict], seeds: list[int]) -> str:
    lines = ["| row | target | LUT4 | FF | BRAM | " + " | ".join(f"Fmax seed {s}" for s in seeds)
             + " | min | median | target | met |", "|---|---|---:|---:|---:|" + "---:|" * (len(seeds) + 4)]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['label']} | failed: {' '.join(r['failed'].split())[-200:]} |")
            continue
        lines.append(f"| {r['label']} | {r['target']} | {r['lut4']} | {r['ff']} | {r['bram']} | "
                     + " | ".join(f"{r['fmax_mhz'][s]:.2f}" for s in seeds)
                     + f" | {r['min']:.2f} | {r['median']:.2f} | {r['target_mhz']:g} | {r['met']} of {len(seeds)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--only", default="", help="only the rows whose label contains this")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2, help="local dask workers (default 2)")
    args = parser.parse_args()
    chosen = {label: points(*spec, args.seeds) for label, spec in ROWS.items() if args.only in label}
    done = sweep.run([p for group in chosen.values() for p in group], args.out / "headline", workers=args.workers)
    rows = [row(label, [done[p] for p in group]) for label, group in chosen.items()]
    text = markdown(rows, args.seeds)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "headline_seeds.md").write_text(text)
    (args.out / "headline_seeds.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
