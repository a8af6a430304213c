"""cocotb side of the PE-array runs (``mixbit_pe_array``).

The host side (:func:`sim.pe_array.run_pe_array`) writes the jobs to the JSON file named
by ``MIXBIT_JOBS`` (see :mod:`host.pe_array_jobs`) and reads the result beats and cycle
counts back from ``MIXBIT_RESULTS``; it also does the comparison with golden. Random
stalls on every stream come from ``stall`` and ``seed`` in the jobs file; when
``reset_after`` is set, the first job is interrupted by a reset that many cycles in,
and then every job runs again from the start.

``mixbit sim pe_array`` runs ``pe_array_self_check``, which makes its own random jobs
for every built family and checks them against golden, with stalls.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import torch
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from gateware.designs import fp32_results, get_design
from golden.bitmod import matmul_fp16_int, matmul_int
from golden.fp16_mac import acc_from_bits, fp32_bits, matmul_fp16_mac_acc
from host.pe_array_jobs import assemble, assemble_tags, first_mismatch, plan_jobs, random_case, random_fp16
from sim.streams import CycleCounter, StreamDriver, StreamMonitor

# Far above any run the tests make (the biggest is ~200,000 cycles): a hang fails, never blocks.
_TIMEOUT_MS = 20


async def _reset(dut, cycles: int = 3) -> None:
    dut.rst.value = 1
    dut.act__valid.value = 0
    dut.w__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _configure(dut, job: dict) -> None:
    dut.family.value = job["family"]
    dut.groups.value = job["groups"]
    dut.col_tiles.value = job["col_tiles"]
    if hasattr(dut, "fp16"):             # an activations=both build: the job's mode
        dut.fp16.value = int(job.get("fp16", False))


async def run_job(dut, job: dict, rng: random.Random, stall: float) -> tuple[list[int], int, int]:
    """Drive one job; return its result beats, its cycles and the cycles until its last activation beat."""
    _configure(dut, job)
    await RisingEdge(dut.clk)            # the configuration leads the first activation beat
    act = StreamDriver(dut, "act", dut.clk, random.Random(rng.getrandbits(32)), stall)
    weights = StreamDriver(dut, "w", dut.clk, random.Random(rng.getrandbits(32)), stall)
    results = StreamMonitor(dut, "o", dut.clk, random.Random(rng.getrandbits(32)), stall)
    counter = CycleCounter(dut)
    act_task = cocotb.start_soon(act.send(job["act"]))
    weight_task = cocotb.start_soon(weights.send(job["weights"]))
    work = len(job["weights"]) + len(job["act"])
    beats = await results.receive(job["results"], max_cycles=256 + 64 * work)
    await act_task
    await weight_task
    return beats, counter.stop(), act.last_cycle


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms", skip="MIXBIT_JOBS" not in os.environ)
async def pe_array_run(dut):
    """Run the jobs of ``MIXBIT_JOBS`` and write the results to ``MIXBIT_RESULTS``."""
    with open(os.environ["MIXBIT_JOBS"]) as file:
        spec = json.load(file)
    rng = random.Random(spec["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await _reset(dut)
    if spec.get("reset_after") is not None:
        job = spec["jobs"][0]
        act = StreamDriver(dut, "act", dut.clk, random.Random(rng.getrandbits(32)), spec["stall"])
        weights = StreamDriver(dut, "w", dut.clk, random.Random(rng.getrandbits(32)), spec["stall"])
        _configure(dut, job)
        await RisingEdge(dut.clk)
        tasks = [cocotb.start_soon(act.send(job["act"])), cocotb.start_soon(weights.send(job["weights"]))]
        dut.o__ready.value = 1
        await ClockCycles(dut.clk, spec["reset_after"])
        for task in tasks:
            task.cancel()
        await _reset(dut)
    beats, cycles, loads = [], [], []
    for job in spec["jobs"]:
        job_beats, job_cycles, load_cycles = await run_job(dut, job, rng, spec["stall"])
        beats.append(job_beats)
        cycles.append(job_cycles)
        loads.append(load_cycles)
    monitor = StreamMonitor(dut, "o", dut.clk, rng)
    await monitor.expect_idle(16)
    with open(os.environ["MIXBIT_RESULTS"], "w") as file:
        json.dump({"beats": beats, "cycles": cycles, "load_cycles": loads}, file)


@cocotb.test(timeout_time=_TIMEOUT_MS, timeout_unit="ms", skip="MIXBIT_JOBS" in os.environ)
async def pe_array_self_check(dut):
    """Random weights of every built family against golden, with stalls (for ``mixbit sim``);
    an FP16 build also runs FP16 tokens (subnormals, wide exponent spreads, heavy tails); the
    FP16 MAC baseline's FP32 accumulators are compared bit for bit with ``golden.fp16_mac``."""
    design = get_design(os.environ.get("MIXBIT_DESIGN", "pe_array"))
    config = design.config(design.resolve(json.loads(os.environ["MIXBIT_PARAMS"])))
    seed = int(os.environ.get("MIXBIT_SEED", "1"))
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await _reset(dut)
    for name in config.families:
        a_q, bw = random_case(config, name, torch.Generator().manual_seed(rng.getrandbits(32)))
        tokens = [a_q] if config.activations != "fp16" else []
        if config.fp16:
            generator = torch.Generator().manual_seed(rng.getrandbits(32))
            tokens.append(random_fp16(a_q.shape[0], a_q.shape[1], generator))
        for a in tokens:
            jobs = plan_jobs(config, a, bw)
            beats = []
            for job in jobs:
                job_beats, _, _ = await run_job(dut, job.as_dict(), rng, 0.3)
                beats.append(job_beats)
            got = assemble(config, a.shape[0], bw.shape[0], jobs, beats)
            kind = "FP16" if a.dtype == torch.float16 else "int8"
            if fp32_results(design.name, config):      # the FP16 MAC baseline: FP32 accumulator bits
                got, want = fp32_bits(acc_from_bits(got)), fp32_bits(matmul_fp16_mac_acc(a, bw, config.lanes))
                _, invalid = assemble_tags(config, a.shape[0], jobs, beats)
                assert not invalid.any(), f"{name}, FP16: invalid {invalid.tolist()} (seed {seed})"
            elif a.dtype == torch.float16:
                want, want_er = matmul_fp16_int(a, bw, config.align_bits)
                er, invalid = assemble_tags(config, a.shape[0], jobs, beats)
                assert torch.equal(er, want_er) and not invalid.any(), \
                    f"{name}, FP16: exponents {er.tolist()}, expected {want_er.tolist()}; " \
                    f"invalid {invalid.tolist()} (seed {seed})"
            else:
                want = matmul_int(a, bw)
            mismatch = first_mismatch(got, want, a, bw)
            assert mismatch is None, f"{name}, {kind}: {mismatch} (seed {seed})"
