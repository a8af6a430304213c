"""Accuracy of BitMoD's datatypes against RTN and MX-FP4, on synthetic and real weights.

For every method: SQNR and MSE of w_hat against w, and the relative error of
y = a @ w_hat^T against a @ w^T, on Gaussian, Laplace and Student-t weights; then
every Linear layer of all-MiniLM-L6-v2 (per-layer SQNR) and the cosine similarity of
its sentence embeddings, fp32 against quantized. Prints Markdown, writes
<out>/bitmod_accuracy.{md,json,png}.

    python benchmarks/bitmod_accuracy.py [--out build/bench] [--no-model]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

from arch.bitmod import family
from golden import bitmod, minilm
from golden.baselines import mxfp4_quantize, rtn_quantize


def _bitmod(name):
    return lambda w: bitmod.dequantize(bitmod.quantize(w, name))


def _rtn(bits, symmetric):
    return lambda w: rtn_quantize(w, bits, 128, symmetric).dequantize()


#: Method name -> w_hat(w). Weight-only: every method sees the same float weights.
METHODS = {
    "BitMoD fp4": _bitmod("fp4"),
    "BitMoD int4": _bitmod("int4"),
    "RTN int4 sym": _rtn(4, True),
    "RTN int4 asym": _rtn(4, False),
    "MX-FP4": lambda w: mxfp4_quantize(w).dequantize(),
    "BitMoD fp3": _bitmod("fp3"),
    "BitMoD int3": _bitmod("int3"),
    "RTN int3 sym": _rtn(3, True),
    "RTN int3 asym": _rtn(3, False),
    "BitMoD int6": _bitmod("int6"),
    "BitMoD int8": _bitmod("int8"),
}


def sqnr_db(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    noise = (w.double() - w_hat.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(w.double().pow(2).sum().item() / noise)


def synthetic(n: int, k: int, tokens: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)        # torch.distributions draws from the global generator
    weights = {
        "gaussian": torch.randn(n, k, generator=gen),
        "laplace": torch.distributions.Laplace(0.0, 1.0).sample((n, k)),
        "student-t (3)": torch.distributions.StudentT(3.0).sample((n, k)),
    }
    a = torch.randn(tokens, k, generator=gen)
    rows = []
    for dist, w in weights.items():
        y = a.double() @ w.double().T
        for method, fn in tqdm(METHODS.items(), desc=f"synthetic {dist}", leave=False):
            w_hat = fn(w)
            y_hat = a.double() @ w_hat.double().T
            rows.append({"weights": dist, "method": method, "sqnr_db": round(sqnr_db(w, w_hat), 2),
                         "mse": float((w.double() - w_hat.double()).pow(2).mean()),
                         "y_rel_err": round(float((y_hat - y).norm() / y.norm()), 4)})
    return rows


#: Activation paths through the exact PE-array arithmetic: name -> y(a, bw) of float32 a [tokens, K].
ACTIVATION_PATHS = {
    "float activations (weight-only)": lambda a, bw: a.double() @ bitmod.dequantize(bw).double().T,
    "FP16 path (W{b}A16, exact)": lambda a, bw: bitmod.matmul_fp16(a.half(), bw),
    "int8 path (W{b}A8, per-token)": lambda a, bw: bitmod.matmul(a, bw),
}


def activation_paths(model, tokenizer, reference, families=("fp4", "fp3")) -> list[dict]:
    """Sentence-embedding cosine vs fp32 with every Linear layer computed on each activation path."""
    rows = []
    for name in families:
        weights = {layer: bitmod.quantize(module.weight.detach(), name) for layer, module in minilm.linear_layers(model)}
        bits = family(name).bits
        for path, product in ACTIVATION_PATHS.items():
            run = minilm.with_products(model, lambda layer, x, product=product, weights=weights:
                                       product(x, weights[layer]).to(torch.float32))
            cos = (minilm.embed(run, tokenizer) * reference).sum(dim=-1)
            rows.append({"family": name, "path": path.format(b=bits), "mean_cos": round(cos.mean().item(), 6),
                         "min_cos": round(cos.min().item(), 6)})
    return rows


def real_model() -> dict:
    model, tokenizer = minilm.load()
    reference = minilm.embed(model, tokenizer)
    layers = minilm.linear_layers(model)
    per_layer, embedding = {}, {}
    for method, fn in tqdm(METHODS.items(), desc="MiniLM", leave=False):
        sqnr = {}

        def transform(name, w, fn=fn, sqnr=sqnr):
            w_hat = fn(w)
            sqnr[name] = round(sqnr_db(w, w_hat), 2)
            return w_hat

        quantized = minilm.with_weights(model, transform)
        cos = (minilm.embed(quantized, tokenizer) * reference).sum(dim=-1)
        per_layer[method] = sqnr
        embedding[method] = {"mean_cos": round(cos.mean().item(), 5), "min_cos": round(cos.min().item(), 5)}
    return {"layers": [name for name, _ in layers], "per_layer_sqnr_db": per_layer, "embedding": embedding,
            "activation_paths": activation_paths(model, tokenizer, reference), "sentences": list(minilm.SENTENCES)}


def markdown(synth: list[dict], real: dict | None) -> str:
    lines = ["### Synthetic weights (256 x 2048, group 128, 64 Gaussian tokens)", "",
             "| method | " + " | ".join(f"{d} SQNR (dB) | {d} y err" for d in ("gaussian", "laplace", "student-t (3)"))
             + " |", "|---|" + "---:|" * 6]
    for method in METHODS:
        cells = []
        for dist in ("gaussian", "laplace", "student-t (3)"):
            row = next(r for r in synth if r["weights"] == dist and r["method"] == method)
            cells += [f"{row['sqnr_db']:.2f}", f"{row['y_rel_err']:.4f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if real:
        lines += ["", "### all-MiniLM-L6-v2: sentence embeddings, fp32 vs quantized (all 36 Linear layers)", "",
                  "| method | mean layer SQNR (dB) | min layer SQNR (dB) | mean cos | min cos |", "|---|---:|---:|---:|---:|"]
        for method in METHODS:
            values = list(real["per_layer_sqnr_db"][method].values())
            emb = real["embedding"][method]
            lines.append(f"| {method} | {sum(values) / len(values):.2f} | {min(values):.2f} "
                         f"| {emb['mean_cos']:.5f} | {emb['min_cos']:.5f} |")
        lines += ["", "### all-MiniLM-L6-v2: activations through the PE array's arithmetic (all 36 Linear layers)",
                  "", "| weights | activations | mean cos | min cos |", "|---|---|---:|---:|"]
        for row in real["activation_paths"]:
            lines.append(f"| BitMoD {row['family']} | {row['path']} | {row['mean_cos']:.6f} | {row['min_cos']:.6f} |")
        shown = ["BitMoD fp4", "BitMoD int4", "RTN int4 asym", "MX-FP4", "BitMoD fp3", "BitMoD int3", "RTN int3 asym"]
        lines += ["", "### all-MiniLM-L6-v2: per-layer SQNR (dB)", "",
                  "| layer | " + " | ".join(shown) + " |", "|---|" + "---:|" * len(shown)]
        for layer in real["layers"]:
            short = layer.replace("encoder.layer.", "L").replace("attention.", "attn.")
            lines.append(f"| {short} | " + " | ".join(f"{real['per_layer_sqnr_db'][m][layer]:.2f}" for m in shown) + " |")
    return "\n".join(lines) + "\n"


def plot(synth: list[dict], real: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(METHODS)
    fig, axes = plt.subplots(1, 2 if real else 1, figsize=(14 if real else 8, 5), squeeze=False)
    ax = axes[0][0]
    width = 0.27
    for i, dist in enumerate(("gaussian", "laplace", "student-t (3)")):
        values = [next(r["sqnr_db"] for r in synth if r["weights"] == dist and r["method"] == m) for m in methods]
        ax.bar([x + (i - 1) * width for x in range(len(methods))], values, width, label=dist)
    ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("Synthetic weights, group 128")
    ax.legend()
    if real:
        ax = axes[0][1]
        means = [sum(real["per_layer_sqnr_db"][m].values()) / len(real["layers"]) for m in methods]
        bars = ax.bar(range(len(methods)), means, color="tab:gray")
        for bar, m in zip(bars, methods, strict=True):
            ax.annotate(f"cos {real['embedding'][m]['mean_cos']:.4f}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right")
        ax.set_ylabel("mean per-layer SQNR (dB)")
        ax.set_title("all-MiniLM-L6-v2 (annotated: embedding cosine vs fp32)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--no-model", action="store_true", help="skip all-MiniLM-L6-v2")
    args = parser.parse_args()
    synth = synthetic(256, 2048, 64)
    real = None if args.no_model else real_model()
    text = markdown(synth, real)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bitmod_accuracy.md").write_text(text)
    (args.out / "bitmod_accuracy.json").write_text(json.dumps({"synthetic": synth, "minilm": real}, indent=2) + "\n")
    plot(synth, real, args.out / "bitmod_accuracy.png")


if __name__ == "__main__":
    main()
