"""A UART (8 data bits, no parity, 1 stop bit, LSB first) as byte streams.

Written here because no maintained Amaranth UART installs from PyPI: the name
``amaranth-stdio`` there is an empty placeholder (version 0, metadata only), and
amaranth-boards has pin definitions but no UART logic.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from arch.link import MIN_DIVISOR

__all__ = ["UartRx", "UartTx", "check_divisor"]


def check_divisor(divisor) -> int:
    """``divisor`` (clock cycles per bit) if it is an integer >= 4; ValueError naming it otherwise."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor (clock cycles per UART bit) must be an integer >= {MIN_DIVISOR}, "
                         f"not {divisor!r}")
    return divisor


class UartTx(wiring.Component):
    """Sends each byte taken from ``i`` on ``tx`` (idle high), ``divisor`` cycles a bit.

    ``i.ready`` is high while the transmitter is idle; a byte takes ``10 * divisor``
    cycles from the cycle it is taken.
    """

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10, init=1)                 # start, 8 data bits, stop; bit 0 on the line
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(bits_left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(0, self.i.payload, 1)), bits_left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(bits_left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], 1)), bits_left.eq(bits_left - 1),
                             timer.eq(self.divisor - 1)]
        return m


class UartRx(wiring.Component):
    """Receives bytes on ``rx`` into the stream ``o``, ``divisor`` cycles a bit.

    ``rx`` passes a two-flip-flop synchronizer; a start bit is confirmed in its middle
    and every bit is sampled there. A byte whose stop bit is low sets ``framing_error``
    for a cycle and is dropped; a byte that arrives while the previous one is still
    waiting in ``o`` (not taken) sets ``overrun`` for a cycle and is dropped.
    """

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)), "framing_error": Out(1),
                          "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        data = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("Idle"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "Start"
            with m.State("Start"):                   # the start bit's middle: still low?
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "Data"
                    with m.If(line):
                        m.next = "Idle"               # a glitch, not a start bit
            with m.State("Data"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), data.eq(Cat(data[1:], line)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "Stop"
            with m.State("Stop"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.next = "Idle"
                    with m.If(~line):
                        m.d.comb += self.framing_error.eq(1)
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(data), self.o.valid.eq(1)]
        return m
