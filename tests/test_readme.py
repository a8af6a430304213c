"""Every shell command and Python example of README.md runs as written.

The commands and examples are read from the README (tests/readme.py), so the two cannot
drift. Who runs what:

* ``mixbit`` commands run here, in a scratch folder, exactly as written (list and
  generate in the fast tier, synth and sim in the slow one; a synthesis must meet its
  clock, since ``mixbit synth`` fails when it does not);
* the set-up lines (``pip``, ``apt-get``, ``pytest``) and the board builds are what
  .ci/run executes, each written there exactly as in the README (checked here); here the
  main job's ``mixbit`` part runs, and the fast-tier command is collected and its test
  count checked against the README's;
* the bitstream programmer needs a board: the file it names must be what ``mixbit build``
  writes;
* Python examples run in a scratch folder; the board example runs against the simulated
  board, with the pseudo-terminal's path in place of ``/dev/ttyUSB1`` (its one change).

Tiers come from :func:`readme.tier` (tests/conftest.py applies them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import readme

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = readme.commands()
EXAMPLES = readme.python_examples()
BOARD_PORT = '"/dev/ttyUSB1"'


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True)


def _mixbit_part(command: readme.Command) -> str:
    """The ``mixbit ...`` part of a line (after the last ``&&`` of a set-up line)."""
    return command.text.split("&&")[-1].strip()


@pytest.mark.parametrize("command", [c for c in COMMANDS if readme.runs_here(c)], ids=lambda c: f"line{c.line}")
def test_mixbit_command_runs_as_written(command, tmp_path):
    result = _run(_mixbit_part(command), tmp_path)
    assert result.returncode == 0, f"README line {command.line}: {command.text}\n{result.stderr[-3000:]}"
    if command.words[1] == "synth":
        assert "(target" in result.stdout and ", met)" in result.stdout, result.stdout


def test_every_command_is_run_somewhere():
    unclaimed = [f"line {c.line}: {c.text}" for c in COMMANDS if readme.who_runs(c) is None]
    assert not unclaimed, "README commands no test or CI step runs:\n" + "\n".join(unclaimed)


def test_ci_runs_the_readme_commands_as_written():
    """.ci/run runs the main job, the test command and the board builds, each exactly as
    the README writes it (a failed && list then ends the run: `|| exit 1`), in that order."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    wanted = [readme.main_job(), readme.test_command(), *readme.board_builds()]
    assert [c.text for c in COMMANDS if readme.who_runs(c) == "ci"] == wanted
    found = [next((i for i, line in enumerate(ci) if line in (command, f"{command} || exit 1")), None)
             for command in wanted]
    assert None not in found, f".ci/run lacks README line(s): {[c for c, i in zip(wanted, found, strict=True) if i is None]}"
    assert found == sorted(found)
    assert "pytest -n auto" in readme.test_command()


def test_the_fast_tier_command_selects_what_the_readme_says():
    fast = [c for c in COMMANDS if c.words[0] == "pytest" and "not slow" in c.text]
    assert len(fast) == 1, "README must show the fast-tier command once"
    result = _run(fast[0].text.replace("-n auto", "") + " --collect-only -q", ROOT)
    collected = int(re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", result.stdout).group(1))
    quoted = int(re.search(r"about ([\d,]+) tests", readme.README.read_text()).group(1).replace(",", ""))
    assert abs(collected - quoted) <= quoted // 10, f"README says about {quoted} fast tests; {collected} collected"


def test_the_programmer_loads_what_the_build_writes():
    from mixbit.boards import BOARDS, bitstream_name

    loaders = [c for c in COMMANDS if readme.who_runs(c) == "board"]
    assert loaders
    for command in loaders:
        path = Path(next(w for w in command.words if w.startswith("build/")))
        board = path.parent.name.removeprefix("board-")
        assert board in BOARDS and any(f"--board {board}" in b for b in readme.board_builds()), command.text
        assert path.name == bitstream_name(BOARDS[board].make_platform(), "mixbit_accelerator"), command.text


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda b: f"line{b.line}")
def test_python_example_runs_as_written(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = example.text
    if readme.tier(example) == "board":
        from sim.board_sim import SMALL_BOARD, SimulatedBoard

        assert code.count(BOARD_PORT) == 1, "the board example names its port once"
        with SimulatedBoard(SMALL_BOARD) as board:
            exec(compile(code.replace(BOARD_PORT, repr(board.path)), f"README.md:{example.line}", "exec"),
                 {"__name__": "readme_example"})
    else:
        exec(compile(code, f"README.md:{example.line}", "exec"), {"__name__": "readme_example"})


def test_examples_are_found():
    assert len(EXAMPLES) >= 6 and len(COMMANDS) >= 15
    assert sys.modules["readme"].README == ROOT / "README.md"
