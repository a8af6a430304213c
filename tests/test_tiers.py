"""The tier tables of tests/conftest.py name what exists: a renamed slow test must not
silently join the fast tier."""

import ast
from pathlib import Path

import conftest
import pytest

TESTS = Path(__file__).resolve().parent

#: Each by-test table and the files whose tests it names.
BY_TEST = {
    "CLI_TIERS": (conftest.CLI_TIERS, ["test_cli.py"]),
    "SWEEP_TIERS": (conftest.SWEEP_TIERS, ["test_sweep.py"]),
    "TEST_TIERS": (conftest.TEST_TIERS, ["test_loose_inputs.py", "test_link_faults.py"]),
    "MODEL_RUN_TIERS": (conftest.MODEL_RUN_TIERS, ["test_model_run.py"]),
}


def _test_functions(name: str) -> set[str]:
    tree = ast.parse((TESTS / name).read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")}


def test_every_file_tier_names_a_test_file():
    missing = [name for name in conftest.FILE_TIERS if not (TESTS / name).is_file()]
    assert not missing, f"conftest.FILE_TIERS names files that do not exist: {missing}"


@pytest.mark.parametrize("table", BY_TEST)
def test_every_tiered_test_exists(table):
    tiers, files = BY_TEST[table]
    defined = set().union(*(_test_functions(name) for name in files))
    missing = sorted(set(tiers) - defined)
    assert not missing, f"conftest.{table} names tests that {', '.join(files)} do not define: {missing}"


def test_every_tier_is_a_known_marker():
    tables = [conftest.FILE_TIERS, *(tiers for tiers, _ in BY_TEST.values())]
    unknown = {tier for table in tables for tier in table.values()} - set(conftest.TIERS)
    assert not unknown, unknown
