"""How mixbit's BitMoD golden quantizer differs from the authors' released search, measured.

The released search (BitMoD-HPCA-25, ``bitmod_quant``) runs in fp16: per group one fp16
scale ``absmax / qmax`` for each candidate grid (ER+, ER-, EA+, EA-), nearest grid
value with ties down, fp16 mean squared error, the first strictly smaller error wins.
The golden model (docs/bitmod_contract.md section 3) runs the same search in float64
and then stores the chosen scale in two levels, an unsigned ``scale_bits``-bit group
scale times a float32 per-channel scale, and re-rounds the codes against that stored
scale. This script expresses the released search anew (it is not the released code)
and reports, per weight set and family:

* SQNR in dB of the golden (two-level scale), of the exact single-level search
  (float64, the golden's variant choice with its unrounded scale) and of the fp16
  released search;
* agreement of the chosen variant (dt, sg) between golden and released, and between
  golden and the exact search;
* agreement of the code values (grid values, sign applied) between golden and released.

Prints Markdown, writes ``<out>/bitmod_released.{md,json}``.

    python benchmarks/bitmod_released.py [--out build/bench] [--no-model]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from golden import bitmod
from golden.formats import decode

FAMILIES = ("fp4", "fp3")
GROUP = 128


def _round_to_grid(x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Nearest grid value, ties to the lower one, beyond the ends clamped (x's dtype kept)."""
    values = torch.tensor(grid, dtype=x.dtype)
    mids = (values[1:] + values[:-1]) / 2
    return values[torch.searchsorted(mids, x.contiguous(), right=False)]


def released_search(w: torch.Tensor, name: str, group_size: int = GROUP):
    """The released search in fp16: (dequantized weights float64 [N, K], variant index [N, K/G],
    grid values float64 [N, K])."""
    n, k = w.shape
    groups = w.to(torch.float16).reshape(n, k // group_size, group_size)
    amax = groups.abs().amax(dim=-1, keepdim=True)
    best_err = best_hat = best_q = best_index = None
    for index, (_, _, grid) in enumerate(bitmod.candidates(name)):
        scale = (amax / max(abs(v) for v in grid)).clamp(min=1e-5, max=1e4)        # fp16
        q = _round_to_grid(groups / scale, grid)                                    # fp16 grid values
        hat = q * scale
        err = (hat - groups).pow(2).mean(dim=-1)                                    # fp16 MSE
        if best_err is None:
            best_err, best_hat, best_q = err, hat, q
            best_index = torch.zeros_like(err, dtype=torch.int64)
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_hat = torch.where(better[..., None], hat, best_hat)
            best_q = torch.where(better[..., None], q, best_q)
            best_index = torch.where(better, index, best_index)
    return best_hat.double().reshape(n, k), best_index, best_q.double().reshape(n, k)


def exact_search(w: torch.Tensor, name: str, group_size: int = GROUP):
    """The same search in float64 with the unrounded single-level scale: (weights, variant index)."""
    n, k = w.shape
    groups = w.double().reshape(n, k // group_size, group_size)
    amax = groups.abs().amax(dim=-1, keepdim=True)
    best_err = best_hat = best_index = None
    for index, (_, _, grid) in enumerate(bitmod.candidates(name)):
        scale = torch.where(amax > 0, amax / max(abs(v) for v in grid), torch.ones_like(amax))
        hat = _round_to_grid(groups / scale, grid) * scale
        err = (hat - groups).pow(2).mean(dim=-1)
        if best_err is None:
            best_err, best_hat, best_index = err, hat, torch.zeros_like(err, dtype=torch.int64)
        else:
            better = err < best_err
            best_err, best_index = torch.where(better, err, best_err), torch.where(better, index, best_index)
            best_hat = torch.where(better[..., None], hat, best_hat)
    return best_hat.reshape(n, k), best_index


def _sqnr_db(w: torch.Tensor, hat: torch.Tensor) -> float:
    w = w.double()
    return 10 * torch.log10(w.pow(2).sum() / (hat - w).pow(2).sum()).item()


def compare(w: torch.Tensor, name: str) -> dict:
    """One weight matrix: the measurements above, plus sums for pooling."""
    bw = bitmod.quantize(w, name, GROUP)
    golden_hat = bitmod.dequantize(bw).double()
    golden_index = bw.dt.to(torch.int64) * 2 + bw.sg.to(torch.int64)          # candidates() order
    n, k = w.shape
    dt = bw.dt.to(torch.int64).repeat_interleave(GROUP, dim=1)
    sign = 1 - 2 * bw.sg.to(torch.int64).repeat_interleave(GROUP, dim=1)
    golden_q = (decode(bw.codes.to(torch.int64), name, dt) * sign).double()    # signed grid values
    released_hat, released_index, released_q = released_search(w, name)
    exact_hat, exact_index = exact_search(w, name)
    return {
        "golden_db": _sqnr_db(w, golden_hat),
        "exact_db": _sqnr_db(w, exact_hat),
        "released_db": _sqnr_db(w, released_hat),
        "variant_agree_released": (golden_index == released_index).double().mean().item(),
        "variant_agree_exact": (golden_index == exact_index).double().mean().item(),
        "code_agree_released": (golden_q == released_q).double().mean().item(),
        "groups": golden_index.numel(),
    }


def pooled(rows: list[dict]) -> dict:
    """Group-weighted means of a list of per-matrix results."""
    total = sum(r["groups"] for r in rows)
    return {key: round(sum(r[key] * r["groups"] for r in rows) / total, 4)
            for key in rows[0] if key != "groups"} | {"groups": total}


def weight_sets(model: bool) -> dict[str, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    sets = {"Gaussian 1024 x 4096": [torch.randn(1024, 4096, generator=gen)],
            "Student-t (3 dof) 1024 x 4096": [torch.distributions.StudentT(3.0).sample((1024, 4096))]}
    if model:
        from golden import minilm

        net, _ = minilm.load()
        sets["all-MiniLM-L6-v2, 36 Linear layers"] = [m.weight.detach().float() for _, m in minilm.linear_layers(net)]
    return sets


def markdown(results: dict) -> str:
    lines = ["| weights | family | SQNR golden (dB) | SQNR exact search (dB) | SQNR released fp16 (dB) "
             "| variant = released | variant = exact | code = released |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (name, family), r in results.items():
        lines.append(f"| {name} | {family} | {r['golden_db']:.3f} | {r['exact_db']:.3f} | {r['released_db']:.3f} "
                     f"| {100 * r['variant_agree_released']:.2f} % | {100 * r['variant_agree_exact']:.2f} % "
                     f"| {100 * r['code_agree_released']:.2f} % |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--no-model", action="store_true", help="skip all-MiniLM-L6-v2")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {}
    for name, matrices in weight_sets(not args.no_model).items():
        for family in FAMILIES:
            results[(name, family)] = pooled([compare(w, family) for w in matrices])
    text = markdown(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bitmod_released.md").write_text(text)
    (args.out / "bitmod_released.json").write_text(json.dumps(
        [{"weights": n, "family": f, **r} for (n, f), r in results.items()], indent=2) + "\n")


if __name__ == "__main__":
    main()
