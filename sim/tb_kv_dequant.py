"""cocotb side of the KV dequantize engine runs (``mixbit_kv_dequant``).

The host side (:func:`sim.kv_dequant.run_kv_dequantizer`) writes the job (input beats,
run-time mode, stalls, seed, output beats to expect) to ``MIXBIT_JOBS`` and reads the
output payloads and the cycle count back from ``MIXBIT_RESULTS``. ``mixbit sim
kv_dequant`` runs ``kv_dequant_self_check``: golden-quantized random groups in every
mode, with stalls, against golden's dequantization.
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
from host.kv_beats import unpack_output
from sim.kv_cocotb import reset, run_stream_job
from sim.kv_dequant import check_tokens_against_golden, make_job

_TIMEOUT_MS = 50


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms", skip="MIXBIT_JOBS" not in os.environ)
async def kv_dequant_run(dut):
    """Run the job of ``MIXBIT_JOBS`` and write its output payloads to ``MIXBIT_RESULTS``."""
    with open(os.environ["MIXBIT_JOBS"]) as file:
        job = json.load(file)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)
    words, cycles = await run_stream_job(dut, job, random.Random(job["seed"]))
    with open(os.environ["MIXBIT_RESULTS"], "w") as file:
        json.dump({"words": [str(w) for w in words], "cycles": cycles}, file)


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms", skip="MIXBIT_JOBS" in os.environ)
async def kv_dequant_self_check(dut):
    """Golden-quantized keys and values in every run-time mode, dequantized against golden, with stalls."""


    design = get_design("kv_dequant")
    config = design.config(design.resolve(json.loads(os.environ["MIXBIT_PARAMS"])))
    seed = int(os.environ.get("MIXBIT_SEED", "1"))
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    modes = [("key", "ternary", False), ("value", "ternary", False), ("value", "2bit", False)]
    if config.stp:
        modes.append(("value", "ternary", True))
    for f in (0.0, 0.5, 1.0):
        for kind, value_format, stp in modes:
            await reset(dut)
            tokens = 2 * config.group_tokens + 3
            high = 1 << (config.in_bits - 1)
            x = torch.randint(-high, high, (tokens, config.d), generator=gen)
            salient = torch.rand(tokens, generator=gen) < 0.3 if stp else None
            packed = pack_tokens(x, kind, f=f, stp=stp, salient=salient, **config.golden_options(value_format))
            job = make_job(config, packed, stall=0.3, seed=rng.getrandbits(31))
            words, _ = await run_stream_job(dut, job, rng)
            got, positions = unpack_output(config, words)
            problem = check_tokens_against_golden(config, packed, got, positions)
            assert problem is None, f"{kind} {value_format} stp={stp} f={f}: {problem} (seed {seed})"
