"""Run the KV quantize engine under Amaranth's simulator (fast unit tests; no Verilog)."""

from __future__ import annotations

import random
import sys

import torch
from amaranth.sim import Simulator

from golden.vidkv_stream import parse_beats
from hdl.kv_config import KvConfig
from hdl.kv_quant import KvQuantizer

from .kv_tokens import token_beats

__all__ = ["simulate_kv_quantizer"]


def simulate_kv_quantizer(config: KvConfig, x: torch.Tensor, kind: str, *, value_format: str = "ternary",
                          salient: torch.Tensor | None = None, stall: float = 0.0, seed: int = 0):
    """Quantize tokens ``x`` [T, D] on the Amaranth model; return ``(packed per path, beats, cycles)``.

    ``cycles`` counts from the start to the last output beat.
    """
    dut = KvQuantizer(config)
    beats_in = token_beats(config, x, salient)
    stp = salient is not None
    rng = random.Random(seed)
    received: list[tuple[int, int]] = []
    state = {"sent": False, "cycles": 0, "last": 0}

    async def producer(ctx):
        ctx.set(dut.kind, kind == "value")
        ctx.set(dut.value_2bit, value_format == "2bit")
        ctx.set(dut.stp, stp)
        for beat in beats_in:
            while rng.random() < stall:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), beat)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        state["sent"] = True

    async def consumer(ctx):
        idle = 0
        while idle < 64 + 8 * config.blocks * config.group_tokens:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            *_, valid, tag, data = await ctx.tick().sample(dut.o.valid, dut.o.payload.tag, dut.o.payload.data)
            state["cycles"] += 1
            if valid and ready:
                received.append((int(tag), int(data)))
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
    packed = parse_beats(received, d=config.d, n_hi=config.n_hi, stp=stp,
                         **config.golden_options(value_format))
    return packed, received, state["last"]
