"""cocotb helpers shared by the KV engines' testbenches: reset and one streamed job."""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from sim.streams import CycleCounter, StreamDriver, StreamMonitor

__all__ = ["reset", "run_stream_job"]


async def reset(dut) -> None:
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def run_stream_job(dut, job: dict, rng: random.Random) -> tuple[list[int], int]:
    """Set the run-time ``mode`` inputs, send ``beats`` into ``i`` and receive ``expect`` payloads of ``o``.

    Both streams stall at random with probability ``stall``; afterwards nothing more may
    come out. Returns the payloads and the cycles from the first input beat to the last output.
    """
    for name, value in job["mode"].items():
        getattr(dut, name).value = int(value)
    await RisingEdge(dut.clk)
    driver = StreamDriver(dut, "i", dut.clk, random.Random(rng.getrandbits(32)), job["stall"])
    monitor = StreamMonitor(dut, "o", dut.clk, random.Random(rng.getrandbits(32)), job["stall"])
    counter = CycleCounter(dut)
    sender = cocotb.start_soon(driver.send(job["beats"]))
    words = await monitor.receive(job["expect"], max_cycles=1024 + 64 * (len(job["beats"]) + job["expect"]))
    cycles = counter.stop()
    await sender
    await monitor.expect_idle(64)
    return words, cycles
