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
from host.pe_array_jobs import first_mismatch, random_fp16
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


def _gemm_problems(acc: Accelerator, config: AcceleratorConfig, gen: torch.Generator) -> list[str]:
    """Every family built into the array: an int8 GEMM of rows + 1 tokens (two jobs) over two
    weight groups, and in an FP16 build a float16 GEMM of delicate tokens; each against golden."""
    pe, problems = config.pe, []
    k = 2 * pe.group_size
    for family in pe.families:
        bw = gb.quantize(torch.randn(2 * pe.cols + 1, k, generator=gen), family,
                         group_size=pe.group_size, scale_bits=pe.scale_bits)
        acc.load_weights(bw)
        if pe.activations != "fp16":
            a_q = torch.randint(-128, 128, (pe.rows + 1, k), generator=gen, dtype=torch.int8)
            if (problem := first_mismatch(acc.gemm(a_q), gb.matmul_int(a_q, bw), a_q, bw)) is not None:
                problems.append(f"gemm int8 ({family}): {problem}")
        if pe.activations != "int8":
            a = random_fp16(pe.rows + 1, k, gen)
            got, want = acc.gemm(a), gb.matmul_fp16(a, bw, pe.align_bits)
            if not torch.equal(got.view(torch.int32), want.view(torch.int32)):
                m, n = (got.view(torch.int32) != want.view(torch.int32)).nonzero()[0].tolist()
                problems.append(f"gemm fp16 ({family}): token {m}, channel {n}: {got[m, n].item()!r} != golden's "
                                f"{want[m, n].item()!r} (token {a[m].tolist()})")
    return problems


#: The KV jobs: keys, and ternary values with salient tokens kept at 2 bits (an STP build: both
#: value paths, the salient one with its positions). 2-bit values are left to the KV engines'
#: own regressions and the simulated board's driver test: over the UART each KV job costs
#: about 1.5 ms of simulated time, 80 s on Icarus.
KV_MODES = (("key", "ternary", False), ("value", "ternary", True))


def _kv_problems(acc: Accelerator, config: AcceleratorConfig, seed: int) -> list[str]:
    """Each of :data:`KV_MODES` the build has: quantized on the engine against golden's packing,
    and golden's packing dequantized on the engine against golden's dequantization."""
    kv, problems = acc.kv_config, []
    for kind, value_format, stp in KV_MODES:
        if stp and not kv.stp:
            continue
        tokens = 2 * kv.group_tokens if stp else kv.group_tokens
        x = corner_tokens(kv, tokens, seed=seed)
        # Every other token salient: one whole group on each path.
        salient = torch.arange(tokens) % 2 == 0 if stp else None
        want = pack_tokens(x, kind, f=kv.f, stp=stp, salient=salient, **kv.golden_options(value_format))
        what = f"{kind} {value_format}{' stp' if stp else ''}"
        got = acc.quantize_kv(x, kind, salient=salient, value_format=value_format)
        if (problem := first_difference(got, want, x)) is not None:
            problems.append(f"quantize_kv {what}: {problem}")
        out, positions = acc.dequantize_kv(want)
        if (problem := check_tokens_against_golden(kv, want, out, positions)) is not None:
            problems.append(f"dequantize_kv {what}: {problem}")
    return problems


def _session(config: AcceleratorConfig, port: UartPort, seed: int) -> list[str]:
    """The driver's whole repertoire on the simulated top; the problems found."""
    problems = []
    gen = torch.Generator().manual_seed(seed)
    acc = Accelerator(port, timeout=600)
    if acc.info != config.info():
        problems.append(f"INFO {acc.info} != the build's {config.info()}")
    if config.has_pe:
        problems += _gemm_problems(acc, config, gen)
    if config.has_kv:
        problems += _kv_problems(acc, config, seed)
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
    """INFO; int8 and FP16 GEMMs of every family; keys, STP ternary and 2-bit values quantized and
    dequantized; a corrupted request."""
    config, port = await _start(dut)
    seed = int(os.environ.get("MIXBIT_SEED", "1"))
    problems = await bridge(_session)(config, port, seed)
    assert not problems, f"{problems[0]} (seed {seed})"
