"""Where mixbit finds external tools and keeps its build cache: one place for sim and synth."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["ToolNotFoundError", "tool_path", "cache_dir"]


class ToolNotFoundError(RuntimeError):
    """An external tool that a flow needs is not installed; the message says how to get it."""


def tool_path(name: str, hint: str) -> str:
    """Absolute path of executable ``name`` on PATH, else ToolNotFoundError with ``hint``."""
    path = shutil.which(name)
    if path is None:
        raise ToolNotFoundError(f"{name} not found on PATH ({hint})")
    return path


def cache_dir() -> Path:
    """Root of mixbit's build cache: ``$MIXBIT_CACHE_DIR`` or ``~/.cache/mixbit``."""
    return Path(os.environ.get("MIXBIT_CACHE_DIR", Path.home() / ".cache" / "mixbit")).expanduser().resolve()
