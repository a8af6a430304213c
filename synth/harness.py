"""A pin-cheap wrapper for timing a core: an LFSR drives its inputs, an XOR tree reads its outputs."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

__all__ = ["Harness"]

#: Inputs of each registered piece of the output XOR tree (two levels of LUT4).
XOR_FAN_IN = 16


class Harness(wiring.Component):
    """Wraps ``core`` so that it needs three pins (``clk``, ``rst``, ``out``) however wide it is.

    Every input bit of the core comes from a register of a Fibonacci LFSR, and the
    XOR of every output bit goes to one output register. Each input-to-output path of
    the core therefore starts and ends at a flip-flop, so nextpnr's Fmax covers the
    core's logic, and no output is constant so yosys cannot remove any of it. The
    harness adds one flip-flop per input bit, one feedback LUT and an XOR tree of
    about ``outputs / 3`` LUT4s with a register after every two levels (so that the
    tree, which spans all outputs, does not limit a wide core); reports give it
    separately (harness minus core).

    Members
    -------
    out : Out(1)
        The registered XOR of all core outputs (the only output pin).
    """

    def __init__(self, core: wiring.Component):
        super().__init__({"out": Out(1)})
        self.core = core
        members = core.signature.flatten(core)
        self.inputs, self.outputs = [], []
        for _path, member, value in members:
            (self.inputs if member.flow == wiring.In else self.outputs).append(Value.cast(value))
        self.input_bits = sum(len(v) for v in self.inputs)
        self.output_bits = sum(len(v) for v in self.outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self.core
        width = max(self.input_bits, 3)
        lfsr = Signal(width, init=1)
        # Shift in the XNOR of the top bit and two more taps: the sequence need not be
        # maximal, only non-constant, and XNOR keeps the all-zero reset state moving.
        feedback = ~(lfsr[-1] ^ lfsr[width // 2] ^ lfsr[0])
        m.d.sync += lfsr.eq(Cat(feedback, lfsr[:-1]))
        offset = 0
        for value in self.inputs:
            m.d.comb += value.eq(lfsr[offset:offset + len(value)])
            offset += len(value)
        # The XOR tree has a register after every two LUT levels (16 inputs), so that in
        # a wide core the harness's tree, spanning every output, is never the limit.
        level = list(Cat(*self.outputs))
        while len(level) > 1:
            registered = []
            for index in range(0, len(level), XOR_FAN_IN):
                reduced = Signal(name=f"xor{len(level)}_{index // XOR_FAN_IN}")
                m.d.sync += reduced.eq(Cat(*level[index:index + XOR_FAN_IN]).xor())
                registered.append(reduced)
            level = registered
        m.d.sync += self.out.eq(level[0])
        return m
