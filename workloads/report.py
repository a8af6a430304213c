"""A model run's summary: per-layer cycles and utilization, what the KV engines quantized,
and the latency a sentence would take on real hardware (cycles at measured clocks, plus
the UART link of the ULX3S build at its baud)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from arch.bitmod import pack_layout
from arch.link import FRAME_BYTES, LOAD_ACT_LAYOUT, LOAD_WEIGHTS_LAYOUT, word_bytes
from arch.measurements import LARGE_FP16_ARRAY, LARGE_INT8_ARRAY, FmaxMeasurement
from arch.pe_array_config import PeArrayConfig
from gateware.designs import get_design

from .kernels import tiles_per_load
from .minilm import ModelRun

__all__ = ["Target", "ARRAY_TARGETS", "project", "layer_rows", "summary"]


@dataclass(frozen=True)
class Target:
    """Hardware a run is projected onto: a PE array (``pe``: parameters over the run's) at a
    measured clock; for a board build also its link (``link``: ``baud``, ``max_payload``,
    ``weight_beats``, ``result_beats`` of the accelerator)."""

    name: str
    pe: dict
    mhz: float
    source: str
    link: dict | None = None


def _measured_target(name: str, measured: FmaxMeasurement) -> Target:
    return Target(name, dict(measured.params), measured.mhz,
                  f"measured Fmax ({measured.describe()}), docs/performance.md")


#: The large ECP5 arrays at the median of their measured Fmax (arch.measurements, which
#: names the commit and seeds). The board builds' targets come from their configurations
#: (``mixbit.model_targets.board_target``).
ARRAY_TARGETS = (
    _measured_target("ECP5-85F 19x4x8 array, int8", LARGE_INT8_ARRAY),
    _measured_target("ECP5-85F 8x2x8 array, FP16", LARGE_FP16_ARRAY),
)


def _slices(stats, config: PeArrayConfig, link: dict | None) -> list[int]:
    """The column counts a Linear layer runs in: all of N, or on a board the slices that its
    weight memory and result buffer hold (:func:`workloads.kernels.tiles_per_load`)."""
    if link is None:
        return [stats.n]
    step = config.cols * tiles_per_load(config, stats.family, stats.k, link["weight_beats"], link["result_beats"])
    return [min(step, stats.n - first) for first in range(0, stats.n, step)]


def _array_cycles(run: ModelRun, config: PeArrayConfig, link: dict | None = None) -> int:
    """The run's Linear layers on another array: :meth:`PeArrayConfig.job_cycles` per job and slice."""
    return sum(-(-s.m // config.rows) * config.job_cycles(s.family, s.k, n)
               for s in run.linears for n in _slices(s, config, link))


def _link_bytes(run: ModelRun, config: PeArrayConfig, link: dict) -> int:
    """Bytes over the UART for the run's sentences on a board build, as host.driver moves them:
    per Linear layer and slice of columns its weight beats (LOAD_WEIGHTS), per job its
    activation beats (LOAD_ACT), RUN and its result beats (READ_RESULTS); per head's K and V
    the tokens to the quantize engine, the packed beats back and to the dequantize engine,
    and the dequantized tokens back; every frame's sync, header and CRC, request and reply
    (a frame holds at most ``max_payload`` bytes; the driver's polls are left out)."""
    frame_payload = link["max_payload"]

    def moved(payload: int, header: int = 0) -> int:
        frames = max(1, -(-payload // (frame_payload - header)))
        return payload + frames * (header + 2 * FRAME_BYTES)

    total = 0
    weight_beat = word_bytes(config.weight_beat_bits)
    for s in run.linears:
        groups = s.k // config.group_size
        words = pack_layout(s.family, config.group_size, config.scale_bits)["words_per_group"]
        jobs = -(-s.m // config.rows)
        for n in _slices(s, config, link):
            tiles = -(-n // config.cols)
            total += moved(tiles * groups * words * weight_beat, LOAD_WEIGHTS_LAYOUT.size)
            act = config.rows * s.k // config.lanes * word_bytes(config.act_beat_bits)
            result = tiles * config.rows * word_bytes(config.result_beat_bits)
            total += jobs * (moved(act, LOAD_ACT_LAYOUT.size) + moved(4) + moved(result))
    if run.heads:
        kv = get_design("kv_dequant").config(run.kv_params)
        token_in = kv.blocks * word_bytes(kv.lanes * kv.in_bits + 1)
        packed = word_bytes(32 + kv.tag_bits)
        token_out = kv.blocks * word_bytes(kv.lanes * kv.out_bits + kv.position_bits)
        for h in run.heads:
            total += moved(h.tokens * token_in) + 2 * moved(h.packed_beats * packed)
            total += moved(h.quantized * token_out)
    return total


def project(run: ModelRun, targets=ARRAY_TARGETS) -> list[dict]:
    """Per target: cycles and latency per sentence, and for a board the link's share at its
    baud; last, the cycle model's check against this run's measured array cycles. A run with
    random stalls has no hardware cycles to project: ValueError."""
    if run.stall:
        raise ValueError(f"the run stalled its streams at random (stall = {run.stall}): its cycles are not the "
                         f"hardware's")
    rows = []
    kv = run.kv_cycles or 0
    sentences = len(run.sentences)
    for target in targets:
        params = get_design("pe_array").resolve({**run.pe_params, **target.pe})
        config = get_design("pe_array").config(params)
        cycles = _array_cycles(run, config, target.link) + kv
        row = {"target": target.name, "array": f"{config.rows}x{config.cols}x{config.lanes}", "mhz": target.mhz,
               "clock": target.source, "cycles_per_sentence": round(cycles / sentences),
               "ms_per_sentence": round(cycles / sentences / target.mhz / 1e3, 3)}
        if target.link:
            link = _link_bytes(run, config, target.link) / sentences
            row |= {"baud": target.link["baud"], "link_bytes_per_sentence": round(link),
                    "link_ms_per_sentence": round(link * 10 / target.link["baud"] * 1e3, 1)}
        rows.append(row)
    if run.array_cycles is not None:
        model = _array_cycles(run, get_design("pe_array").config(run.pe_params))
        rows.append({"model_check": {"measured_array_cycles": run.array_cycles, "modelled": model}})
    return rows


def layer_rows(run: ModelRun) -> list[dict]:
    """Per encoder layer (over the sentences): array cycles, utilization, K/V tokens and KV cycles."""
    layers: dict[int, dict] = defaultdict(lambda: {"array_cycles": 0, "digits": 0, "capacity": 0,
                                                   "quantized": 0, "residual": 0, "kv_cycles": 0})
    peak = get_design("pe_array").config(run.pe_params).peak_terms_per_cycle()
    for s in run.linears:
        row = layers[int(s.name.split(".")[2])]
        if s.cycles is not None:
            row["array_cycles"] += s.cycles
            row["digits"] += s.utilization * s.cycles * peak
            row["capacity"] += s.cycles * peak
    for h in run.heads:
        row = layers[h.layer]
        row["quantized"] += h.quantized
        row["residual"] += h.tokens - h.quantized
        row["kv_cycles"] += h.cycles or 0
    return [{"layer": layer, "array_cycles": row["array_cycles"],
             "utilization": round(row["digits"] / row["capacity"], 4) if row["capacity"] else None,
             "kv_quantized": row["quantized"], "kv_residual": row["residual"], "kv_cycles": row["kv_cycles"]}
            for layer, row in sorted(layers.items())]


def summary(run: ModelRun, golden: ModelRun | None = None, targets=ARRAY_TARGETS) -> str:
    """The run as text: the model's set-up, the per-layer table, totals and the projections."""
    pe = run.pe_params
    mixed = " (mixed per layer)" if run.mixed else ""
    lines = [f"all-MiniLM-L6-v2 on {run.backend}: {len(run.sentences)} sentence(s), tokens "
             f"{', '.join(map(str, run.tokens))}; weights {run.family}{mixed}, "
             f"activations {run.activations}, KV {run.kv}",
             f"PE array {pe['rows']}x{pe['cols']}x{pe['lanes']} (families {','.join(pe['families'])}, "
             f"max_k {pe['max_k']})" + ("" if run.kv_params is None else
                                         f"; KV engines d={run.kv_params['d']} Tg={run.kv_params['group_tokens']} "
                                         f"in_bits={run.kv_params['in_bits']} lanes={run.kv_params['lanes']} "
                                         f"f={run.kv_params['f']} stp={run.kv_params['stp']}"), ""]
    timed = run.cycles is not None
    stalled = f" (with random stalls, p = {run.stall}: not the hardware's cycles)" if run.stall else ""
    lines += ["| layer | array cycles | utilization | K/V tokens quantized | residual | KV cycles |",
              "|---:|---:|---:|---:|---:|---:|"]
    for row in layer_rows(run):
        util = "-" if row["utilization"] is None else f"{100 * row['utilization']:.1f} %"
        cycles, kv = (row["array_cycles"], row["kv_cycles"]) if timed else ("-", "-")
        tokens = f"{row['kv_quantized']} | {row['kv_residual']}"
        lines.append(f"| {row['layer']} | {cycles} | {util} | {tokens} | {kv} |")
    lines.append("")
    if run.kv != "off":
        bits = run.kv_bits_per_element()
        lines.append(f"KV cache: {run.kv_quantized_tokens} K/V tokens quantized, {run.kv_residual_tokens} kept in "
                     f"the residual (full precision); {bits:.2f} bits per element with the residual")
        if run.kv_quantized_tokens == 0:
            lines.append(f"WARNING: no K/V token was quantized: every sentence is shorter than a group of "
                         f"{run.kv_params['group_tokens']} tokens, so the KV engines passed nothing through "
                         f"their quantized path")
    if timed:
        lines.append(f"Cycles: {run.cycles} ({run.array_cycles} PE array, {run.kv_cycles} KV engines){stalled}")
    for index, cos in enumerate(run.cosine_fp32):
        extra = "" if golden is None else f" (golden {golden.cosine_fp32[index]:.6f})"
        lines.append(f"Sentence {index + 1}: cosine vs fp32 MiniLM {cos:.6f}{extra}")
    if golden is not None:
        same = torch.equal(run.embeddings, golden.embeddings)
        lines.append("Embeddings: " + ("bit for bit the golden pipeline's" if same else "DIFFER from golden's"))
    if timed and not run.stall:
        lines += ["", "Projected latency per sentence (the array's cycles from its cycle model, "
                  "the KV engines' as measured here, one kernel after another):", "",
                  "| hardware | array | clock (MHz) | cycles | latency (ms) | UART link (ms) |",
                  "|---|---|---:|---:|---:|---:|"]
        for row in project(run, targets):
            if "model_check" in row:
                check = row["model_check"]
                verdict = "equal" if check["modelled"] == check["measured_array_cycles"] else "MISMATCH"
                lines += ["", f"Cycle model check on this run's array: {check['modelled']} modelled, "
                          f"{check['measured_array_cycles']} measured ({verdict})"]
                continue
            link = (f"{row['link_ms_per_sentence']} at {row['baud']} baud ({row['link_bytes_per_sentence']} bytes)"
                    if "baud" in row else "-")
            lines.append(f"| {row['target']} | {row['array']} | {row['mhz']:g} | {row['cycles_per_sentence']} "
                         f"| {row['ms_per_sentence']} | {link} |")
    lines.append(f"Wall time: {run.wall_s:.1f} s")
    return "\n".join(lines)
