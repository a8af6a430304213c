"""Area and Fmax of the weight decoder for several family sets on both targets.

Prints a Markdown table and writes build/bench/decoder_synth.json. Usage:

    python benchmarks/decoder_synth.py [--out build/bench]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synth.flow import synthesize

FAMILY_SETS = ["fp4,fp3,int4,int3,int6,int8", "fp4,fp3", "int4,int3", "fp4,int4", "int8"]
TARGETS = ["ice40-up5k", "ecp5-85f"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    args = parser.parse_args()
    rows = []
    print("| target | families | LUT4 | FF | logic placed | Fmax (MHz) | target (MHz) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for target in TARGETS:
        for families in FAMILY_SETS:
            out = args.out / "decoder" / f"{target}-{families.replace(',', '_')}"
            report = synthesize("decoder", {"families": families}, target, out)
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
