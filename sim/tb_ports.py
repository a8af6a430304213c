"""A cocotb bench for checking a netlist against its RTL by random simulation.

Every input port the job names takes a new random value in every cycle; inputs that name
the same pool draw half of their values from one fixed set of ``pool_size`` random
values, so that a read address meets the write addresses, and the other half anywhere;
every output port the job names is recorded in every cycle. Run the same job and seed on
the RTL and on the netlist (:func:`sim.runner.run_json_job`, testcase ``ports_run``) and
compare the records. The job: ``{"inputs": {name: {"width": w, "pool": a name or
null}}, "pool_size": k, "outputs": [name, ...], "cycles": n}``; the results: ``{"outputs": [[value of each
output] for each cycle]}``. ``clk`` is driven, ``rst`` held for two cycles and released.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def ports_run(dut):
    job = json.loads(Path(os.environ["MIXBIT_JOBS"]).read_text())
    rng = random.Random(int(os.environ["MIXBIT_SEED"]))
    pools, inputs = {}, {}
    for name, spec in job["inputs"].items():
        width, pool = spec["width"], None
        if spec["pool"] is not None:
            if spec["pool"] not in pools:
                pools[spec["pool"]] = (width, [rng.getrandbits(width) for _ in range(job["pool_size"])])
            pool_width, pool = pools[spec["pool"]]
            assert pool_width == width, f"input {name} ({width} bits) shares pool {spec['pool']} ({pool_width})"
        inputs[name] = (getattr(dut, name), width, pool)
    outputs = [getattr(dut, name) for name in job["outputs"]]
    for handle, _, _ in inputs.values():
        handle.value = 0
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    records = []
    for _ in range(job["cycles"]):
        await FallingEdge(dut.clk)
        records.append([int(handle.value) for handle in outputs])
        for handle, width, pool in inputs.values():
            handle.value = rng.choice(pool) if pool and rng.random() < 0.5 else rng.getrandbits(width)
    Path(os.environ["MIXBIT_RESULTS"]).write_text(json.dumps({"outputs": records}))
