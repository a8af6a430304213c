"""A fast simulator session of a generated design: Verilator driven from C++, not per cycle from Python.

cocotb's per-cycle Python is the right tool for the regressions (random stalls from
the same stream classes as every other test) and the wrong one for millions of
cycles: a transformer through the PE array is tens of millions. :class:`FastSim`
builds the design's Verilog with ``sim/stream_harness.cpp`` (one process for a whole
session, cached like the other builds) and runs jobs given as beats: configuration
inputs, the beats of every input stream, and how many beats to expect from every
output stream, with optional random stalls on every stream. Any design whose ports
are ``X__valid/X__ready/X__payload`` streams plus configuration inputs works; the
ports come from the generator's manifest.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gateware.designs import get_design

from . import build_cache
from .runner import SimulationFailed, build_executable, check_stall

__all__ = ["FastSim", "FastRun", "build_harness", "ports_header"]

_HARNESS = Path(__file__).with_name("stream_harness.cpp")


@dataclass
class FastRun:
    """One job's result: output beats per stream, its cycles (from the first cycle the streams
    are offered to the last transfer of any stream), each input stream's last transfer (a cycle
    of the same count), and the design's other outputs at the end."""

    beats: dict[str, list[int]]
    cycles: int
    last: dict[str, int]
    outputs: dict[str, int]


def _streams(ports: list[dict]) -> tuple[list[str], list[str], list[str], list[str]]:
    """``(input streams, output streams, configuration inputs, other outputs)`` of a manifest's ports."""
    names = {p["name"]: p for p in ports}
    streams = sorted({n[:-len("__valid")] for n in names if n.endswith("__valid")
                      and f"{n[:-7]}__ready" in names and f"{n[:-7]}__payload" in names})
    inputs = [s for s in streams if names[f"{s}__valid"]["direction"] == "input"]
    outputs = [s for s in streams if s not in inputs]
    in_stream = {f"{s}__{part}" for s in streams for part in ("valid", "ready", "payload")}
    config = [n for n, p in names.items() if p["direction"] == "input" and n not in in_stream | {"clk", "rst"}]
    other = [n for n, p in names.items() if p["direction"] == "output" and n not in in_stream]
    return inputs, outputs, config, other


def _member(port: str) -> str:
    """A port's member name in the Verilated class: Verilator writes ``__`` as ``___05F``."""
    return port.replace("__", "___05F")


def ports_header(ports: list[dict]) -> str:
    """The C++ of ``harness_ports.h`` for a design's ports (the manifest's ``ports``)."""
    inputs, outputs, config, other = _streams(ports)
    lines = ["// Written by sim/fast.py from the design's manifest.",
             "inline bool set_config(Top* t, const std::string& name, const Words& w) {"]
    lines += [f'    if (name == "{n}") {{ put(t->{_member(n)}, w); return true; }}' for n in config]
    lines += ["    return false;", "}", "static const Stream IN_STREAMS[] = {"]
    for s in inputs:
        lines.append(f'    {{"{s}", [](Top* t, bool v) {{ t->{_member(s + "__valid")} = v; }}, nullptr, '
                     f'[](Top* t, const Words& w) {{ put(t->{_member(s + "__payload")}, w); }}, nullptr, '
                     f'[](Top* t) {{ return bool(t->{_member(s + "__ready")}); }}, nullptr}},')
    lines += ["};", "static const Stream OUT_STREAMS[] = {"]
    for s in outputs:
        lines.append(f'    {{"{s}", nullptr, [](Top* t, bool v) {{ t->{_member(s + "__ready")} = v; }}, nullptr, '
                     f'[](Top* t) {{ return bool(t->{_member(s + "__valid")}); }}, nullptr, '
                     f'[](Top* t) {{ return take(t->{_member(s + "__payload")}); }}}},')
    lines += ["};", "static const Output OTHER_OUTPUTS[] = {"]
    lines += [f'    {{"{n}", [](Top* t) {{ return take(t->{_member(n)}); }}}},' for n in other]
    if not other:
        lines.append('    {"", nullptr},')
    lines += ["};", f"constexpr int N_IN = {len(inputs)};", f"constexpr int N_OUT = {len(outputs)};",
              f"constexpr int N_OTHER = {len(other)};", ""]
    return "\n".join(lines)


def build_harness(design_name: str, params: dict) -> tuple[Path, dict, build_cache.Lease]:
    """The harness binary of a design with ``params`` (:func:`sim.runner.build_executable`),
    its resolved parameters, and the lease that keeps it in the cache."""
    def headers(design, manifest) -> dict[str, str]:
        return {"harness_top.h": f'#include "V{design.top}.h"\nusing Top = V{design.top};\n',
                "harness_ports.h": ports_header(manifest["ports"])}

    return build_executable(design_name, params, _HARNESS, kind="fast", headers=headers,
                            what=f"the {design_name} harness", key_parts=[Path(__file__).read_text()],
                            args=["--x-assign", "fast", "--x-initial", "fast", "--output-split", "20000"])


