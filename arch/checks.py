"""The one check of an integer parameter, shared by the configurations."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(name: str, value, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) in ``low..high``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value
