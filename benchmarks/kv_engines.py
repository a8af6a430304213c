"""KV quantize engine: sustained throughput (cycle counts on Verilator) and area/Fmax.

Throughput: unstalled streams, every mode; the steady-state cycles per token are the
difference of two runs (``GROUPS_SHORT`` and ``GROUPS_LONG`` groups per path), so the
pipeline's fill and drain do not count; the ideal is D / lanes cycles per token (lanes
elements a cycle). Every run is checked against golden. Prints Markdown tables and
writes build/bench/kv_engines.json. Usage:

    python benchmarks/kv_engines.py [--out build/bench] [--skip-synth] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from golden.vidkv_stream import pack_tokens
from hdl.kv_config import KvConfig
from sim.kv_quant import first_difference, run_kv_quantizer_detailed
from synth.flow import synthesize

THROUGHPUT = [
    {"d": 128, "group_tokens": 32, "lanes": 8, "f": 0.5, "ternary_layout": "i2"},
    {"d": 128, "group_tokens": 32, "lanes": 8, "f": 0.5, "ternary_layout": "b3"},
    {"d": 64, "group_tokens": 16, "lanes": 4, "f": 0.5, "ternary_layout": "b3", "in_bits": 8},
]
MODES = [("K", "key", "ternary", False), ("V2", "value", "2bit", False), ("V1.58", "value", "ternary", False),
         ("V1.66 STP 20 %", "value", "ternary", True)]
GROUPS_SHORT, GROUPS_LONG = 4, 12

SYNTH = [
    ("kv_quant D=128 lanes=8", {"d": 128, "group_tokens": 32, "lanes": 8, "f": 0.5, "ternary_layout": "b3"},
     "ecp5-85f"),
    ("kv_quant D=64 lanes=4, 8-bit", {"d": 64, "group_tokens": 16, "lanes": 4, "f": 0.5, "ternary_layout": "b3",
                                      "in_bits": 8}, "ice40-up5k"),
]


def _tokens(config: KvConfig, groups: int, stp: bool, seed: int):
    """Enough tokens for ``groups`` groups on every path (20 % salient with STP)."""
    generator = torch.Generator().manual_seed(seed)
    count = groups * config.group_tokens * (5 if stp else 1)
    high = 1 << (config.in_bits - 1)
    x = torch.randint(-high, high, (count, config.d), generator=generator)
    salient = None
    if stp:
        salient = torch.zeros(count, dtype=torch.bool)
        salient[::5] = True
    return x, salient


def throughput(params: dict) -> list[dict]:
    config = KvConfig.from_params(params)
    rows = []
    for label, kind, value_format, stp in MODES:
        if stp and not config.stp:
            continue
        cycles, tokens = [], []
        for groups in (GROUPS_SHORT, GROUPS_LONG):
            x, salient = _tokens(config, groups, stp, seed=groups)
            run = run_kv_quantizer_detailed(params, x, kind, salient=salient, value_format=value_format, seed=1)
            want = pack_tokens(x, kind, f=config.f, stp=stp, salient=salient, **config.golden_options(value_format))
            difference = first_difference(run.packed, want, x)
            assert difference is None, f"{label}: the engine disagrees with golden: {difference}"
            cycles.append(run.cycles)
            tokens.append(x.shape[0])
        per_token = (cycles[1] - cycles[0]) / (tokens[1] - tokens[0])
        rows.append({"params": params, "mode": label, "tokens": tokens, "cycles": cycles,
                     "cycles_per_token": round(per_token, 3), "ideal": config.blocks,
                     "efficiency": round(config.blocks / per_token, 4),
                     "elements_per_cycle": round(config.d / per_token, 2)})
    return rows


def synthesis(label: str, params: dict, target: str, out: Path) -> dict:
    folder = out / "kv_engines" / f"{target}-kv_quant-{'-'.join(f'{k}{v}' for k, v in params.items())}"
    report = synthesize("kv_quant", params, target, folder)
    core = report["core"]
    luts = core["lut4"] + (2 * core["carry"] if target.startswith("ecp5") else 0)
    return {"label": label, "design": "kv_quant", "target": target, "params": report["parameters"], "lut4": luts,
            "ff": core["ff"], "bram": core["bram"], "dsp": core["dsp"],
            "logic_percent": report["placed"]["logic_percent"], "fmax_mhz": report["timing"]["fmax_mhz"],
            "met": report["timing"]["met"], "abc9_fallback": report["abc9_fallback"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--skip-synth", action="store_true", help="only the throughput runs")
    parser.add_argument("--skip-throughput", action="store_true", help="only the syntheses")
    args = parser.parse_args()
    result = {"throughput": [], "synthesis": []}
    if not args.skip_throughput:
        print("| D, Tg, lanes, layout | mode | cycles / token | ideal | efficiency | elements / cycle |")
        print("|---|---|---:|---:|---:|---:|")
        for params in THROUGHPUT:
            for row in throughput(params):
                result["throughput"].append(row)
                print(f"| {params['d']}, {params['group_tokens']}, {params['lanes']}, {params['ternary_layout']} "
                      f"| {row['mode']} | {row['cycles_per_token']} | {row['ideal']} | {row['efficiency']:.1%} "
                      f"| {row['elements_per_cycle']} |", flush=True)
    if not args.skip_synth:
        print("\n| configuration | target | LUT4 | FF | BRAM | DSP | logic | Fmax MHz |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for label, params, target in SYNTH:
            row = synthesis(label, params, target, args.out)
            result["synthesis"].append(row)
            print(f"| {label} | {target} | {row['lut4']} | {row['ff']} | {row['bram']} | {row['dsp']} "
                  f"| {row['logic_percent']}% | {row['fmax_mhz']} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kv_engines.json").write_text(json.dumps(result, indent=2, default=list) + "\n")


if __name__ == "__main__":
    main()
