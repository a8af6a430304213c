"""Formal proofs (SBY + Yices through YoWASP): every property of formal/properties.py holds,
and every deliberately broken block makes its proof fail. ``pytest -m formal`` runs them."""

from __future__ import annotations

import pytest

from formal.mutants import Mutation
from formal.properties import PROPERTIES, get_property
from formal.sby import assertions, check

MUTANTS = [(prop, mutation) for prop in PROPERTIES for mutation in prop.mutations]


@pytest.mark.parametrize("prop", PROPERTIES, ids=[p.name for p in PROPERTIES])
def test_property_holds(prop, tmp_path):
    result = check(prop.harness(), name=prop.name, mode=prop.mode, depth=prop.depth, workdir=tmp_path)
    assert result.passed, result.summary()


@pytest.mark.parametrize("prop, mutation", MUTANTS,
                         ids=[f"{p.name}-{k}" for p in PROPERTIES for k in range(len(p.mutations))])
def test_a_broken_block_fails_its_proof(prop, mutation, tmp_path):
    # An `alone` mutation's assertion is checked without the others (one of them fails first).
    result = check(prop.harness(mutation), name=prop.name, mode=prop.mode, depth=prop.depth, workdir=tmp_path,
                   only=mutation.breaks if mutation.alone else None)
    # BMC finds a trace from reset; k-induction may fail in its induction step instead
    # (UNKNOWN), from a state the broken block cannot reach within the base case's depth.
    failed = ("FAIL", "UNKNOWN") if prop.mode == "prove" else ("FAIL",)
    assert result.status in failed, f"{mutation.why}: the proof did not fail\n{result.summary()}"
    assert result.trace() is not None
    broken = result.failed_messages()
    assert any(mutation.breaks in message for message in broken), \
        f"{mutation.why}: expected the assertion {mutation.breaks!r} to fail, not {broken}"


@pytest.mark.parametrize("prop", PROPERTIES, ids=[p.name for p in PROPERTIES])
def test_every_assertion_is_broken_by_a_mutation(prop):
    """No solver: each assertion of the harness (by its message) is the one some mutation
    must break, each mutation names exactly one, and every mutation still applies."""
    messages = assertions(prop.harness())
    assert messages and len(set(messages)) == len(messages), f"{prop.name}: assertions must have distinct messages"
    named = {}
    for mutation in prop.mutations:
        matches = [message for message in messages if mutation.breaks in message]
        assert len(matches) == 1, f"{prop.name}: {mutation.why}: {mutation.breaks!r} names {matches}, not one"
        assert not (mutation.alone and prop.mode == "prove"), f"{prop.name}: alone is for BMC properties"
        prop.harness(mutation)                   # raises if the mutation's text no longer occurs once
        named[matches[0]] = mutation
    unbroken = [message for message in messages if message not in named]
    assert not unbroken, f"{prop.name}: no mutation breaks {unbroken} (docs/formal.md: add one)"


def test_every_property_has_a_mutation_and_a_bound():
    for prop in PROPERTIES:
        assert prop.mutations, prop.name
        assert prop.mode in ("bmc", "prove") and prop.depth >= 1, prop.name


def test_a_mutation_that_no_longer_applies_says_so():
    stale = Mutation("hdl.frames", "this text is not in hdl/frames.py", "", "nothing", "nothing")
    with pytest.raises(ValueError, match="occurs 0 times"):
        stale.apply("Widen")


def test_check_rejects_bad_arguments(tmp_path):
    harness = get_property("crc_step").harness()
    for kwargs, match in [({"mode": "pdr"}, "mode"), ({"depth": 0}, "depth"), ({"solver": "abc"}, "solver"),
                          ({"name": "a b"}, "name")]:
        with pytest.raises(ValueError, match=match):
            check(harness, **{"name": "x", **kwargs}, workdir=tmp_path)
    for only in ("no assertion says this", "before the beat was taken"):      # none, or two
        with pytest.raises(ValueError, match="must name one assertion"):
            check(get_property("widen").harness(), name="x", only=only, workdir=tmp_path)
    with pytest.raises(ValueError, match="no formal property"):
        get_property("nope")
