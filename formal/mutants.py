"""Deliberately broken blocks, for checking that a proof can fail.

A :class:`Mutation` is a one-place edit of a block's source text (the way mutation
testing tools work): the module is compiled again with ``old`` replaced by ``new`` and
the mutated class is returned. A mutation whose ``old`` text no longer occurs in the
source raises, so a mutation cannot silently stop mutating when the block is edited.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

__all__ = ["Mutation"]


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` by ``new`` (once) in the source of ``module``; ``why`` says what
    breaks, and ``breaks`` is a piece of the message of the assertion that must fail
    (of one assertion of the property: tests/test_formal.py checks that it names one)."""

    module: str
    old: str
    new: str
    why: str
    breaks: str
    #: The modules between the edited one and the block, nearest first, when the edit is in
    #: a module the block imports from indirectly; each is compiled again with the names
    #: it imported from the one before replaced by their mutated versions.
    users: tuple[str, ...] = ()
    #: Check the ``breaks`` assertion alone (``formal.sby.check(only=breaks)``): the mutant
    #: also breaks another assertion at the same step or an earlier one, which the full
    #: proof may report instead (for instance one that ``breaks`` implies a cycle later).
    #: BMC properties only: k-induction with fewer assertions can fail on its own.
    alone: bool = False

    def apply(self, name: str):
        """The class (or function) ``name`` of the mutated module, or of the last of ``users``."""
        original = importlib.import_module(self.module)
        source = inspect.getsource(original)
        found = source.count(self.old)
        if found != 1:
            raise ValueError(f"mutation of {self.module} ({self.why}): {self.old!r} occurs {found} times, "
                             f"not once; update the mutation")
        namespace = self._namespace(original)
        exec(compile(source.replace(self.old, self.new), f"<mutant of {original.__file__}>", "exec"), namespace)
        for user_name in self.users:
            user = importlib.import_module(user_name)
            rebuilt = self._namespace(user)
            exec(compile(inspect.getsource(user), user.__file__, "exec"), rebuilt)
            for key, value in list(rebuilt.items()):          # its imports from the mutated module
                if getattr(original, key, None) is value and key in namespace:
                    rebuilt[key] = namespace[key]
            original, namespace = user, rebuilt
        return namespace[name]

    @staticmethod
    def _namespace(module) -> dict:
        return {"__name__": f"{module.__name__}__mutant", "__package__": module.__package__,
                "__file__": module.__file__}
