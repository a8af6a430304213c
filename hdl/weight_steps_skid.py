"""Stage 0 of a column's weight front end (:class:`hdl.weight_steps.ColumnSteps`): a skid buffer."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .weight_steps_common import mark_control

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Stage 0: a two-entry skid buffer of weight beats.

    ``words`` is a stream: a beat is taken in every cycle with ``words.valid &
    words.ready``, and ``words.ready`` is ``~full``: it depends on the buffer's fill
    alone, never on ``pop``. A beat taken at a clock edge is at ``head`` (oldest first)
    from the next cycle on: latency 1 cycle, one beat per cycle. The head leaves at the
    clock edge of a cycle with ``pop`` high (only while ``head_valid``).

    Parameters
    ----------
    beat_bits : int
        Width of a beat.
    replicated : bool
        Mark the fill registers as replicas (:func:`hdl.weight_steps_common.mark_control`).

    Members
    -------
    words : In(stream.Signature(beat_bits))
        The beats.
    head : Out(beat_bits)
        The oldest beat held; valid while ``head_valid``.
    head_valid : Out(1)
        The buffer holds a beat.
    head_valid_next : Out(1)
        What ``head_valid`` becomes at the next clock edge (from this cycle's ``pop`` and push).
    pop : In(1)
        The head leaves at this clock edge.
    pop_entries : In(1)
        Equal to ``pop``: the copy that the entries' enables see.
    """

    def __init__(self, beat_bits: int, replicated: bool = False):
        self.replicated = replicated
        super().__init__({
            "words": In(stream.Signature(beat_bits)),
            "head": Out(beat_bits), "head_valid": Out(1), "head_valid_next": Out(1),
            "pop": In(1), "pop_entries": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        words, pop = self.words, self.pop
        head_valid, full = Signal(), Signal()         # the fill: count >= 1, count == 2
        mark_control(self.replicated, head_valid, full)
        entries = [Signal(len(words.payload), name=f"skid{i}", reset_less=True) for i in range(2)]
        push = words.valid & words.ready
        m.d.comb += words.ready.eq(~full)
        # An entry that holds nothing takes the payload in every cycle (the fill says what counts).
        with m.If(self.pop_entries | ~head_valid):
            m.d.sync += entries[0].eq(Mux(full, entries[1], words.payload))
        with m.If(~full):
            m.d.sync += entries[1].eq(words.payload)
        head_valid_next = Mux(pop & ~push, full, Mux(push & ~pop, 1, head_valid))
        m.d.sync += [head_valid.eq(head_valid_next),
                     full.eq(Mux(pop & ~push, 0, Mux(push & ~pop, head_valid, full)))]
        m.d.comb += [self.head.eq(entries[0]), self.head_valid.eq(head_valid),
                     self.head_valid_next.eq(head_valid_next)]
        return m
