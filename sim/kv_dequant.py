"""Run the generated KV dequantize engine: ``run_kv_dequantizer(params, packed)``."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from arch.kv_config import KvConfig
from gateware.designs import get_design
from golden.vidkv_pack import PackedKV
from golden.vidkv_stream import dequantize_packed, stream_beats
from host.kv_beats import check_packed, packed_mode, unpack_output

from .runner import Build, build_design, check_stall, run_json_job

__all__ = ["KvDequantRun", "run_kv_dequantizer", "run_kv_dequantizer_detailed", "make_job",
           "check_tokens_against_golden"]


@dataclass
class KvDequantRun:
    """A run's tokens [n, D] and positions [n] in position order, the engine's output order, cycles."""

    tokens: torch.Tensor
    positions: torch.Tensor
    output_positions: torch.Tensor
    cycles: int
    params: dict



def make_job(config: KvConfig, packed: dict[str, PackedKV], *, stall: float, seed: int) -> dict:
    """The JSON job of one run for ``sim.tb_kv_dequant``."""
    beats = [data | tag << 32 for tag, data in stream_beats(packed)]
    expect = sum(p.groups * p.group_tokens for p in packed.values()) * config.blocks
    return {"beats": beats, "mode": packed_mode(packed), "stall": stall, "seed": seed, "expect": expect}


def check_tokens_against_golden(config: KvConfig, packed, tokens: torch.Tensor,
                                positions: torch.Tensor) -> str | None:
    """None when the engine's tokens equal golden's dequantization; else the first difference."""
    want, want_positions = dequantize_packed(packed, config.frac_bits)
    order = torch.argsort(positions)
    if tokens.shape != want.shape:
        return f"{tokens.shape[0]} tokens, golden {want.shape[0]}"
    if not torch.equal(positions[order], want_positions):
        return f"positions {positions.tolist()[:8]}... != golden's {want_positions.tolist()[:8]}..."
    bad = (tokens[order] != want).nonzero()
    if len(bad):
        t, c = (int(v) for v in bad[0])
        return (f"token at position {int(want_positions[t])}, channel {c}: {int(tokens[order][t, c])}, "
                f"golden {int(want[t, c])}")
    return None


def run_kv_dequantizer_detailed(params: dict, packed: dict[str, PackedKV], *, simulator: str = "verilator",
                                stall: float = 0.0, seed: int | None = None,
                                build: Build | None = None, verbose: bool = False) -> KvDequantRun:
    """:func:`run_kv_dequantizer` with stalls on both streams, a seed and an existing build (for tests).

    ``stall`` is the probability of a stall in each cycle of both streams, a real number in
    [0, 1) (0: none), checked before anything is built; ``verbose`` as in :func:`run_kv_dequantizer`.
    """
    stall = check_stall(stall)
    design = get_design("kv_dequant")
    params = design.resolve(dict(params))
    config = design.config(params)
    packed_mode(packed)
    check_packed(config, packed)
    seed = random.randrange(1 << 31) if seed is None else seed
    job = make_job(config, packed, stall=stall, seed=seed)
    if build is None:
        build, params = build_design("kv_dequant", params, simulator)
    results = run_json_job(build, "sim.tb_kv_dequant", params, job, seed=seed, testcase="kv_dequant_run",
                           verbose=verbose)
    tokens, positions = unpack_output(config, [int(w) for w in results["words"]])
    order = torch.argsort(positions)
    return KvDequantRun(tokens[order], positions[order], positions, results["cycles"], params)


def run_kv_dequantizer(params: dict, packed: dict[str, PackedKV], simulator: str = "verilator", *,
                       verbose: bool = False) -> tuple[torch.Tensor, int]:
    """Dequantize packed groups on the generated KV dequantize engine; return ``(tokens, cycles)``.

    Parameters
    ----------
    params : dict
        Generator parameters, the names of ``mixbit generate kv_dequant -p`` (d,
        group_tokens, in_bits, lanes, ternary_layout, stp, frac_bits, and for FFT keys
        fft, f, fft_butterflies).
    packed : dict of path -> PackedKV
        What :func:`sim.kv_quant.run_kv_quantizer` (or golden's ``pack_tokens``) returns;
        the run-time mode (2-bit values, STP) is read from it.
    simulator : "verilator" or "icarus"
    verbose : bool
        Show the simulator's output (cocotb's log) on stdout; by default it goes to
        ``sim.log`` in the run's folder, which a :class:`sim.runner.SimulationFailed` names.

    Returns the tokens [n, D] of every group, fixed point with ``frac_bits`` fraction
    bits, in original token order (sorted by the positions the engine sends with each
    token; :func:`run_kv_dequantizer_detailed` also returns them) - exactly
    :func:`golden.vidkv_stream.dequantize_packed` - and the cycles from the first input
    beat to the last output beat.
    """
    run = run_kv_dequantizer_detailed(params, packed, simulator=simulator, verbose=verbose)
    return run.tokens, run.cycles
