"""Area and Fmax of the weight decoder for several family sets on both targets.

The syntheses run through `mixbit sweep`'s engine (synth.sweep: dask workers, cached
under <out>/decoder). Prints a Markdown table and writes <out>/decoder_synth.json. Usage:

    python benchmarks/decoder_synth.py [--out build/bench] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synth import sweep

FAMILY_SETS = ["fp4,fp3,int4,int3,int6,int8", "fp4,fp3", "int4,int3", "fp4,int4", "int8"]
TARGETS = ["ice40-up5k", "ecp5-85f"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--workers", type=int, default=2, help="local dask workers (default 2)")
    args = parser.parse_args()
    cases = [(target, families) for target in TARGETS for families in FAMILY_SETS]
    points = [sweep.point("decoder", {"families": families}, target) for target, families in cases]
    rows = []
    print("| target | families | LUT4 | FF | logic placed | Fmax (MHz) | target (MHz) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (target, families), report in zip(cases, sweep.reports(points, args.out / "decoder", workers=args.workers),
                                          strict=True):
        row = {
            "target": target, "families": families, "lut4": report["core"]["lut4"],
            "ff": report["core"]["ff"], "logic_used": report["placed"]["logic_used"],
            "fmax_mhz": report["timing"]["fmax_mhz"], "constraint_mhz": report["timing"]["constraint_mhz"],
            "tools": report["tools"],
        }
        rows.append(row)
        print(f"| {target} | {families} | {row['lut4']} | {row['ff']} | {row['logic_used']} "
              f"| {row['fmax_mhz']} | {row['constraint_mhz']} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder_synth.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
