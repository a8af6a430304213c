"""Quantize + pack throughput of the VidKV formats (D = 128, 4096 tokens) against float paper mode.

Every format runs through the streaming integer cache (as the engine will) and is then
packed; paper mode is the float reference of golden.vidkv_paper. Also reports bits per
element including metadata. Prints a Markdown table, writes JSON.

    python benchmarks/vidkv_quant.py [--tokens 4096] [--out build/bench/vidkv_quant.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from golden import vidkv_paper as paper
from golden.vidkv_cache import QuantizedKVCache
from golden.vidkv_pack import pack_keys, pack_values

D, GROUP = 128, 32

#: name -> (cache options, ternary layout, paper-mode function)
FORMATS = {
    "K2 (f=1)": ({"kind": "key", "f": 1.0}, None, lambda x, s: paper.keys(x, 1.0)),
    "K1.5 (f=1/2)": ({"kind": "key", "f": 0.5}, None, lambda x, s: paper.keys(x, 0.5)),
    "K1.5 + FFT": ({"kind": "key", "f": 0.5, "fft": True}, None, lambda x, s: paper.keys(x, 0.5, fft=True)),
    "K1 (f=0)": ({"kind": "key", "f": 0.0}, None, lambda x, s: paper.keys(x, 0.0)),
    "K1 + FFT": ({"kind": "key", "f": 0.0, "fft": True}, None, lambda x, s: paper.keys(x, 0.0, fft=True)),
    "V2": ({"kind": "value", "value_format": "2bit"}, "i2", lambda x, s: paper.quant_2bit(x, 0)),
    "V1.58 i2": ({"kind": "value"}, "i2", lambda x, s: paper.values(x)),
    "V1.58 b3": ({"kind": "value"}, "b3", lambda x, s: paper.values(x)),
    "V1.66 STP (20 %) b3": ({"kind": "value", "stp": True}, "b3", lambda x, s: paper.values(x, salient=s)),
}


def run(x: torch.Tensor, salient: torch.Tensor, options: dict, layout: str | None):
    cache = QuantizedKVCache(d=D, group_tokens=GROUP, **options)
    cache.append(x, salient if options.get("stp") else None)
    packed = []
    for path in cache.paths.values():
        for positions, groups in path.groups:
            if options["kind"] == "key":
                packed.append(pack_keys(groups))
            else:
                packed.append(pack_values(groups, ternary_layout=layout if path.name == "value" else "i2",
                                          positions=positions if options.get("stp") else None))
    return packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("build/bench/vidkv_quant.json"))
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-32768, 32768, (args.tokens, D), generator=gen)
    salient = torch.rand(args.tokens, generator=gen) < 0.2
    xf = x.double()
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D = {D}, Tg = {GROUP}, {args.tokens} tokens")
    print("| format | integer quantize + pack (tokens/s) | paper mode float (tokens/s) | bits/element incl. metadata |")
    print("|---|---:|---:|---:|")
    for name, (options, layout, float_fn) in FORMATS.items():
        best = min(_timed(run, x, salient, options, layout) for _ in range(args.repeat))
        best_float = min(_timed(float_fn, xf, salient) for _ in range(args.repeat))
        packed = run(x, salient, options, layout)
        elements = sum(p.groups * p.group_tokens * D for p in packed)
        bits = sum(p.bits_per_element() * p.groups * p.group_tokens * D for p in packed) / elements
        row = {"format": name, "tokens_per_s": round(args.tokens / best), "paper_tokens_per_s": round(args.tokens / best_float),
               "bits_per_element": round(bits, 3)}
        rows.append(row)
        print(f"| {name} | {row['tokens_per_s']:,} | {row['paper_tokens_per_s']:,} | {row['bits_per_element']} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch": torch.__version__, "tokens": args.tokens, "rows": rows}, indent=2) + "\n")


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
