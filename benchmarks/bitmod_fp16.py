"""Error and speed of the exact FP16-activation product (golden.bitmod.matmul_fp16).

Against float64 ``a @ dequantize(bw)^T`` (the same quantized weights, exact arithmetic),
on Gaussian, heavy-tailed (Student-t, 2 degrees of freedom), wide-exponent-spread and
all-MiniLM-L6-v2 activations (the inputs of its 36 Linear layers, fp4 weights of each
layer), for:

* this project's contract (exponent matching over the token) at align_bits B = 0, 2, 4
  (default), 6, 8;
* the alternative it was chosen over: matching over each weight group, each group sum
  aligned to the token's exponent by a floor shift with 2 guard bits, B = 4 (the same
  lane width as the default, plus a shifter in every PE);
* an emulation of the authors' scheme: exponent matching over 4 lanes (significands
  truncated to 11 bits), a group accumulator with 16 significant bits (1 + 15 mantissa,
  rounded to nearest even after every add; its 6-bit exponent range is not modelled),
  float64 after the group;
* an FP16 MAC array: weights rounded to FP16, FP32 products and accumulation (torch's
  float32 matmul);
* today's int8 path: per-token int8 activations (golden.bitmod.matmul).

Metrics: ``rms`` = ||y - ref|| / ||ref|| over the whole output, and ``worst`` = the
largest |y - ref| / (|a| @ |w_hat|^T) over elements (the error relative to the sum of
magnitudes it comes from, finite where ref is near 0). Prints Markdown, writes
<out>/bitmod_fp16.json.

    python benchmarks/bitmod_fp16.py [--out build/bench] [--no-model]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from golden import bitmod
from golden.fp16 import align_tokens, fp16_fields

ALIGN_BITS = (0, 2, 4, 6, 8)


def group_matched(a: torch.Tensor, bw: bitmod.BitmodWeights, align_bits: int = 4, guard_bits: int = 2) -> torch.Tensor:
    """Matching over each weight group instead of the token (the alternative), float64 [M, N]."""
    m, k = a.shape
    g = bw.group_size
    # Each group of a token matched as if it were a token of its own.
    aligned, eg = align_tokens(a.reshape(m * k // g, g), align_bits)
    aligned, eg = aligned.to(torch.float64).reshape(m, k // g, g), eg.reshape(m, k // g)
    v = bitmod._group_values(bw).to(torch.float64)                                    # [N, ng, G]
    sums = torch.einsum("mgk,ngk->mng", aligned, v).round().to(torch.int64)
    sums = sums * (1 - 2 * bw.sg.to(torch.int64))[None]
    er = eg.amax(dim=-1)
    aligned_sums = (sums << guard_bits) >> (er[:, None] - eg)[:, None, :]
    acc = (aligned_sums * bw.sq.to(torch.int64)[None]).sum(dim=-1).to(torch.float64)
    scale = torch.ldexp(torch.ones_like(er, dtype=torch.float64), er - 25 - align_bits - guard_bits)
    return acc * scale[:, None] * bw.cs.to(torch.float64)[None, :]


def paper_scheme(a: torch.Tensor, bw: bitmod.BitmodWeights, match_lanes: int = 4, acc_bits: int = 16) -> torch.Tensor:
    """The authors' structure, emulated (see the module docstring), float64 [M, N]."""
    m, k = a.shape
    n = bw.shape[0]
    sign, e, significand = fp16_fields(a)
    blocks = k // match_lanes
    eb = e.reshape(m, blocks, match_lanes).amax(dim=-1)
    aligned = significand.reshape(m, blocks, match_lanes) >> (eb[..., None] - e.reshape(m, blocks, match_lanes))
    aligned = torch.where(sign.reshape(aligned.shape).bool(), -aligned, aligned).to(torch.float64)
    v = bitmod._group_values(bw).reshape(n, blocks, match_lanes).to(torch.float64)
    partial = torch.einsum("mbl,nbl->mnb", aligned, v) * torch.ldexp(torch.ones_like(eb, dtype=torch.float64),
                                                                      eb - 25)[:, None, :]
    per_group = bw.group_size // match_lanes
    partial = partial.reshape(m, n, k // bw.group_size, per_group)
    acc = torch.zeros(partial.shape[:-1], dtype=torch.float64)
    for step in range(per_group):
        mantissa, exponent = torch.frexp(acc + partial[..., step])
        acc = torch.ldexp(torch.round(mantissa * 2.0 ** acc_bits), exponent - acc_bits)
    scale = bitmod._signed_sq(bw).to(torch.float64) * bw.cs.to(torch.float64)[:, None]       # [N, ng]
    return (acc * scale[None]).sum(dim=-1)


def fp16_mac(a: torch.Tensor, bw: bitmod.BitmodWeights) -> torch.Tensor:
    return (a.float() @ bitmod.dequantize(bw).half().float().T).double()


def errors(y: torch.Tensor, ref: torch.Tensor, magnitude: torch.Tensor) -> dict:
    diff = (y.double() - ref).abs()
    worst = (diff / magnitude.clamp(min=torch.finfo(torch.float64).tiny)).max().item()
    return {"rms": (diff.norm() / ref.norm()).item(), "worst": worst}


def measure(a: torch.Tensor, bw: bitmod.BitmodWeights) -> dict[str, dict]:
    w_hat = bitmod.dequantize(bw).double()
    ref = a.double() @ w_hat.T
    magnitude = a.double().abs() @ w_hat.abs().T
    rows = {f"mixbit, token, B={b}": errors(bitmod.matmul_fp16(a, bw, b), ref, magnitude) for b in ALIGN_BITS}
    rows["per weight group, B=4, 2 guard bits"] = errors(group_matched(a, bw), ref, magnitude)
    rows["authors' scheme (4 lanes, 16-bit acc)"] = errors(paper_scheme(a, bw), ref, magnitude)
    rows["FP16 MAC (fp16 weights, fp32 acc)"] = errors(fp16_mac(a, bw), ref, magnitude)
    rows["int8 per token (W4A8)"] = errors(bitmod.matmul(a.float(), bw), ref, magnitude)
    return rows


def synthetic(tokens: int, n: int, k: int) -> dict[str, dict]:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)        # torch.distributions draws from the global generator
    bw = bitmod.quantize(torch.randn(n, k, generator=gen), "fp4")
    exponent = torch.randint(-24, 16, (tokens, k), generator=gen).double()
    sign = torch.randint(0, 2, (tokens, k), generator=gen).double() * 2 - 1
    sets = {
        "gaussian": torch.randn(tokens, k, generator=gen).half(),
        "student-t (2)": torch.distributions.StudentT(2.0).sample((tokens, k)).clamp(-6e4, 6e4).half(),
        "exponents 2^-24..2^15": (sign * exponent.exp2()).clamp(-65504, 65504).half(),
    }
    return {name: measure(a, bw) for name, a in sets.items()}


