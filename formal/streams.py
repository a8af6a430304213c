"""The pieces every formal harness is made of: free inputs, stream sources and sinks that
check the valid/ready contract, counters and bounded-response checks.

A harness is an Amaranth elaboratable whose ``ports`` are its free inputs: the solver
chooses their values in every cycle, within the harness's ``Assume`` statements. The
harness owns the ``sync`` domain and holds its reset low: every register starts at its
initial value and no reset comes later.

The stream contract (amaranth.lib.stream): once a sender raises ``valid``, it keeps
``valid`` high and the payload unchanged until the receiver takes the beat (``valid &
ready``). :meth:`Harness.source` assumes it of the environment that drives a block's
input; :meth:`Harness.sink` asserts it of the block's output.
"""

from __future__ import annotations

from amaranth import ClockDomain, Module, Signal
from amaranth.hdl import Assert, Assume

__all__ = ["Harness"]


class Harness:
    """Base class: subclasses build their checks in :meth:`build` (``m`` is the top module).

    Not an ``Elaboratable``: :func:`formal.sby.check` elaborates it once, by hand, to
    learn its free inputs before it converts the module.
    """

    def __init__(self):
        self.ports: list[Signal] = []

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = domain = ClockDomain("sync")
        self.ports.append(domain.clk)
        m.d.comb += domain.rst.eq(0)
        self.build(m)
        return m

    def build(self, m: Module) -> None:
        raise NotImplementedError

    # ---- free inputs
    def free(self, shape, name: str) -> Signal:
        """A new free input: any value in any cycle."""
        signal = Signal(shape, name=name)
        self.ports.append(signal)
        return signal

    def constant(self, m: Module, shape, name: str) -> Signal:
        """A free input that keeps its first value for the whole trace (an "any constant")."""
        signal = self.free(shape, name)
        first, held = Signal(init=1, name=f"{name}_first"), Signal.like(signal, name=f"{name}_held")
        m.d.sync += [first.eq(0), held.eq(signal)]
        with m.If(~first):
            m.d.comb += Assume(signal == held)
        return signal

    # ---- streams
    def source(self, m: Module, port, name: str) -> tuple[Signal, Signal]:
        """Drive the block's input stream ``port`` from free signals that keep the contract.

        Returns ``(payload, taken)``: the free payload and the cycle's transfer strobe.
        """
        valid = self.free(1, f"{name}_valid")
        payload = self.free(len(port.payload.as_value()) if hasattr(port.payload, "as_value")
                            else len(port.payload), f"{name}_payload")
        m.d.comb += [port.valid.eq(valid), port.payload.eq(payload)]
        stalled, previous = Signal(name=f"{name}_stalled"), Signal.like(payload, name=f"{name}_previous")
        m.d.sync += [stalled.eq(valid & ~port.ready), previous.eq(payload)]
        with m.If(stalled):
            m.d.comb += Assume(valid & (payload == previous))
        taken = Signal(name=f"{name}_taken")
        m.d.comb += taken.eq(valid & port.ready)
        return payload, taken

    def sink(self, m: Module, port, name: str, *, fair: int | None = None, ends=None) -> Signal:
        """Take the block's output stream ``port`` with free ``ready``; assert its contract.

        ``fair``: ``ready`` is never low for ``fair`` cycles in a row (back-pressure that
        lets the block finish; needed for bounded-response checks). ``ends``: a signal
        that, in a cycle it is high, documentedly ends the stream's current beats (they
        may then be withdrawn). Returns the transfer strobe.
        """
        ready = self.free(1, f"{name}_ready")
        m.d.comb += port.ready.eq(ready)
        payload = port.payload.as_value() if hasattr(port.payload, "as_value") else port.payload
        stalled, previous = Signal(name=f"{name}_stalled"), Signal.like(payload, name=f"{name}_previous")
        m.d.sync += [stalled.eq(port.valid & ~ready & (1 if ends is None else ~ends)), previous.eq(payload)]
        with m.If(stalled):
            m.d.comb += Assert(port.valid, f"{name}: valid dropped before the beat was taken")
            m.d.comb += Assert(payload == previous, f"{name}: payload changed before the beat was taken")
        if fair is not None:
            self.bounded(m, ~ready, fair - 1, f"{name}_ready_low", assume=True)
        taken = Signal(name=f"{name}_taken")
        m.d.comb += taken.eq(port.valid & ready)
        return taken

    # ---- counting and time
    @staticmethod
    def counter(m: Module, strobe, width: int, name: str) -> Signal:
        """How many cycles ``strobe`` was high before this one (wraps at ``2**width``)."""
        count = Signal(width, name=name)
        with m.If(strobe):
            m.d.sync += count.eq(count + 1)
        return count

    @staticmethod
    def bounded(m: Module, condition, bound: int, name: str, *, assume: bool = False) -> Signal:
        """``condition`` is never high for more than ``bound`` cycles in a row: asserted, or
        assumed of the environment. Returns the run-length counter."""
        run = Signal(range(bound + 2), name=name)
        with m.If(condition):
            m.d.sync += run.eq(run + (run != bound + 1))
        with m.Else():
            m.d.sync += run.eq(0)
        check = (run < bound) | ~condition
        if assume:
            m.d.comb += Assume(check)
        else:
            m.d.comb += Assert(check, f"{name}: high for more than {bound} cycles in a row")
        return run
