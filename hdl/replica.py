"""Registered copies of a signal that synthesis keeps apart: a fan-out tree for wide arrays.

One flip-flop that drives every PE of a tall array is spread over the whole die, and
its routing, not its logic, sets the clock. Registering it once per few rows gives each
copy a local load. Identical registers are what yosys's ``opt_merge`` folds back into
one, so each copy carries the :data:`REPLICA_ATTR` attribute and the project's synthesis
scripts mark the flip-flops driving such signals ``keep`` (:data:`KEEP_REPLICAS`)
before they optimize. Simulation ignores the attribute. Mark every copy, the first
one too: ``keep`` only stops a kept cell from being removed, so ``opt_merge`` folds an
unmarked register into an identical kept one (and then merges what they fed).
"""

from __future__ import annotations

from amaranth import Module, Signal

__all__ = ["REPLICA_ATTR", "KEEP_REPLICAS", "replicas"]

#: The attribute that marks a replica register (a Verilog ``(* mixbit_replica *)``).
REPLICA_ATTR = "mixbit_replica"

#: Yosys commands, run right after reading the design: the flip-flops whose outputs are
#: replica signals get ``keep``, which ``opt_merge`` honours (it merges no kept cell).
KEEP_REPLICAS = f"proc; setattr -set keep 1 a:{REPLICA_ATTR} %ci1:+[Q] a:{REPLICA_ATTR} %d"


def replicas(m: Module, value, count: int, name: str, *, reset_less: bool = False) -> list:
    """``count`` registered copies of ``value`` (one cycle late), kept apart by synthesis.

    ``reset_less`` for data whose meaning a separate (reset) valid signal carries: the
    reset net then skips them.
    """
    copies = []
    for index in range(count):
        copy = Signal.like(value, name=f"{name}_r{index}", attrs={REPLICA_ATTR: 1}, reset_less=reset_less)
        m.d.sync += copy.eq(value)
        copies.append(copy)
    return copies
