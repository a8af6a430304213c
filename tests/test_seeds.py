"""The suite's seeds replay (tests/conftest.py): a test's draws, from the ``seed`` fixture
or from the global generators, are the same on every run of the same test id, the same
for any test under ``MIXBIT_SEED=N``, new under ``--random-seeds``, and a failure
prints the seed that replays it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

TESTS = Path(__file__).resolve().parent

#: A test file that records its draws: the seed fixture's, and torch's, numpy's and
#: Python's global generators' without naming a generator.
PROBE = """
import json, random
from pathlib import Path

import numpy
import torch

def _record(name, seed):
    draws = {"seed": seed, "torch": torch.randn(3).tolist(), "numpy": numpy.random.rand(2).tolist(),
             "random": random.random()}
    Path(name + ".json").write_text(json.dumps(draws))

def test_one(seed):
    _record("one", seed)

def test_two():
    _record("two", None)

def test_fails(seed):
    assert seed < 0
"""


@pytest.fixture
def probe(pytester, monkeypatch):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # conftest.py imports tests/readme.py
    pytester.makepyfile(test_probe=PROBE)
    return pytester


def _draws(probe, monkeypatch, *args, env_seed=None):
    if env_seed is None:
        monkeypatch.delenv("MIXBIT_SEED", raising=False)
    else:
        monkeypatch.setenv("MIXBIT_SEED", str(env_seed))
    result = probe.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=2, failed=1)
    return result, {name: json.loads((probe.path / f"{name}.json").read_text()) for name in ("one", "two")}


def test_draws_replay_by_test_id_and_by_mixbit_seed_and_a_failure_prints_its_seed(probe, monkeypatch):
    _, first = _draws(probe, monkeypatch)
    _, again = _draws(probe, monkeypatch)
    assert first == again
    assert first["one"]["torch"] != first["two"]["torch"]           # each test id its own seed
    result, forced = _draws(probe, monkeypatch, env_seed=12345)
    result.stdout.fnmatch_lines(["*seed = 12345 (rerun with MIXBIT_SEED=12345)*"])
    _, forced_again = _draws(probe, monkeypatch, env_seed=12345)
    assert forced == forced_again and forced["one"]["seed"] == 12345
    assert {k: v for k, v in forced["one"].items() if k != "seed"} == \
        {k: v for k, v in forced["two"].items() if k != "seed"}     # one seed, the same global draws
    _, fresh = _draws(probe, monkeypatch, "--random-seeds")
    assert fresh["one"]["seed"] != first["one"]["seed"] and fresh["one"]["torch"] != first["one"]["torch"]
