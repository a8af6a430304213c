"""A simulated board: the accelerator top under Verilator, its UART on a pseudo-terminal.

::

    with SimulatedBoard({"baud": 3_000_000, ...}) as board:
        with Accelerator(board.path, timeout=30) as acc:   # the host driver, as on a real port
            ...

The bridge (sim/uart_bridge.cpp) turns bytes written to the terminal into 8N1 frames on
the top's ``rx`` pin and frames on ``tx`` back into bytes, so the whole path host ->
UART -> command decoder -> engines -> UART -> host runs as on the board, bit by bit.
Builds are cached per parameter set (like :func:`sim.runner.build_design`); a board holds
its build's lease (:mod:`sim.build_cache`) for as long as the object exists.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from arch.accelerator_config import AcceleratorConfig
from gateware.designs import get_design
from gateware.generate import generate
from gateware.toolchain import cache_dir

from . import build_cache
from .runner import SimulationFailed, _make_variables, generator_digest
from .tools import prepare_simulator

__all__ = ["SimulatedBoard", "build_board", "SMALL_BOARD"]

#: A small accelerator that builds and runs fast under Verilator (the tests' board): one
#: PE of 4 lanes (int4, fp4), D = 32 KV engines, and a UART at clk / 4.
SMALL_BOARD = {
    "pe_rows": 1, "pe_cols": 1, "pe_lanes": 4, "pe_group_size": 32, "pe_families": ("int4", "fp4"),
    "pe_max_k": 128,
    "kv_d": 32, "kv_group_tokens": 16, "kv_lanes": 2, "kv_in_bits": 8, "kv_stp": True, "kv_ternary_layout": "b3",
    "max_payload": 1024, "weight_beats": 256, "result_beats": 16, "kv_quant_fifo": 256, "kv_dequant_fifo": 512,
    "clk_hz": 12_000_000, "baud": 3_000_000, "byte_timeout_us": 100_000,
}

_BRIDGE = Path(__file__).with_name("uart_bridge.cpp")
_LINT_WAIVERS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNOPTFLAT", "-Wno-CASEINCOMPLETE")


def build_board(params: dict) -> tuple[Path, dict, build_cache.Lease]:
    """The bridge binary for the accelerator with ``params`` (built once per parameter set),
    the resolved parameters, and the lease that keeps the binary in the cache: hold it for as
    long as the binary runs."""

    design = get_design("accelerator")
    params = design.resolve(dict(params))
    prepare_simulator("verilator")
    key = hashlib.sha256(json.dumps([sorted((k, str(v)) for k, v in params.items()), generator_digest(),
                                     _BRIDGE.read_text()]).encode()).hexdigest()[:16]
    directory = cache_dir() / "board" / key
    binary = directory / "obj" / "bridge"
    with build_cache.claim(directory) as claim:
        if not binary.exists():
            manifest = generate("accelerator", params, directory)
            obj = directory / "obj"
            obj.mkdir(parents=True, exist_ok=True)
            (obj / "board_top.h").write_text(f'#include "V{design.top}.h"\n#define TOP_CLASS V{design.top}\n')
            log = directory / "build.log"
            command = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-O2", *_LINT_WAIVERS,
                       "--top-module", design.top, "--Mdir", str(obj), "-o", "bridge",
                       str(directory / manifest["verilog"]), str(_BRIDGE)]
            with open(log, "w") as out, _make_variables("verilator"):
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode:
                tail = log.read_text().splitlines()[-5:]
                raise SimulationFailed(f"verilator could not build the simulated board (log {log}): "
                                       + " | ".join(tail))
            claim.made()
    return binary, params, claim.lease


class SimulatedBoard:
    """A running simulated board; ``path`` is its serial port (a pseudo-terminal)."""

    def __init__(self, params: dict):
        self.binary, self.params, self._lease = build_board(params)

        self.config = AcceleratorConfig.from_params(self.params)
        self.process: subprocess.Popen | None = None
        self.path: str | None = None

    def __enter__(self) -> SimulatedBoard:
        self.process = subprocess.Popen([str(self.binary), str(self.config.divisor)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.path = self.process.stdout.readline().strip()
        if not self.path:
            self.__exit__()
            raise SimulationFailed("the simulated board did not start (no terminal path)")
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.process = None
