"""The house's layers: every package imports only the ones below it, and the hardware needs no torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
#: What each package may import (besides itself), bottom floor first.
ALLOWED = {
    "arch": set(),
    "golden": {"arch"},
    "hdl": {"arch"},
    "host": {"arch", "golden"},
    "gateware": {"arch", "hdl"},
    "formal": {"arch", "hdl", "gateware"},
    "sim": {"arch", "golden", "hdl", "host", "gateware"},
    "synth": {"arch", "hdl", "gateware", "sim"},
    "workloads": {"arch", "golden", "hdl", "host", "gateware", "sim"},
    "mixbit": {"arch", "golden", "hdl", "host", "gateware", "sim", "synth", "workloads"},
}


def _imports(path: Path):
    """(line, imported top-level package, inside a function?) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    nested = {id(inner) for f in functions for inner in ast.walk(f) if inner is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            yield node.lineno, name.split(".")[0], id(node) in nested


def _package_files():
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package", ALLOWED)
def test_no_package_imports_one_above_it(package):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for pkg, path in _package_files() if pkg == package
             for line, name, _ in _imports(path)
             if name in ALLOWED and name != package and name not in ALLOWED[package]]
    assert not wrong, "\n".join(wrong)


def test_no_project_import_hides_inside_a_function():
    hidden = [f"{path.relative_to(ROOT)}:{line} imports {name} inside a function"
              for _, path in _package_files() for line, name, inside in _imports(path)
              if inside and name in ALLOWED]
    assert not hidden, "\n".join(hidden)


def test_the_hardware_and_its_verilog_need_no_torch():
    # A fresh interpreter: import every hdl module, build every design (small parameters) and
    # write its Verilog; torch must never be loaded on the way.
    script = """
import importlib, pkgutil, sys
import hdl
for module in pkgutil.iter_modules(hdl.__path__):
    importlib.import_module("hdl." + module.name)
from gateware.designs import DESIGNS
from gateware.generate import to_verilog
small = {"pe_array": {"rows": 1, "cols": 1, "lanes": 8, "group_size": 64, "scale_bits": 4, "max_k": 128},
         "kv_quant": {"d": 32, "lanes": 32, "group_tokens": 16, "stp": False},
         "kv_dequant": {"d": 32, "lanes": 32, "group_tokens": 16, "stp": False},
         "accelerator": {"engines": "kv", "kv_d": 32, "kv_lanes": 32, "kv_group_tokens": 16, "kv_stp": False}}
small["pe_array_parallel"] = small["pe_array"]
for design in DESIGNS.values():
    params = design.resolve(small.get(design.name, {}))
    assert "module " + design.top in to_verilog(design.build(params), design.top)
sys.exit("torch was imported" if "torch" in sys.modules else 0)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
