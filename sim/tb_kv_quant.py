"""cocotb side of the KV quantize engine runs (``mixbit_kv_quant``).

The host side (:func:`sim.kv_quant.run_kv_quantizer`) writes the job to the JSON file
named by ``MIXBIT_JOBS``: input beats, run-time mode, stall probability, seed and the
number of output beats to expect; the beats and the cycle count go back through
``MIXBIT_RESULTS``. ``mixbit sim kv_quant`` runs ``kv_quant_self_check``: random keys
and values in every mode, with stalls, checked against golden.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import torch
from cocotb.clock import Clock

from gateware.designs import get_design
from golden.vidkv_stream import pack_tokens
from sim.kv_cocotb import reset, run_stream_job
from sim.kv_quant import first_difference, make_job, parse_job_beats

_TIMEOUT_MS = 50


async def run_job(dut, job: dict, rng: random.Random) -> tuple[list[list[int]], int]:
    """Drive one job's tokens; return the ``[tag, data]`` beats and the cycles from first input to last output."""
    words, cycles = await run_stream_job(dut, job, rng)
    return [[w >> 32, w & 0xFFFFFFFF] for w in words], cycles


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms", skip="MIXBIT_JOBS" not in os.environ)
async def kv_quant_run(dut):
    """Run the job of ``MIXBIT_JOBS`` and write its beats to ``MIXBIT_RESULTS``."""
    with open(os.environ["MIXBIT_JOBS"]) as file:
        job = json.load(file)
    rng = random.Random(job["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)
    beats, cycles = await run_job(dut, job, rng)
    with open(os.environ["MIXBIT_RESULTS"], "w") as file:
        json.dump({"beats": beats, "cycles": cycles}, file)


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms", skip="MIXBIT_JOBS" in os.environ)
async def kv_quant_self_check(dut):
    """Random keys and values in every run-time mode against golden, with stalls (for ``mixbit sim``)."""


    config = get_design("kv_quant").config(get_design("kv_quant").resolve(json.loads(os.environ["MIXBIT_PARAMS"])))
    seed = int(os.environ.get("MIXBIT_SEED", "1"))
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    modes = [("key", "ternary", False), ("value", "ternary", False), ("value", "2bit", False)]
    if config.stp:
        modes.append(("value", "ternary", True))
    for kind, value_format, stp in modes:
        await reset(dut)
        tokens = 2 * config.group_tokens + 3
        high = 1 << (config.in_bits - 1)
        x = torch.randint(-high, high, (tokens, config.d), generator=gen)
        salient = torch.rand(tokens, generator=gen) < 0.3 if stp else None
        job = make_job(config, x, kind, value_format, salient, stall=0.3, seed=rng.getrandbits(31))
        beats, _ = await run_job(dut, job, rng)
        got = parse_job_beats(config, beats, value_format, stp)
        want = pack_tokens(x, kind, f=config.f, stp=stp, salient=salient, **config.golden_options(value_format))
        difference = first_difference(got, want, x)
        assert difference is None, f"{kind} {value_format} stp={stp}: {difference} (seed {seed})"
