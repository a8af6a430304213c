"""PE array: sustained throughput (cycle counts on Verilator) and area/Fmax against the baselines.

The syntheses run through `mixbit sweep`'s engine (synth.sweep: dask workers, cached
under <out>/pe_array). Prints Markdown tables and writes <out>/pe_array.json. Usage:

    python benchmarks/pe_array.py [--out build/bench] [--skip-synth] [--skip-throughput] [--skip-area-only]
                                  [--only TEXT] [--workers 2]
                                  [--throughput-design pe_array|pe_array_parallel] [--activations int8|fp16]

Rows cover int8 and FP16 activations: BitMoD's arrays, the bit-parallel int8 baselines and
the FP16 MAC array (``pe_array_parallel -p activations=fp16``, the paper's comparison);
configurations larger than the device (the FP16 MAC array at 8x2x8) get their yosys area
alone. The ECP5 configuration that fills at least half of the LUTs has its own script,
benchmarks/pe_array_large.py (the flow's router does not finish it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from arch.bitmod import FAMILIES
from arch.pe_array_config import PeArrayConfig
from golden.bitmod import matmul_fp16, matmul_int, quantize
from golden.fp16_mac import matmul_fp16_mac
from sim.pe_array import run_pe_array_detailed
from synth import sweep
from synth.flow import core_area, lut4_equivalent
from synth.targets import get_target

_SMALL = {"rows": 2, "cols": 2, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 4096}
_ALL = ",".join(FAMILIES)
THROUGHPUT = [
    ("pe_array", _SMALL),
    ("pe_array", {**_SMALL, "lanes": 16}),
    # The all-family bit-parallel baseline: a step of L weights per cycle where the weight stream allows.
    ("pe_array_parallel", {**_SMALL, "families": _ALL, "multiplier": "lut"}),
    # FP16 activations: BitMoD's own workload, and the FP16 MAC array the paper compares with.
    ("pe_array", {**_SMALL, "activations": "fp16"}),
    ("pe_array_parallel", {**_SMALL, "families": _ALL, "multiplier": "dsp", "activations": "fp16"}),
]

#: (label, design, params, target); MAC/s use 2 cycles per 4-bit weight for BitMoD, 1 for the baselines.
_MID = {"rows": 8, "cols": 2, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 4096}
_ICE = {"rows": 2, "cols": 1, "lanes": 8, "group_size": 128, "scale_bits": 8, "max_k": 1024}
_FP16 = {**_SMALL, "families": _ALL, "activations": "fp16"}
_ICE_FP16 = {**_ICE, "rows": 1, "activations": "fp16"}         # two rows of FP16 lanes do not place
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
    ("BitMoD FP16, all six families", "pe_array", {**_MID, "activations": "fp16"}, "ecp5-85f"),
    ("BitMoD FP16, all six families", "pe_array", _FP16, "ecp5-85f"),
    ("baseline FP16 MAC, LUT", "pe_array_parallel", {**_FP16, "multiplier": "lut"}, "ecp5-85f"),
    ("baseline FP16 MAC, DSP", "pe_array_parallel", {**_FP16, "multiplier": "dsp"}, "ecp5-85f"),
    ("BitMoD FP16, fp4+int4", "pe_array", {**_ICE_FP16, "families": "fp4,int4"}, "ice40-up5k"),
    # The largest FP16 MAC array that places on the UP5K (4 lanes do not; the flow's synth_ice40
    # maps no SB_MAC16, so a DSP variant would be LUTs too).
    ("baseline FP16 MAC, LUT", "pe_array_parallel",
     {**_ICE_FP16, "families": "fp4,int4", "lanes": 2, "multiplier": "lut"}, "ice40-up5k"),
]

#: Configurations that do not place (more logic than the device has): their yosys area alone.
AREA_ONLY = [
    ("baseline FP16 MAC, LUT", "pe_array_parallel", {**_MID, "families": _ALL, "activations": "fp16",
                                                     "multiplier": "lut"}, "ecp5-85f"),
    ("baseline FP16 MAC, DSP", "pe_array_parallel", {**_MID, "families": _ALL, "activations": "fp16",
                                                     "multiplier": "dsp"}, "ecp5-85f"),
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
            if config.fp16:
                a = torch.randn((m, k), generator=generator).to(torch.float16)
            else:
                a = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
            bw = quantize(torch.randn((n, k), generator=generator), name, config.group_size, config.scale_bits)
            run = run_pe_array_detailed(params, a, bw, "verilator", seed=1, design=design)
            assert torch.equal(*_bits(run, design, config, a, bw)), f"{name}: the array disagrees with golden"
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


def _chosen(params: dict, activations: str | None) -> bool:
    """The row's activations are ``activations`` (None: any)."""
    return activations is None or params.get("activations", "int8") == activations


