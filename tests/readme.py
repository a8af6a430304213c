"""The commands and examples of README.md, read from the README itself (standard library only).

tests/test_readme.py runs them, and checks that .ci/run holds the README's set-up
lines and board builds exactly as written, so the README cannot drift from what is
executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, text and the README line it starts on."""

    language: str
    text: str
    line: int


@dataclass(frozen=True)
class Command:
    """One line of a ``sh`` block, exactly as written (comments included), and its line."""

    text: str
    line: int

    @property
    def words(self) -> list[str]:
        return self.text.split("#", 1)[0].split()


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced code block of the README, in order."""
    text = README.read_text() if text is None else text
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in _FENCE.finditer(text)]


def commands(text: str | None = None) -> list[Command]:
    """Every non-empty line of the README's ``sh`` blocks."""
    return [Command(line, block.line + i) for block in blocks(text) if block.language == "sh"
            for i, line in enumerate(block.text.splitlines()) if line.strip()]


def python_examples(text: str | None = None) -> list[Block]:
    """The README's ``python`` blocks."""
    return [block for block in blocks(text) if block.language == "python"]


def _one(predicate, what: str) -> str:
    found = [c.text for c in commands() if predicate(c)]
    if len(found) != 1:
        raise SystemExit(f"README.md must have exactly one {what}; found {len(found)}")
    return found[0]


def main_job() -> str:
    """The set-up line that installs and runs the main job (``pip install ... && mixbit synth ...``)."""
    return _one(lambda c: c.words[:2] == ["pip", "install"] and "mixbit" in c.words, "main-job line")


def test_command() -> str:
    """The set-up line that installs the test extras and runs the suite (ends in ``pytest ...``)."""
    return _one(lambda c: "pytest" in c.words and c.words[0] != "pytest", "test command")


def board_builds() -> list[str]:
    """The README's ``mixbit build`` lines."""
    return [c.text for c in commands() if c.words[:2] == ["mixbit", "build"]]


def who_runs(command: Command) -> str | None:
    """``"ci"`` (.ci/run: the set-up lines and board builds), ``"here"`` (tests/test_readme.py),
    ``"board"`` (needs a real board; its file is checked) or None (nobody: a new command)."""
    words = command.words
    if command.text in (main_job(), test_command()) or words[:2] == ["mixbit", "build"]:
        return "ci"
    if words[0] in ("mixbit", "pytest"):
        return "here"
    if words[0] in ("openFPGALoader", "iceprog"):
        return "board"
    return None


def runs_here(command: Command) -> bool:
    """Whether tests/test_readme.py runs the line's ``mixbit`` part (the main job's included)."""
    return (who_runs(command) == "here" and command.words[0] == "mixbit") or command.text == main_job()


def tier(item: Command | Block) -> str | None:
    """The slow tier an example or command belongs to (tests/conftest.py), None for the fast tier."""
    if isinstance(item, Block):
        for module, name in (("host.driver", "board"), ("synth.flow", "synthesis"), ("from sim.", "cocotb")):
            if module in item.text:
                return name
        return None
    mixbit = item.text.split("&&")[-1].split()
    if mixbit[:1] != ["mixbit"]:
        return None
    return {"synth": "synthesis", "sweep": "synthesis", "sim": "cocotb", "build": "board",
            "run-model": "accuracy"}.get(mixbit[1])
