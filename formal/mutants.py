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
    breaks, and ``breaks`` is a piece of the message of the assertion that must fail."""

    module: str
    old: str
    new: str
    why: str
    breaks: str
    #: The module that defines the block, when the edit is in a module the block imports
    #: from (``user`` is compiled again too, with the mutated module's names).
    user: str | None = None

    def apply(self, name: str):
        """The class (or function) ``name`` of the mutated module, or of ``user``."""
        original = importlib.import_module(self.module)
        source = inspect.getsource(original)
        found = source.count(self.old)
        if found != 1:
            raise ValueError(f"mutation of {self.module} ({self.why}): {self.old!r} occurs {found} times, "
                             f"not once; update the mutation")
        namespace = {"__name__": f"{self.module}__mutant", "__package__": original.__package__,
                     "__file__": original.__file__}
        exec(compile(source.replace(self.old, self.new), f"<mutant of {original.__file__}>", "exec"), namespace)
        if self.user is None:
            return namespace[name]
        user = importlib.import_module(self.user)
        rebuilt = {"__name__": f"{self.user}__mutant", "__package__": user.__package__, "__file__": user.__file__}
        exec(compile(inspect.getsource(user), user.__file__, "exec"), rebuilt)
        for key, value in list(rebuilt.items()):          # its imports from the mutated module
            if getattr(original, key, None) is value and key in namespace:
                rebuilt[key] = namespace[key]
        return rebuilt[name]