def _bits(run, design: str, config: PeArrayConfig, a: torch.Tensor, bw) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's result and golden's, as tensors that must be equal (floats as their bits)."""
    if not config.fp16:
        return run.acc, matmul_int(a, bw)
    want = matmul_fp16_mac(a, bw, config.lanes) if design == "pe_array_parallel" else \
        matmul_fp16(a, bw, config.align_bits)
    return run.out.view(torch.int32), want.view(torch.int32)


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
    parser.add_argument("--skip-area-only", action="store_true", help="not the yosys-only rows (long)")
    parser.add_argument("--only", default="", help="synthesize only the rows whose label or target contains this")
    parser.add_argument("--workers", type=int, default=2, help="local dask workers for the syntheses (default 2)")
    parser.add_argument("--throughput-design", default="", help="measure throughput only on this design")
    parser.add_argument("--activations", choices=("int8", "fp16"), default=None,
                        help="only the rows with these activations (default: all)")
    args = parser.parse_args()
    result = {"throughput": [], "synthesis": [], "area_only": []}
    if not args.skip_throughput:
        print("| design | R x C x L | shape (M x N x K) | family | cycles | loads | busy | efficiency "
              "| with loads | MAC/cycle | cycles/group |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for design, params in THROUGHPUT:
            if args.throughput_design not in ("", design) or not _chosen(params, args.activations):
                continue
            for row in throughput(params, design):
                result["throughput"].append(row)
                kind = " (FP16)" if params.get("activations") == "fp16" else ""
                print(f"| {design}{kind} | {params['rows']}x{params['cols']}x{params['lanes']} "
                      f"| {row['shape']} {row['m']}x{row['n']}x{row['k']} | {row['family']} | {row['cycles']} "
                      f"| {row['load_cycles']} | {row['busy_cycles']} | {row['efficiency']:.1%} "
                      f"| {row['efficiency_with_loads']:.1%} | {row['macs_per_cycle']} "
                      f"| {row['cycles_per_group']} |", flush=True)
    if not args.skip_synth:
        print("\n| design | target | R x C x L | LUT4 | FF | BRAM | DSP | logic | Fmax | M MAC/s | per LUT4 |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        chosen = [row for row in SYNTH if (args.only in row[0] or args.only in row[3])
                  and _chosen(row[2], args.activations)]
        points = [sweep.point(design, params, target) for _, design, params, target in chosen]
        for (label, design, _, target), report in zip(chosen, sweep.reports(points, args.out / "pe_array",
                                                                              workers=args.workers), strict=True):
            row = synthesis(label, design, target, report)
            result["synthesis"].append(row)
            p = row["params"]
            print(f"| {label} | {target} | {p['rows']}x{p['cols']}x{p['lanes']} | {row['lut4']} | {row['ff']} "
                  f"| {row['bram']} | {row['dsp']} | {row['logic_percent']}% | {row['fmax_mhz']} "
                  f"| {row['mmac_per_s']} | {row['mmac_per_s_per_lut4']} |", flush=True)
    if not args.skip_synth and not args.skip_area_only:
        print("\nToo large to place (yosys area alone):\n")
        print("| design | target | R x C x L | LUT4 | FF | BRAM | DSP | device LUT4 | ABC9 fallback |")
        print("|---|---|---|---:|---:|---:|---:|---:|:---:|")
        for label, design, params, target in AREA_ONLY:
            if (args.only not in label and args.only not in target) or not _chosen(params, args.activations):
                continue
            folder = args.out / "pe_array" / "area" / sweep.point_key(sweep.point(design, params, target))
            report = core_area(design, params, target, folder)
            core, luts = report["core"], lut4_equivalent(report)
            result["area_only"].append({"label": label, "design": design, "target": target, "params": params,
                                        "lut4": luts, "ff": core["ff"], "bram": core["bram"], "dsp": core["dsp"],
                                        "device_lut4": get_target(target).logic_cells,
                                        "abc9_fallback": report["abc9_fallback"]["core"]})
            print(f"| {label} | {target} | {params['rows']}x{params['cols']}x{params['lanes']} | {luts} "
                  f"| {core['ff']} | {core['bram']} | {core['dsp']} | {get_target(target).logic_cells} "
                  f"| {'yes' if report['abc9_fallback']['core'] else 'no'} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pe_array.json").write_text(json.dumps(result, indent=2, default=list) + "\n")


if __name__ == "__main__":
    main()
