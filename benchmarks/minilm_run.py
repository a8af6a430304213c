"""all-MiniLM-L6-v2 end to end on the RTL: wall time, cycles, utilization, projected latency.

Runs the sentences through ``workloads.minilm.run_model`` on the generated PE array and
KV engines (the fast Verilator harness) and on the golden models, checks that the
embeddings are the same bits, and prints Markdown: the builds' time, the run's wall
time per sentence, the per-layer cycles and lane utilization, what the KV engines
quantized, the cosine against fp32 MiniLM, and the latency projected onto the ULX3S
build and the large ECP5 arrays. Writes <out>/minilm_run.{md,json,png}.

    python benchmarks/minilm_run.py [--out build/bench] [--kv k1.5-v1.58] [--family fp4] [SENTENCE ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from golden import minilm
from mixbit.model_targets import model_targets
from workloads.kernels import RtlKernels
from workloads.minilm import kv_params, pe_params, run_model
from workloads.report import layer_rows, project, summary

#: The README's sentence (22 tokens) and a longer one (38 tokens: two KV groups per head).
SENTENCES = (
    "A man is eating food while the children play football in the sunny park near the old river bridge.",
    "Quantized weights and a two-bit cache let a small FPGA run a sentence encoder, one bit-serial digit "
    "at a time, without losing its meaning.",
)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(layers, [r["array_cycles"] / 1e3 for r in rows], color="#4c72b0", label="PE array")
    ax.bar(layers, [r["kv_cycles"] / 1e3 for r in rows], bottom=[r["array_cycles"] / 1e3 for r in rows],
           color="#dd8452", label="KV engines")
    ax.set_xlabel("encoder layer")
    ax.set_ylabel("k cycles")
    util = ax.twinx()
    util.plot(layers, [100 * r["utilization"] for r in rows], "k.-", label="lane utilization")
    util.set_ylim(0, 100)
    util.set_ylabel("PE lane utilization (%)")
    ax.legend(loc="lower left")
    ax.set_title("all-MiniLM-L6-v2 on the RTL: cycles and utilization per layer")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="*", default=list(SENTENCES))
    parser.add_argument("--out", default="build/bench")
    parser.add_argument("--family", default="fp4")
    parser.add_argument("--kv", default="k1.5-v1.58")
    parser.add_argument("--activations", default="fp16")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = minilm.load()
    started = time.monotonic()
    with RtlKernels(pe_params(args.activations), kv_params(args.kv)):
        pass                                        # builds (or finds) each harness
    build_s = time.monotonic() - started
    options = {"family": args.family, "kv": args.kv, "activations": args.activations, "model": model}
    goldens = [run_model([sentence], golden=True, **options) for sentence in args.sentences]
    runs = [run_model([sentence], progress=True, **options) for sentence in args.sentences]
    same = all(torch.equal(run.embeddings, golden.embeddings) for run, golden in zip(runs, goldens, strict=True))
    rtl, golden = runs[0], goldens[0]
    rows = layer_rows(rtl)
    targets = model_targets()
    text = [summary(rtl, golden, targets), "",
            "| sentence | tokens | wall (s) | cycles | cosine vs fp32 |", "|---|---:|---:|---:|---:|"]
    for run in runs:
        text.append(f"| {run.sentences[0][:48]}... | {run.tokens[0]} | {run.wall_s:.1f} | {run.cycles} "
                    f"| {run.cosine_fp32[0]:.6f} |")
    text += ["", f"Harness builds: {build_s:.1f} s (0 when cached); golden pipeline {golden.wall_s:.1f} s; "
             f"embeddings {'identical' if same else 'DIFFERENT'}"]
    markdown = "\n".join(text)
    print(markdown)
    (out / "minilm_run.md").write_text(markdown + "\n")
    record = {"build_s": round(build_s, 1), "golden_wall_s": round(golden.wall_s, 2), "identical": same,
              "runs": [run.as_dict() | {"embeddings": None, "layers": layer_rows(run),
                                        "projection": project(run, targets)} for run in runs]}
    (out / "minilm_run.json").write_text(json.dumps(record, indent=1))
    plot(rows, out / "minilm_run.png")
    if not same:
        raise SystemExit("the RTL's embeddings differ from the golden pipeline's")


if __name__ == "__main__":
    main()
