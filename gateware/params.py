"""Generator parameters: declaration, parsing from ``name=value`` text, and validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from arch.bitmod import FAMILIES, check_families

__all__ = ["Param", "IntParam", "ChoiceParam", "FamiliesParam", "FractionParam", "BoolParam", "resolve_params"]


@dataclass(frozen=True)
class Param:
    """One generator parameter: its name, default and one-line help.

    Subclasses define :meth:`parse` (text from ``-p name=value``), :meth:`check`
    (validate and normalize a Python value) and :meth:`describe` (the allowed range).
    """

    name: str
    help: str
    default: object = None

    def parse(self, text: str) -> object:
        """Value of ``-p name=text``; by default :meth:`check` accepts the text itself."""
        return self.check(text)

    def check(self, value: object) -> object:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class IntParam(Param):
    """An integer in ``low..high``; the design's own check narrows it further."""

    default: int = 0
    low: int = 0
    high: int = 0

    def parse(self, text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise ValueError(f"parameter {self.name} must be an integer, not {text!r}") from None
        return self.check(value)

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ValueError(f"parameter {self.name} must be an integer in {self.low}..{self.high}, not {value!r}")
        return value

    def describe(self) -> str:
        return f"integer {self.low}..{self.high}"


@dataclass(frozen=True)
class ChoiceParam(Param):
    """One of a fixed set of words."""

    default: str = ""
    choices: tuple[str, ...] = ()

    def check(self, value: object) -> str:
        if value not in self.choices:
            raise ValueError(f"parameter {self.name} must be one of {', '.join(self.choices)}, not {value!r}")
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class FamiliesParam(Param):
    """A non-empty set of BitMoD weight families, written ``fp4,int8``."""

    default: tuple[str, ...] = FAMILIES

    def check(self, value: object) -> tuple[str, ...]:
        return check_families(value, argument=f"parameter {self.name}")

    def describe(self) -> str:
        return "non-empty subset of " + ",".join(FAMILIES)


@dataclass(frozen=True)
class FractionParam(Param):
    """One of a fixed set of fractions, written ``0.5``."""

    default: float = 0.0
    choices: tuple[float, ...] = ()

    def parse(self, text: str) -> float:
        try:
            return self.check(float(text))
        except ValueError:
            raise ValueError(f"parameter {self.name} must be one of {self.describe()[7:]}, not {text!r}") from None

    def check(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in self.choices:
            raise ValueError(f"parameter {self.name} must be one of {self.describe()[7:]}, not {value!r}")
        return float(value)

    def describe(self) -> str:
        return "one of " + ", ".join(f"{c:g}" for c in self.choices)


@dataclass(frozen=True)
class BoolParam(Param):
    """A flag, written ``1``/``0``, ``true``/``false`` or ``on``/``off``."""

    default: bool = False

    def parse(self, text: str) -> bool:
        words = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}
        if text.strip().lower() not in words:
            raise ValueError(f"parameter {self.name} must be 1/0, true/false or on/off, not {text!r}")
        return words[text.strip().lower()]

    def check(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"parameter {self.name} must be a bool, not {value!r}")
        return value

    def describe(self) -> str:
        return "bool (1/0, true/false, on/off)"


def resolve_params(design: str, params: tuple[Param, ...], given: Mapping[str, object],
                   *, extra_check: Callable[[dict], None] | None = None) -> dict[str, object]:
    """Defaults of ``params`` overridden by ``given``, every value validated.

    String values are parsed as on the command line; other values are checked as
    they are. Unknown names raise ValueError listing the known ones.
    """
    by_name = {p.name: p for p in params}
    for name in given:
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            raise ValueError(f"unknown parameter {name!r} for design {design} (known: {known})")
    resolved = {}
    for p in params:
        value = given.get(p.name, p.default)
        resolved[p.name] = p.parse(value) if isinstance(value, str) else p.check(value)
    if extra_check is not None:
        extra_check(resolved)
    return resolved
