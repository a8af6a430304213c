"""Speed and peak memory of golden.bitmod.quantize against the authors' method.

The baseline below is a re-implementation of the BitMoD authors' method in the style of
their quantizer (for every candidate grid, one boolean mask per grid midpoint over the
whole tensor at once), not their released code: it follows docs/bitmod_contract.md
section 3 (float64, two-level scale, same tie rule), so it must give the same codes,
which this script checks. How the golden differs from the released code (fp16, one fp16
scale per group) is measured by benchmarks/bitmod_released.py. Both run in this process on the
same inputs; peak memory is the resident set size sampled every millisecond, minus
what the process held before the call. Prints a Markdown table, writes JSON.

    python benchmarks/bitmod_quant.py [--shapes 4096x4096 11008x4096] [--families fp4 fp3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
from pathlib import Path

import torch

from arch.bitmod import quantizer_grid
from golden.bitmod import BitmodWeights, candidates, quantize
from golden.formats import encode

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def measure(fn, *args):
    """Return (result, seconds, peak extra bytes) of ``fn(*args)``."""
    gc.collect()
    base = peak = _rss()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return result, seconds, max(peak, _rss()) - base


def masked_round(x: torch.Tensor, grid: list[int]) -> torch.Tensor:
    """Mask-per-midpoint rounding: start at the lowest value, step up past every midpoint exceeded."""
    q = torch.full_like(x, float(grid[0]))
    for low, high in zip(grid[:-1], grid[1:], strict=True):
        q = torch.where(x > (low + high) / 2, torch.full_like(x, float(high)), q)
    return q


def baseline_quantize(w: torch.Tensor, name: str, group_size: int = 128, scale_bits: int = 8) -> BitmodWeights:
    """Spec section 3 on the whole tensor at once, rounding with one mask per midpoint."""
    n, k = w.shape
    groups = w.to(torch.float64).reshape(n, k // group_size, group_size)
    amax = groups.abs().amax(dim=-1, keepdim=True)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    best_err = best_scale = best_dt = best_sg = None
    for dt, sg, grid in candidates(name):
        scale = safe / max(abs(v) for v in grid)
        err = ((masked_round(groups / scale, list(grid)) * scale - groups) ** 2).mean(dim=-1, keepdim=True)
        if best_err is None:
            best_err, best_scale = err, scale
            best_dt, best_sg = torch.full_like(err, dt), torch.full_like(err, sg)
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_dt = torch.where(better, float(dt), best_dt)
            best_sg = torch.where(better, float(sg), best_sg)
    nonzero = amax > 0
    best_scale = torch.where(nonzero, best_scale, torch.zeros_like(best_scale))
    qmax = (1 << scale_bits) - 1
    row_max = best_scale.amax(dim=1, keepdim=True)
    cs = torch.where(row_max > 0, row_max / qmax, torch.ones_like(row_max)).to(torch.float32).to(torch.float64)
    sq = torch.where(nonzero, torch.round(best_scale / cs).clamp(1, qmax), torch.zeros_like(best_scale))
    x = groups / torch.where(nonzero, sq * cs, torch.ones_like(sq))
    x = torch.where(best_sg > 0, -x, x)
    values = torch.where(best_dt > 0, masked_round(x, list(quantizer_grid(name, 1))),
                         masked_round(x, list(quantizer_grid(name, 0))))
    values = torch.where(nonzero, values, torch.zeros_like(values))
    dt = torch.where(nonzero, best_dt, torch.zeros_like(best_dt)).to(torch.int64)
    codes = encode(values, name, dt.expand_as(values)).reshape(n, k).to(torch.uint8)
    sg = torch.where(nonzero, best_sg, torch.zeros_like(best_sg))
    return BitmodWeights(codes, dt[..., 0].to(torch.uint8), sg[..., 0].to(torch.uint8), sq[..., 0].to(torch.int32),
                         cs[:, 0, 0].to(torch.float32), name, group_size, scale_bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "11008x4096"])
    parser.add_argument("--families", nargs="+", default=["fp4", "fp3"])
    parser.add_argument("--out", type=Path, default=Path("build/bench/bitmod_quant.json"))
    args = parser.parse_args()
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| shape | family | ours (s) | baseline (s) | speed-up | ours peak / input "
          "| baseline peak / input | same codes |")
    print("|---|---|---:|---:|---:|---:|---:|:---:|")
    for shape in args.shapes:
        n, k = (int(x) for x in shape.split("x"))
        w = torch.randn(n, k, generator=torch.Generator().manual_seed(0))
        size = w.numel() * w.element_size()
        for name in args.families:
            ours, t_ours, m_ours = measure(quantize, w, name)
            base, t_base, m_base = measure(baseline_quantize, w, name)
            same = all(torch.equal(getattr(ours, f), getattr(base, f)) for f in ("codes", "dt", "sg", "sq", "cs"))
            del base
            row = {"shape": shape, "family": name, "ours_s": round(t_ours, 3), "baseline_s": round(t_base, 3),
                   "speedup": round(t_base / t_ours, 2), "ours_peak_ratio": round(m_ours / size, 2),
                   "baseline_peak_ratio": round(m_base / size, 2), "same_codes": same,
                   "input_mb": round(size / 2**20, 1)}
            rows.append(row)
            print(f"| {shape} | {name} | {row['ours_s']} | {row['baseline_s']} | {row['speedup']}x "
                  f"| {row['ours_peak_ratio']} | {row['baseline_peak_ratio']} | {'yes' if same else 'NO'} |",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