def minilm_layers() -> dict[str, dict]:
    """Errors per method over the inputs of all 36 Linear layers: the worst layer's, and the mean rms."""
    from golden import minilm

    model, tokenizer = minilm.load()
    inputs = {}
    hooks = [module.register_forward_hook(lambda _m, i, _o, name=name: inputs.__setitem__(name, i[0].detach()))
             for name, module in minilm.linear_layers(model)]
    try:
        minilm.embed(model, tokenizer)
    finally:
        for hook in hooks:
            hook.remove()
    per_layer = []
    for name, module in minilm.linear_layers(model):
        a = inputs[name].reshape(-1, module.in_features).half()
        per_layer.append(measure(a, bitmod.quantize(module.weight.detach(), "fp4")))
    return {method: {"rms": sum(r[method]["rms"] for r in per_layer) / len(per_layer),
                     "worst": max(r[method]["worst"] for r in per_layer),
                     "worst_layer_rms": max(r[method]["rms"] for r in per_layer)}
            for method in per_layer[0]}


def speed() -> dict:
    gen = torch.Generator().manual_seed(1)
    bw = bitmod.quantize(torch.randn(4096, 4096, generator=gen), "fp4")
    a = torch.randn(64, 4096, generator=gen).half()
    bitmod.matmul_fp16(a[:1], bw)
    start = time.perf_counter()
    bitmod.matmul_fp16(a, bw)
    return {"shape": "[64, 4096] x [4096, 4096]", "seconds": round(time.perf_counter() - start, 3),
            "threads": torch.get_num_threads()}


def markdown(results: dict) -> str:
    sets = list(results["errors"])
    lines = ["| method | " + " | ".join(f"{s} rms | {s} worst" for s in sets) + " |", "|---|" + "---:|---:|" * len(sets)]
    for method in results["errors"][sets[0]]:
        cells = [f"{results['errors'][s][method]['rms']:.2e} | {results['errors'][s][method]['worst']:.2e}" for s in sets]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", f"matmul_fp16 {results['speed']['shape']}: {results['speed']['seconds']} s "
                  f"({results['speed']['threads']} threads)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--no-model", action="store_true", help="skip the MiniLM activations")
    args = parser.parse_args()
    found = synthetic(16, 512, 1024)
    if not args.no_model:
        found["MiniLM (36 layers)"] = minilm_layers()
    results = {"errors": found, "speed": speed()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bitmod_fp16.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
