"""The PE array's jobs under Amaranth's simulator (no Verilog), with random stalls on every stream.

The fast tests drive :class:`hdl.pe_array.PeArray` (and arrays with its streams) through
the same jobs as the cocotb runs (:mod:`host.pe_array_jobs`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from amaranth.sim import Simulator

from host.pe_array_jobs import Job

__all__ = ["ArrayRun", "StreamAccountingError", "simulate_jobs", "IDLE_CYCLES"]


@dataclass
class ArrayRun:
    """The result beats of each job (integers, as on the ``o`` stream) and the cycles taken."""

    beats: list[list[int]]
    cycles: int


#: Cycles the output must stay idle after the last job's last result (as the cocotb testbench checks).
IDLE_CYCLES = 16


class StreamAccountingError(AssertionError):
    """A job's beats did not add up: an input beat not taken, or a result too many."""


def simulate_jobs(dut, jobs: list[Job], *, stall: float = 0.0, seed: int = 1, max_cycles: int = 100_000
                  ) -> ArrayRun:
    """Run ``jobs`` through ``dut``, counting every beat as the cocotb testbench does.

    Asserted: a stalled result holds its payload; when a job's last result is taken, every
    activation and weight beat of the job has been taken; after the last job the output
    stays idle for :data:`IDLE_CYCLES` cycles (no extra result). ``stall`` is the
    probability of a stall in each cycle of every stream. A ``dut`` with an ``fp16`` input
    (a ``both`` build) gets each job's mode there.
    """
    rng = random.Random(seed)
    results, cycles = [], 0
    has_fp16 = hasattr(dut, "fp16")

    async def run(ctx, job):
        nonlocal cycles
        ctx.set(dut.family, job.family)
        ctx.set(dut.groups, job.groups)
        ctx.set(dut.col_tiles, job.col_tiles)
        if has_fp16:
            ctx.set(dut.fp16, job.fp16)
        await ctx.tick()                 # the configuration leads the first activation beat
        act = weights = 0
        beats, held = [], None
        while len(beats) < job.results:
            act_valid = act < len(job.act) and rng.random() >= stall
            weight_valid = weights < len(job.weights) and rng.random() >= stall
            ready = rng.random() >= stall
            ctx.set(dut.act.valid, act_valid)
            ctx.set(dut.act.payload.as_value(), job.act[act] if act_valid else 0)
            ctx.set(dut.w.valid, weight_valid)
            ctx.set(dut.w.payload, job.weights[weights] if weight_valid else 0)
            ctx.set(dut.o.ready, ready)
            _, _, act_ready, weight_ready, valid, payload = await ctx.tick().sample(
                dut.act.ready, dut.w.ready, dut.o.valid, dut.o.payload.as_value())
            cycles += 1
            act += act_valid and act_ready
            weights += weight_valid and weight_ready
            if held is not None:
                assert valid and payload == held, "a stalled result was withdrawn or changed"
            held = payload if valid and not ready else None
            if valid and ready:
                beats.append(payload)
            assert cycles < max_cycles, f"{len(beats)} of {job.results} results came"
        ctx.set(dut.act.valid, 0)
        ctx.set(dut.w.valid, 0)
        if (act, weights) != (len(job.act), len(job.weights)):
            raise StreamAccountingError(
                f"job {len(results)}: all {job.results} results came with {act} of {len(job.act)} activation "
                f"beats and {weights} of {len(job.weights)} weight beats taken")
        return beats

    async def expect_idle(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(IDLE_CYCLES):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            if valid:
                raise StreamAccountingError(
                    f"a result too many ({payload:#x}) {cycle} cycles after the last job's last result")

    async def testbench(ctx):
        for job in jobs:
            results.append(await run(ctx, job))
        await expect_idle(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return ArrayRun(results, cycles)

