"""The one way a frozen configuration sets and lists its derived fields."""

from __future__ import annotations

from dataclasses import fields

__all__ = ["DerivedFields"]


class DerivedFields:
    """Mixin of the configurations: derived values are dataclass fields with ``init=False``."""

    def _set_derived(self, values: dict) -> None:
        """Set the derived fields of a frozen dataclass from ``values`` (name -> value)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def derived(self) -> dict:
        """Every derived value by name (for reports and the generated JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.init}
