"""KV-cache accuracy: KIVI, VidKV in float (paper mode) and mixbit's integer formats.

For each configuration: relative error of K and of V (over the quantized groups) and
of the attention output softmax(Q K^T / sqrt(d)) V against unquantized, on (a) synthetic
K with outlier channels and (b) every layer and head of all-MiniLM-L6-v2 run on a real
passage. Integer formats take K and V scaled to int16 per head (host work) and come
back with 4 fraction bits. Salient tokens (STP) are the 20 % that receive the most
attention. Prints Markdown, writes <out>/vidkv_accuracy.{md,json,png}.

    python benchmarks/vidkv_accuracy.py [--out build/bench] [--no-model]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from golden import vidkv_paper as paper
from golden.vidkv_cache import QuantizedKVCache

GROUP = 32
FRAC = 4


def integer(x: torch.Tensor, kind: str, salient=None, **options) -> torch.Tensor:
    """Round trip through the integer cache: int16 per head, dequantized with FRAC fraction bits."""
    scale = x.abs().max().clamp(min=1e-30) / 32767
    cache = QuantizedKVCache(kind, d=x.shape[1], group_tokens=GROUP, frac_bits=FRAC, **options)
    cache.append(torch.round(x / scale).to(torch.int64), salient if options.get("stp") else None)
    return cache.dequantize().double() / 2 ** FRAC * scale


#: name -> (keys(k), values(v, salient)); None keeps the tensor unquantized.
CONFIGS = {
    "KIVI 2-bit (paper)": "kivi",
    "K2 / V2 (int)": (lambda k: integer(k, "key", f=1.0), lambda v, s: integer(v, "value", value_format="2bit")),
    "K1.5 / V1.58 (int)": (lambda k: integer(k, "key", f=0.5), lambda v, s: integer(v, "value")),
    "K1.5-FFT / V1.58 (int)": (lambda k: integer(k, "key", f=0.5, fft=True), lambda v, s: integer(v, "value")),
    "K1.5 / V1.66 STP (int)": (lambda k: integer(k, "key", f=0.5),
                               lambda v, s: integer(v, "value", salient=s, stp=True)),
    "K1 / V1.58 (int)": (lambda k: integer(k, "key", f=0.0), lambda v, s: integer(v, "value")),
    "K1-FFT / V1.58 (int)": (lambda k: integer(k, "key", f=0.0, fft=True), lambda v, s: integer(v, "value")),
    "K1.5 / V1.58 (paper)": (lambda k: paper.keys(k, 0.5), lambda v, s: paper.values(v)),
    "K1.5-FFT / V1.58 (paper)": (lambda k: paper.keys(k, 0.5, fft=True), lambda v, s: paper.values(v)),
    "K1.5 / V1.66 STP (paper)": (lambda k: paper.keys(k, 0.5), lambda v, s: paper.values(v, salient=s)),
    "K1 / V1.58 (paper)": (lambda k: paper.keys(k, 0.0), lambda v, s: paper.values(v)),
    "K1-FFT / V1.58 (paper)": (lambda k: paper.keys(k, 0.0, fft=True), lambda v, s: paper.values(v)),
    "K1.5 / V1.58 (released code)": (lambda k: paper.keys(k, 0.5, released=True),
                                     lambda v, s: paper.values(v, released=True)),
    "K1.5-FFT / V1.58 (released code)": (lambda k: paper.keys(k, 0.5, fft=True, released=True),
                                         lambda v, s: paper.values(v, released=True)),
    "K1 / V1.58 (released code)": (lambda k: paper.keys(k, 0.0, released=True),
                                   lambda v, s: paper.values(v, released=True)),
    "K1-FFT / V1.58 (released code)": (lambda k: paper.keys(k, 0.0, fft=True, released=True),
                                       lambda v, s: paper.values(v, released=True)),
}


def attention(q, k, v):
    return torch.softmax(q @ k.T / k.shape[1] ** 0.5, dim=-1) @ v


def errors(q, k, v) -> dict[str, dict[str, float]]:
    """Relative errors of every configuration on one head."""
    q, k, v = q.double(), k.double(), v.double()
    received = torch.softmax(q @ k.T / k.shape[1] ** 0.5, dim=-1).sum(dim=0)
    salient = torch.zeros(k.shape[0], dtype=torch.bool)
    salient[received.topk(max(1, k.shape[0] // 5)).indices] = True
    full = k.shape[0] // GROUP * GROUP
    reference = attention(q, k, v)
    result = {}
    for name, config in CONFIGS.items():
        k_hat, v_hat = paper.kivi(k, v, GROUP) if config == "kivi" else (config[0](k), config[1](v, salient))
        result[name] = {
            "k": ((k_hat - k)[:full].norm() / k[:full].norm()).item(),
            "v": ((v_hat - v)[:full].norm() / v[:full].norm()).item(),
            "attn": ((attention(q, k_hat, v_hat) - reference).norm() / reference.norm()).item(),
        }
    return result


def mean(results: list[dict]) -> dict[str, dict[str, float]]:
    return {name: {m: round(sum(r[name][m] for r in results) / len(results), 5) for m in ("k", "v", "attn")}
            for name in CONFIGS}


def synthetic(heads: int = 8, tokens: int = 256, d: int = 64) -> dict:
    gen = torch.Generator().manual_seed(0)
    results = []
    for _ in tqdm(range(heads), desc="synthetic", leave=False):
        k = torch.randn(tokens, d, generator=gen)
        outliers = torch.randperm(d, generator=gen)[:4]
        k[:, outliers] = k[:, outliers] * 8 + 5                      # a few channels with large ranges
        v, q = torch.randn(tokens, d, generator=gen), torch.randn(tokens, d, generator=gen)
        results.append(errors(q, k, v))
    return mean(results)


def real_model() -> tuple[dict, int]:
    from golden import minilm

    model, tokenizer = minilm.load()
    layers = minilm.attention_inputs(model, tokenizer)
    results = [errors(q[h], k[h], v[h]) for q, k, v in tqdm(layers, desc="MiniLM layers", leave=False)
               for h in range(q.shape[0])]
    return mean(results), layers[0][1].shape[1]


def fft_error(samples: int = 256) -> list[dict]:
    """The fixed-point FFT alone (no quantization) against a float FFT, on random int16 vectors."""
    from golden.vidkv_fft import irfft_lanes, rfft_lanes

    gen = torch.Generator().manual_seed(0)
    rows = []
    for n in (8, 16, 32, 64, 128):
        x = torch.randint(-32768, 32768, (samples, n), generator=gen)
        lanes = rfft_lanes(x)
        spectrum = torch.fft.rfft(x.double())
        exact = torch.cat([spectrum.real[:, :1], spectrum.real[:, -1:],
                           torch.stack([spectrum.real[:, 1:-1], spectrum.imag[:, 1:-1]], dim=-1).flatten(1)], dim=1)
        back = irfft_lanes(lanes) - x
        rows.append({"n": n, "forward_max_abs": round((lanes - exact).abs().max().item(), 2),
                     "forward_rms": round((lanes - exact).pow(2).mean().sqrt().item(), 3),
                     "round_trip_max_abs": int(back.abs().max()),
                     "round_trip_rms": round(back.double().pow(2).mean().sqrt().item(), 3)})
    return rows


def markdown(synth: dict, real: dict | None, tokens: int | None, fft: list[dict] | None = None) -> str:
    lines = ["### Synthetic K with 4 outlier channels (8 heads, 256 tokens, D = 64, Tg = 32)", "",
             "| configuration | K rel. error | V rel. error | attention output rel. error |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {e['k']:.5f} | {e['v']:.5f} | {e['attn']:.5f} |" for n, e in synth.items()]
    if real:
        lines += ["", f"### all-MiniLM-L6-v2, 6 layers x 12 heads, {tokens} tokens of a real passage (D = 32, Tg = 32)",
                  "", "| configuration | K rel. error | V rel. error | attention output rel. error |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {n} | {e['k']:.5f} | {e['v']:.5f} | {e['attn']:.5f} |" for n, e in real.items()]
    if fft:
        lines += ["", "### Fixed-point FFT alone vs a float FFT (256 random int16 vectors per N, in input LSBs)", "",
                  "| N | forward max abs | forward RMS | round trip max abs | round trip RMS |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['n']} | {r['forward_max_abs']} | {r['forward_rms']} | {r['round_trip_max_abs']} "
                  f"| {r['round_trip_rms']} |" for r in fft]
    return "\n".join(lines) + "\n"


def plot(synth: dict, real: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("synthetic", synth)] + ([("all-MiniLM-L6-v2", real)] if real else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    names = list(CONFIGS)
    for ax, (title, data) in zip(axes[0], panels, strict=True):
        for i, metric in enumerate(("k", "v", "attn")):
            ax.bar([x + (i - 1) * 0.27 for x in range(len(names))], [data[n][metric] for n in names], 0.27,
                   label={"k": "K", "v": "V", "attn": "attention output"}[metric])
        ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=8)
        ax.set_ylabel("relative error")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--no-model", action="store_true", help="skip all-MiniLM-L6-v2")
    args = parser.parse_args()
    synth = synthetic()
    real, tokens = (None, None) if args.no_model else real_model()
    fft = fft_error()
    text = markdown(synth, real, tokens, fft)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vidkv_accuracy.md").write_text(text)
    (args.out / "vidkv_accuracy.json").write_text(json.dumps({"synthetic": synth, "minilm": real, "fft": fft}, indent=2) + "\n")
    plot(synth, real, args.out / "vidkv_accuracy.png")


if __name__ == "__main__":
    main()
