"""Run the KV engines under Amaranth's simulator (fast unit tests; no Verilog)."""

from __future__ import annotations

import random
import sys

import torch
from amaranth.sim import Simulator

from arch.kv_config import KvConfig
from golden.vidkv_stream import parse_beats, stream_beats
from hdl.kv_dequant import KvDequantizer
from hdl.kv_quant import KvQuantizer
from hdl.kv_spectral import token_cycles
from host.kv_beats import token_beats, unpack_output

__all__ = ["simulate_kv_quantizer", "simulate_kv_dequantizer"]


def _run(dut, mode: dict, beats_in: list[int], *, stall: float, seed: int, quiet: int,
         in_stall: float | None = None) -> tuple[list[int], int]:
    """Send ``beats_in`` into ``dut.i`` and collect ``dut.o`` payloads (ints), both with random stalls
    (``in_stall``, when given, for the input alone).

    Stops ``quiet`` cycles after the last input beat with nothing more out; returns the
    payloads and the cycle of the last one.
    """
    rng = random.Random(seed)
    received: list[int] = []
    state = {"sent": False, "cycles": 0, "last": 0}

    async def producer(ctx):
        for name, value in mode.items():
            ctx.set(getattr(dut, name), value)
        for beat in beats_in:
            while rng.random() < (stall if in_stall is None else in_stall):
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), beat)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        state["sent"] = True

    async def consumer(ctx):
        idle = 0
        while idle < quiet:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            state["cycles"] += 1
            if valid and ready:
                received.append(int(payload))
                state["last"] = state["cycles"]
                idle = 0
            elif state["sent"]:
                idle += 1

    # Amaranth's Python simulator compiles wide multiplexers (64 lanes) into deeply nested
    # expressions; Python's default recursion limit is too low for them.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return received, state["last"]


def simulate_kv_quantizer(config: KvConfig, x: torch.Tensor, kind: str, *, value_format: str = "ternary",
                          salient: torch.Tensor | None = None, stall: float = 0.0, seed: int = 0,
                          in_stall: float | None = None):
    """Quantize tokens ``x`` [T, D] on the Amaranth model; return ``(packed per path, beats, cycles)``.

    ``cycles`` counts from the start to the last output beat.
    """
    stp = salient is not None
    mode = {"kind": kind == "value", "value_2bit": value_format == "2bit", "stp": stp}
    words, cycles = _run(KvQuantizer(config), mode, token_beats(config, x, salient), stall=stall, seed=seed,
                         in_stall=in_stall,
                         quiet=64 + 8 * config.blocks * config.group_tokens
                         + config.slots_per_path * config.group_tokens * token_cycles(config))
    beats = [(w >> 32, w & 0xFFFFFFFF) for w in words]
    packed = parse_beats(beats, d=config.d, n_hi=config.n_hi, stp=stp, **config.golden_options(value_format))
    return packed, beats, cycles


def simulate_kv_dequantizer(config: KvConfig, packed: dict, *, value_format: str = "ternary", stp: bool = False,
                            stall: float = 0.0, seed: int = 0):
    """Dequantize packed groups (per path) on the Amaranth model; return ``(tokens, positions, cycles)``.

    ``tokens`` [n, D] and ``positions`` [n] come in the engine's output order.
    """
    beats = [data | tag << 32 for tag, data in stream_beats(packed)]
    mode = {"value_2bit": value_format == "2bit", "stp": stp}
    words, cycles = _run(KvDequantizer(config), mode, beats, stall=stall, seed=seed,
                         quiet=64 + 4 * config.blocks * config.group_tokens
                         + 4 * config.group_tokens * token_cycles(config))
    tokens, positions = unpack_output(config, words)
    return tokens, positions, cycles
