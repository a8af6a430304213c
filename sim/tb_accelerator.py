"""cocotb regression of the accelerator top (``mixbit_accelerator``): the host driver itself
(host.driver.Accelerator) talks to the generated Verilog through a bit-level UART model,
and every result is compared with golden.

The driver is blocking code; it runs in a cocotb bridge thread and its port's ``read``
waits in simulated time (``cocotb.task.resume``). Parameters arrive as JSON in
``MIXBIT_PARAMS``, the seed in ``MIXBIT_SEED``.
"""

from __future__ import annotations

import json
import os
from collections import deque

import cocotb
import torch
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

import golden.bitmod as gb
from arch.accelerator_config import AcceleratorConfig
from arch.link import Command, Status, encode_request
from golden.vidkv_stream import pack_tokens
from host.driver import Accelerator
from host.kv_beats import corner_tokens
from host.pe_array_jobs import first_mismatch
from sim.kv_dequant import check_tokens_against_golden
from sim.kv_quant import first_difference


class UartPort:
    """A serial port for the driver: ``write`` queues bytes that are sent on ``rx`` as 8N1
    frames; ``read(n)`` returns once ``n`` bytes came back on ``tx`` or after
    ``timeout_cycles`` clock cycles with none (then with what there is)."""

    def __init__(self, dut, divisor: int, timeout_cycles: int):
        self.dut, self.divisor, self.timeout_cycles = dut, divisor, timeout_cycles
        self.outgoing: deque[int] = deque()
        self.incoming = bytearray()

    async def send_forever(self):
        dut, divisor = self.dut, self.divisor
        while True:
            if not self.outgoing:
                await RisingEdge(dut.clk)
                continue
            byte = self.outgoing.popleft()
            for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
                dut.rx.value = bit
                await ClockCycles(dut.clk, divisor)

    async def receive_forever(self):
        dut, divisor = self.dut, self.divisor
        while True:
            await FallingEdge(dut.tx)
            await ClockCycles(dut.clk, divisor // 2)
            byte = 0
            for k in range(8):
                await ClockCycles(dut.clk, divisor)
                byte |= int(dut.tx.value) << k
            await ClockCycles(dut.clk, divisor)         # the stop bit's middle
            self.incoming.append(byte)

    def write(self, data: bytes) -> None:
        self.outgoing.extend(data)

    def reset_input_buffer(self) -> None:
        self.incoming.clear()

    @resume
    async def read(self, n: int) -> bytes:
        waited = 0
        while len(self.incoming) < n and waited < self.timeout_cycles:
            before = len(self.incoming)
            await ClockCycles(self.dut.clk, 64)
            waited = 0 if len(self.incoming) > before else waited + 64
        data = bytes(self.incoming[:n])
        del self.incoming[:n]
        return data


async def _start(dut) -> tuple[AcceleratorConfig, UartPort]:
    config = AcceleratorConfig.from_params(json.loads(os.environ["MIXBIT_PARAMS"]))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    divisor = config.divisor
    port = UartPort(dut, divisor, timeout_cycles=config.timeout_cycles + 200 * divisor)
    cocotb.start_soon(port.send_forever())
    cocotb.start_soon(port.receive_forever())
    return config, port


def _session(config: AcceleratorConfig, port: UartPort, seed: int) -> list[str]:
    """The driver's whole repertoire on the simulated top; the problems found."""
    problems = []
    gen = torch.Generator().manual_seed(seed)
    acc = Accelerator(port, timeout=600)
    if acc.info != config.info():
        problems.append(f"INFO {acc.info} != the build's {config.info()}")
    if config.has_pe:
        family = config.pe.families[seed % len(config.pe.families)]
        k = 2 * config.pe.group_size
        bw = gb.quantize(torch.randn(2 * config.pe.cols + 1, k, generator=gen), family,
                         group_size=config.pe.group_size, scale_bits=config.pe.scale_bits)
        acc.load_weights(bw)
        a_q = torch.randint(-128, 128, (config.pe.rows + 1, k), generator=gen, dtype=torch.int8)
        if (problem := first_mismatch(acc.gemm(a_q), gb.matmul_int(a_q, bw), a_q, bw)) is not None:
            problems.append(f"gemm ({family}): {problem}")
    if config.has_kv:
        kv = acc.kv_config
        x = corner_tokens(kv, kv.group_tokens, seed=seed)
        want = pack_tokens(x, "key", f=kv.f, **kv.golden_options("ternary"))
        got = acc.quantize_kv(x, "key")
        if (problem := first_difference(got, want, x)) is not None:
            problems.append(f"quantize_kv: {problem}")
        tokens, positions = acc.dequantize_kv(want)
        if (problem := check_tokens_against_golden(kv, want, tokens, positions)) is not None:
            problems.append(f"dequantize_kv: {problem}")
    frame = bytearray(encode_request(Command.INFO))
    frame[-2] ^= 1
    status, _ = acc.exchange(bytes(frame))
    if status != Status.CRC:
        problems.append(f"a corrupted INFO got status {status}, not CRC")
    if acc.request(Command.INFO) == b"":
        problems.append("INFO after an error reply came back empty")
    return problems


@cocotb.test(timeout_time=200, timeout_unit="ms")
async def accelerator_driver_session(dut):
    """INFO, a GEMM of rows + 1 tokens, a KV group quantized and dequantized, a corrupted request."""
    config, port = await _start(dut)
    seed = int(os.environ.get("MIXBIT_SEED", "1"))
    problems = await bridge(_session)(config, port, seed)
    assert not problems, f"{problems[0]} (seed {seed})"
