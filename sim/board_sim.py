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

``SimulatedBoard(params, faults=LineFaults(ber=..., drop=..., seed=...))`` makes the line
noisy: the bridge flips data bits and drops bytes at those rates (per direction if asked),
and ``board.fault_counts`` has what it did once the board has stopped.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from arch.accelerator_config import AcceleratorConfig

from . import build_cache
from .runner import SimulationFailed, build_executable

__all__ = ["SimulatedBoard", "LineFaults", "build_board", "SMALL_BOARD", "FAULT_BOARD"]

#: A small accelerator that builds and runs fast under Verilator (the tests' board): one
#: PE of 4 lanes (int4, fp4), D = 32 KV engines, and a UART at clk / 4.
SMALL_BOARD = {
    "pe_rows": 1, "pe_cols": 1, "pe_lanes": 4, "pe_group_size": 32, "pe_families": ("int4", "fp4"),
    "pe_max_k": 128, "pe_activations": "both",
    "kv_d": 32, "kv_group_tokens": 16, "kv_lanes": 2, "kv_in_bits": 8, "kv_stp": True, "kv_ternary_layout": "b3",
    "max_payload": 1024, "weight_beats": 256, "result_beats": 16, "kv_quant_fifo": 256, "kv_dequant_fifo": 512,
    "clk_hz": 12_000_000, "baud": 3_000_000, "byte_timeout_us": 100_000,
}

#: SMALL_BOARD with a 2 ms byte timeout (the tests' noisy line): a request cut short by a
#: dropped byte is answered TRUNCATED after 24,000 cycles instead of 1.2 million, about
#: 35 ms instead of 1.7 s of the simulation's wall-clock time.
FAULT_BOARD = {**SMALL_BOARD, "byte_timeout_us": 2_000}

_BRIDGE = Path(__file__).with_name("uart_bridge.cpp")


@dataclass(frozen=True)
class LineFaults:
    """Faults the bridge injects on the simulated line (sim/uart_bridge.cpp).

    Each data bit of a byte is flipped with probability ``ber`` and each byte is dropped
    with probability ``drop``, on the way to the board; ``host_ber`` / ``host_drop`` are
    the rates on the way back to the host (``None``: the same as to the board). ``seed``
    seeds one generator per direction, so each direction's faults depend only on how many
    bytes went that way.
    """

    ber: float = 0.0
    drop: float = 0.0
    host_ber: float | None = None
    host_drop: float | None = None
    seed: int = 1

    def __post_init__(self):
        for name in ("ber", "drop", "host_ber", "host_drop"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"LineFaults.{name} is a probability in [0, 1), not {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"LineFaults.seed must be a non-negative integer, not {self.seed!r}")

    def arguments(self) -> list[str]:
        """The bridge's command-line arguments after the divisor."""
        host_ber = self.ber if self.host_ber is None else self.host_ber
        host_drop = self.drop if self.host_drop is None else self.host_drop
        return [repr(float(v)) for v in (self.ber, self.drop, host_ber, host_drop)] + [str(self.seed)]


def _fault_counts(line: str) -> dict:
    """The bridge's closing line (``faults to_board ... to_host ... cycles N``) as a dict."""
    words = line.split()
    if len(words) != 13 or words[0] != "faults":
        return {}
    names = ("bytes", "corrupted", "bits_flipped", "dropped")
    return {"to_board": dict(zip(names, map(int, words[2:6]), strict=True)),
            "to_host": dict(zip(names, map(int, words[7:11]), strict=True)), "cycles": int(words[12])}


def build_board(params: dict) -> tuple[Path, dict, build_cache.Lease]:
    """The bridge binary for the accelerator with ``params`` (built once per parameter set:
    :func:`sim.runner.build_executable`), the resolved parameters, and the lease that keeps
    the binary in the cache: hold it for as long as the binary runs."""
    def headers(design, manifest) -> dict[str, str]:
        return {"board_top.h": f'#include "V{design.top}.h"\n#define TOP_CLASS V{design.top}\n'}

    return build_executable("accelerator", params, _BRIDGE, kind="board", headers=headers,
                            what="the simulated board")


class SimulatedBoard:
    """A running simulated board; ``path`` is its serial port (a pseudo-terminal).

    ``faults`` (a :class:`LineFaults`) makes the line noisy. After the board has stopped,
    ``fault_counts`` holds the bridge's counts: per direction the bytes that went, those
    with flipped bits, the bits flipped and the bytes dropped, and the clock cycles
    simulated; ``wall_s`` is how long the board ran.
    """

    def __init__(self, params: dict, *, faults: LineFaults | None = None):
        self.binary, self.params, self._lease = build_board(params)

        self.config = AcceleratorConfig.from_params(self.params)
        self.faults = faults
        self.process: subprocess.Popen | None = None
        self.path: str | None = None
        self.fault_counts: dict = {}
        self.wall_s = 0.0

    def __enter__(self) -> SimulatedBoard:
        extra = self.faults.arguments() if self.faults is not None else []
        self.process = subprocess.Popen([str(self.binary), str(self.config.divisor), *extra],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._started = time.monotonic()
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
            self.wall_s = time.monotonic() - self._started
            self.fault_counts = _fault_counts(self.process.stdout.read())
            self.process.stdout.close()
            self.process = None
