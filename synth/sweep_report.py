"""A sweep's results as people use them: ``sweep.csv``, ``sweep.md`` and PNG plots.

* ``sweep.csv`` / ``sweep.md``: one row per point (its parameters, knobs, status,
  LUT4, FF, BRAM, DSP, placed logic share, Fmax, met, throughput, per LUT4, wall time,
  and the reason of a failed point);
* ``pareto.png``: throughput against logic share, the Pareto front (most throughput for
  the least logic among points that meet timing) drawn as a line;
* ``fmax.png``: Fmax against logic share, coloured by each swept parameter;
* ``seeds.png``: the spread of Fmax over placement seeds for each point (min, median, max).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from .sweep import Point, param_text

__all__ = ["COLUMNS", "rows", "write_csv", "write_markdown", "pareto_front", "plot", "write_all"]

#: Result columns after the parameters and knobs.
COLUMNS = ("status", "lut4", "ff", "bram", "dsp", "logic_pct", "fmax_mhz", "target_mhz", "met", "mops",
           "mops_per_lut4", "wall_s", "reason")


def rows(results: dict[Point, dict]) -> list[dict]:
    """One flat dict per point: design, target, every parameter, seed, options, then COLUMNS."""
    table = []
    for point, result in results.items():
        row = {"design": point.design, "target": point.target}
        row |= {name: param_text(value) for name, value in point.params}
        row |= {"seed": point.seed, "yosys_opts": point.yosys_opts, "nextpnr_opts": point.nextpnr_opts}
        row |= {column: result.get(column, "") for column in COLUMNS}
        row["reason"] = " ".join(str(row["reason"]).split())
        table.append(row)
    return table


def write_csv(table: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def _shown(points: list[Point]) -> list[str]:
    """The parameter columns worth showing: those that vary, else all of them."""
    swept = [name for name in points[0].swept]
    return swept or [name for name, _ in points[0].params]


def write_markdown(results: dict[Point, dict], path: Path, title: str = "Sweep") -> str:
    points = list(results)
    names = _shown(points)
    knobs = [k for k in ("seed", "yosys_opts", "nextpnr_opts")
             if len({getattr(p, k) for p in points}) > 1 or k == "seed"]
    header = [*names, *knobs, "status", "LUT4", "FF", "BRAM", "DSP", "logic %", "Fmax MHz", "M ops/s",
              "per LUT4", "wall s"]
    lines = [f"# {title}", "", f"{points[0].design} on {points[0].target}, {len(points)} points; "
             f"M ops/s = peak ops per cycle x Fmax (synth.sweep.peak_ops_per_cycle).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(names + knobs) + "---|" + "---:|" * 9]
    for point, r in results.items():
        params = point.param_dict
        cells = [param_text(params[n]) for n in names] + [str(getattr(point, k)) or "-" for k in knobs]
        if r["status"] == "failed":
            cells += ["failed: " + " ".join(r.get("reason", "").split())[-160:]] + [""] * 9
        else:
            cells += [r["status"], *(str(r[c]) for c in ("lut4", "ff", "bram", "dsp", "logic_pct", "fmax_mhz",
                                                          "mops", "mops_per_lut4", "wall_s"))]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def pareto_front(items: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, gain) pairs no other pair beats (less or equal cost with more gain), by cost."""
    front, best = [], float("-inf")
    for cost, gain in sorted(items, key=lambda item: (item[0], -item[1])):
        if gain > best:
            front.append((cost, gain))
            best = gain
    return front


def plot(results: dict[Point, dict], out: Path) -> list[Path]:
    """The three PNGs (see the module docstring); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placed = [(p, r) for p, r in results.items() if r["status"] != "failed"]
    if not placed:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 5))
    met = [(r["logic_pct"], r["mops"]) for _, r in placed if r["met"]]
    unmet = [(r["logic_pct"], r["mops"]) for _, r in placed if not r["met"]]
    if met:
        ax.scatter(*zip(*met, strict=True), label="meets timing")
        front = pareto_front(met)
        ax.step(*zip(*front, strict=True), where="post", color="black", label="Pareto front")
    if unmet:
        ax.scatter(*zip(*unmet, strict=True), marker="x", color="grey", label="timing not met")
    ax.set_xlabel("placed logic (% of the device)")
    ax.set_ylabel("throughput (M ops/s at Fmax)")
    ax.set_title("Throughput against logic")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    written.append(out / "pareto.png")
    plt.close(fig)

    names = _shown([p for p, _ in placed])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = sorted({param_text(p.param_dict[name]) for p, _ in placed})
        for value in values:
            chosen = [r for p, r in placed if param_text(p.param_dict[name]) == value]
            ax.scatter([r["logic_pct"] for r in chosen], [r["fmax_mhz"] for r in chosen], label=f"{name}={value}")
        ax.axhline(placed[0][1]["target_mhz"], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("placed logic (%)")
        ax.set_ylabel("Fmax (MHz)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fmax.png", dpi=110)
    written.append(out / "fmax.png")
    plt.close(fig)

    spread: dict[str, list[float]] = {}
    for point, r in placed:
        label = " ".join(f"{n}={param_text(point.param_dict[n])}" for n in names) or point.design
        label += f" {point.yosys_opts} {point.nextpnr_opts}".rstrip()
        spread.setdefault(label, []).append(r["fmax_mhz"])
    labels = list(spread)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(labels) + 2), 4.5))
    for i, label in enumerate(labels):
        values = spread[label]
        ax.vlines(i, min(values), max(values), color="tab:blue")
        ax.scatter([i] * len(values), values, color="tab:blue", s=12)
        ax.scatter([i], [statistics.median(values)], color="black", marker="_", s=200)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Fmax (MHz) over seeds")
    ax.set_title("Placement-seed spread of Fmax (bar: min..max, tick: median)")
    fig.tight_layout()
    fig.savefig(out / "seeds.png", dpi=110)
    written.append(out / "seeds.png")
    plt.close(fig)
    return written


def write_all(results: dict[Point, dict], out: Path, title: str = "Sweep") -> str:
    """sweep.csv, sweep.md and the plots into ``out``; returns the Markdown."""
    out = Path(out)
    write_csv(rows(results), out / "sweep.csv")
    text = write_markdown(results, out / "sweep.md", title)
    plot(results, out)
    return text
