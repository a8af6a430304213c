"""Run the generated KV quantize engine: ``run_kv_quantizer(params, x, kind)``."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from arch.kv_config import KvConfig
from gateware.designs import get_design
from golden.vidkv_pack import PackedKV
from golden.vidkv_stream import beats_per_group, group_counts
from host.kv_beats import check_run_inputs, parse_job_beats, token_beats

from .runner import Build, build_design, check_stall, run_json_job

__all__ = ["KvQuantRun", "run_kv_quantizer", "run_kv_quantizer_detailed", "make_job", "first_difference"]


@dataclass
class KvQuantRun:
    """A run's packed groups per path, its raw ``(tag, data)`` beats and its cycles."""

    packed: dict[str, PackedKV]
    beats: list[tuple[int, int]]
    cycles: int
    params: dict


def make_job(config: KvConfig, x: torch.Tensor, kind: str, value_format: str, salient, *, stall: float,
             seed: int) -> dict:
    """The JSON job of one run for ``sim.tb_kv_quant``."""
    stp = salient is not None
    counts = group_counts(kind, x.shape[0], config.group_tokens, salient)
    expect = sum(n * beats_per_group(path, d=config.d, group_tokens=config.group_tokens, n_hi=config.n_hi,
                                     value_format=value_format, ternary_layout=config.ternary_layout, stp=stp)
                 for path, n in counts.items())
    mode = {"kind": kind == "value", "value_2bit": value_format == "2bit", "stp": stp}
    return {"beats": token_beats(config, x, salient), "mode": mode, "stall": stall, "seed": seed, "expect": expect}


def first_difference(got: dict[str, PackedKV], want: dict[str, PackedKV], x: torch.Tensor) -> str | None:
    """None when both hold the same packed groups; else the first difference, with the group's inputs."""
    if got.keys() != want.keys():
        return f"paths {sorted(got)} != golden's {sorted(want)}"
    for path, a in got.items():
        b = want[path]
        fields = [("words", a.words, b.words), ("trits", a.trits, b.trits),
                  ("positions", a.positions, b.positions)]
        fields += [(f"meta[{name!r}]", a.meta.get(name), b.meta[name]) for name in b.meta]
        for name, mine, theirs in fields:
            if theirs is None and mine is None:
                continue
            if mine is None or theirs is None or mine.shape != theirs.shape:
                return f"{path}: {name} shape {None if mine is None else list(mine.shape)} != golden's " \
                       f"{None if theirs is None else list(theirs.shape)}"
            bad = (mine.to(torch.int64) != theirs.to(torch.int64)).nonzero()
            if len(bad):
                g, i = (int(v) for v in bad[0])
                tokens = (b.positions[g] if b.positions is not None
                          else torch.arange(g * b.group_tokens, (g + 1) * b.group_tokens)).tolist()
                where = f"{path}: group {g} (tokens {tokens[0]}..{tokens[-1]}) {name}[{i}]"
                inputs = ""
                if name.startswith("meta") and b.kind == "value" and path == "value" and b.positions is None:
                    inputs = f"; channel {i} inputs {x[tokens, i].tolist()}"
                return f"{where} = {int(mine[g, i])}, golden {int(theirs[g, i])}{inputs}"
    return None


def run_kv_quantizer_detailed(params: dict, x: torch.Tensor, kind: str = "key", *, salient=None,
                              value_format: str = "ternary", simulator: str = "verilator", stall: float = 0.0,
                              seed: int | None = None, build: Build | None = None,
                              verbose: bool = False) -> KvQuantRun:
    """:func:`run_kv_quantizer` with stalls on both streams, a seed and an existing build (for tests).

    ``stall`` is the probability of a stall in each cycle of both streams, a real number in
    [0, 1) (0: none), checked before anything is built; ``verbose`` as in :func:`run_kv_quantizer`.
    """
    stall = check_stall(stall)
    design = get_design("kv_quant")
    params = design.resolve(dict(params))
    config = design.config(params)
    check_run_inputs(config, x, kind, salient, value_format)
    seed = random.randrange(1 << 31) if seed is None else seed
    job = make_job(config, x, kind, value_format, salient, stall=stall, seed=seed)
    if build is None:
        build, params = build_design("kv_quant", params, simulator)
    results = run_json_job(build, "sim.tb_kv_quant", params, job, seed=seed, testcase="kv_quant_run",
                           verbose=verbose)
    beats = [tuple(b) for b in results["beats"]]
    packed = parse_job_beats(config, beats, value_format, salient is not None)
    return KvQuantRun(packed, beats, results["cycles"], params)


def run_kv_quantizer(params: dict, x: torch.Tensor, kind: str = "key", salient=None, simulator: str = "verilator",
                     *, value_format: str = "ternary", verbose: bool = False) -> tuple[dict[str, PackedKV], int]:
    """Quantize tokens ``x`` on the generated KV quantize engine; return ``(packed, cycles)``.

    Parameters
    ----------
    params : dict
        Generator parameters, the names of ``mixbit generate kv_quant -p`` (d,
        group_tokens, in_bits, lanes, f, ternary_layout, stp); missing ones take defaults.
    x : integer tensor [T, D]
        Tokens in arrival order, each element within ``in_bits`` signed bits.
    kind : "key" or "value"
    salient : bool tensor [T], optional
        Values only: salient-token protection; flagged tokens go to the 2-bit path.
    simulator : "verilator" or "icarus"
    value_format : "ternary" or "2bit"
        Values: the format of the (non-salient) path.
    verbose : bool
        Show the simulator's output (cocotb's log) on stdout; by default it goes to
        ``sim.log`` in the run's folder, which a :class:`sim.runner.SimulationFailed` names.

    Returns the packed groups per path (``"key"``, ``"value"``, ``"salient"``), exactly
    what :func:`golden.vidkv_stream.pack_tokens` gives for the same inputs (tokens of an
    incomplete group stay in the engine), and the cycles from the first input beat to
    the last output beat. The design is built once per parameter set and simulator
    and cached.
    """
    run = run_kv_quantizer_detailed(params, x, kind, salient=salient, value_format=value_format,
                                    simulator=simulator, verbose=verbose)
    return run.packed, run.cycles
