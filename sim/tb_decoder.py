"""cocotb regression of the weight decoder (``mixbit_decoder``) against golden.formats.

Run through :func:`sim.runner.run_regression`; parameters arrive as JSON in
``MIXBIT_PARAMS``, the seed in ``MIXBIT_SEED``. When ``MIXBIT_DUMP`` names a file,
the exhaustive test writes the raw output words there, so a synthesized netlist can
be compared word for word with the RTL.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from arch.bitmod import check_families
from hdl.decoder import decoder_layouts
from sim.decoder_check import decoder_vectors, first_mismatch
from sim.streams import StreamDriver, StreamMonitor


def _setup(dut):
    params = json.loads(os.environ["MIXBIT_PARAMS"])
    families = check_families(params["families"])
    seed = int(os.environ.get("MIXBIT_SEED", "1"))
    dut._log.info("families=%s seed=%d", ",".join(families), seed)
    return families, seed


async def _reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.family.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _items(families, vectors):
    input_layout, _ = decoder_layouts(families)
    return [{"payload": input_layout.const({"code": code, "dt": dt}).as_bits(),
             "family": family_id} for family_id, code, dt in vectors]


# Timeouts far above the ~3,000 cycles of the biggest run: a hang fails, it never blocks CI.
@cocotb.test(timeout_time=1, timeout_unit="ms")
async def decoder_exhaustive(dut):
    """Every family x code x dt (and unbuilt family IDs), random stalls on both streams."""
    families, seed = _setup(dut)
    rng = random.Random(seed)
    vectors = decoder_vectors(families, rng)
    await _reset(dut)
    stall = float(os.environ.get("MIXBIT_STALL", "0.3"))
    driver = StreamDriver(dut, "i", dut.clk, random.Random(rng.getrandbits(32)), stall)
    monitor = StreamMonitor(dut, "o", dut.clk, random.Random(rng.getrandbits(32)), stall)
    sender = cocotb.start_soon(driver.send(_items(families, vectors)))
    words = await monitor.receive(len(vectors))
    await sender
    await monitor.expect_idle()
    if os.environ.get("MIXBIT_DUMP"):
        with open(os.environ["MIXBIT_DUMP"], "w") as dump:
            json.dump({"seed": seed, "vectors": vectors, "words": words}, dump)
    mismatch = first_mismatch(families, vectors, words)
    assert mismatch is None, f"{mismatch} (seed {seed})"
    if stall:
        assert driver.stall_cycles and monitor.stall_cycles, "the stalls never happened"
    dut._log.info("%d vectors, %d input stalls, %d output stalls",
                  len(vectors), driver.stall_cycles, monitor.stall_cycles)


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def decoder_full_throughput(dut):
    """Without stalls the decoder takes one code per cycle with a latency of one cycle."""
    families, seed = _setup(dut)
    vectors = decoder_vectors(families, random.Random(seed))
    await _reset(dut)
    driver = StreamDriver(dut, "i", dut.clk, random.Random(seed))
    monitor = StreamMonitor(dut, "o", dut.clk, random.Random(seed))
    cycles = 0

    async def count_cycles():
        nonlocal cycles
        while True:
            await ReadOnly()
            if dut.i__valid.value or dut.o__valid.value:
                cycles += 1
            await RisingEdge(dut.clk)

    cocotb.start_soon(count_cycles())
    sender = cocotb.start_soon(driver.send(_items(families, vectors)))
    words = await monitor.receive(len(vectors))
    await sender
    await monitor.expect_idle()
    mismatch = first_mismatch(families, vectors, words)
    assert mismatch is None, f"{mismatch} (seed {seed})"
    assert cycles == len(vectors) + 1, (
        f"{len(vectors)} codes took {cycles} cycles, expected {len(vectors) + 1} (seed {seed})"
    )