class FastSim:
    """A running harness of ``design`` with ``params``: ``with FastSim(...) as sim: sim.run(...)``."""

    def __init__(self, design: str, params: dict):
        self.design = get_design(design)
        self.binary, self.params, self._lease = build_harness(design, params)
        self.config = self.design.config(self.params)
        manifest = json.loads((self.binary.parent.parent / f"{self.design.top}.json").read_text())
        self.inputs, self.outputs, self.config_inputs, _ = _streams(manifest["ports"])
        self._widths = {p["name"]: p["width"] for p in manifest["ports"]}
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> FastSim:
        self._process = subprocess.Popen([str(self.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, bufsize=1 << 20)
        return self

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            try:
                self._process.stdin.write("quit\n")
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None

    def _line(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            raise SimulationFailed(f"the {self.design.name} harness stopped (status {self._process.poll()})")
        return line.rstrip("\n")

    def _send(self, text: str) -> None:
        if self._process is None:
            raise RuntimeError("FastSim is not running: use it in a with block")
        try:
            self._process.stdin.write(text)
            self._process.stdin.flush()
        except BrokenPipeError:
            raise SimulationFailed(f"the {self.design.name} harness stopped (status {self._process.poll()})") \
                from None

    def _check_value(self, port: str, value, what: str) -> None:
        width = self._widths[port]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << width:
            raise ValueError(f"{what} must be an integer in 0..2**{width} - 1 (the port's {width} bits), "
                             f"not {value!r}")

    def reset(self, cycles: int = 3) -> None:
        """Hold ``rst`` for ``cycles`` cycles (every stream idle)."""
        self._send(f"reset {int(cycles)}\n")
        if (line := self._line()) != "ok":
            raise SimulationFailed(f"the {self.design.name} harness answered {line!r} to a reset")

    def idle(self, cycles: int = 16) -> int:
        """Run ``cycles`` cycles with every output ready; the number of output beats that came out."""
        self._send(f"idle {int(cycles)}\n")
        return int(self._line().split()[1])

    def run(self, config: dict[str, int], sends: dict[str, list[int]], expects: dict[str, int], *,
            stall: float = 0.0, seed: int = 1, max_cycles: int | None = None) -> FastRun:
        """One job: set ``config``, send every stream's beats, receive ``expects`` beats per output.

        ``stall`` (a probability per cycle and stream) and ``seed`` make random stalls;
        ``max_cycles`` (default: generous for the beats given) turns a hang into
        :class:`sim.runner.SimulationFailed`.
        """
        stall = check_stall(stall)
        for kind, names, known in (("configuration input", config, self.config_inputs),
                                   ("input stream", sends, self.inputs), ("output stream", expects, self.outputs)):
            for name in names:
                if name not in known:
                    raise ValueError(f"{self.design.name} has no {kind} {name!r} (it has: {', '.join(known)})")
        for name, value in config.items():
            self._check_value(name, value, name)
        for name, stream in sends.items():
            limit = 1 << self._widths[f"{name}__payload"]
            if any(not 0 <= beat < limit for beat in stream):
                bad = next(b for b in stream if not 0 <= b < limit)
                self._check_value(f"{name}__payload", bad, f"a beat of {name}")
        beats = sum(len(b) for b in sends.values()) + sum(expects.values())
        max_cycles = max_cycles or 100_000 + 64 * beats
        parts = [f"set {name} {int(value):x}\n" for name, value in config.items()]
        for name, stream in sends.items():
            parts.append(f"send {name} {len(stream)}\n")
            parts.extend(f"{beat:x}\n" for beat in stream)
        parts.extend(f"expect {name} {count}\n" for name, count in expects.items())
        parts.append(f"run {seed & (1 << 63) - 1} {stall!r} {max_cycles}\n")
        self._send("".join(parts))
        line = self._line()
        if not line.startswith("done "):
            raise SimulationFailed(f"{self.design.name}: {line.removeprefix('fail ')}")
        run = FastRun({}, int(line.split()[1]), {}, {})
        while (line := self._line()) != "end":
            kind, name, value = line.split()
            if kind == "last":
                run.last[name] = int(value)
            elif kind == "recv":
                run.beats[name] = [int(self._line(), 16) for _ in range(int(value))]
            elif kind == "out":
                run.outputs[name] = int(value, 16)
            else:
                raise SimulationFailed(f"the {self.design.name} harness answered {line!r}")
        return run
