"""Host-link frames over a byte stream (format: arch/link.py, docs/host_link.md).

:class:`FrameReceiver` checks a request's sync byte, length and CRC and keeps its payload
in a memory; :class:`FrameSender` wraps a reply payload in sync, status, length and CRC;
:class:`Widen` and :class:`Narrow` turn bytes into wider words and back (little-endian).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.link import CRC_INIT, CRC_POLY, REPLY_SYNC, REQUEST_SYNC, Status, word_bytes

__all__ = ["crc16_step", "FrameReceiver", "FrameSender", "Widen", "Narrow", "frame_layout", "reply_layout"]

MAX_PAYLOAD = 0xFFFF


def crc16_step(crc, byte):
    """The CRC after one more byte: arch.link.crc16's bit loop, worked out once in
    Python as each new bit's XOR of old CRC and byte bits (the CRC is linear)."""
    # Bit b of the register as the set of inputs it is the XOR of: crc bits 0..15, byte bits 16..23.
    register = [{b} for b in range(16)]
    for b in range(8):
        register[8 + b] = register[8 + b] ^ {16 + b}
    for _ in range(8):
        feedback = register[15]
        register = [set()] + register[:15]
        register = [bits ^ feedback if CRC_POLY >> b & 1 else bits for b, bits in enumerate(register)]
    inputs = Cat(crc, byte)
    return Cat(*[_xor(inputs[i] for i in sorted(bits)) for bits in register])


def _xor(bits):
    bits = list(bits)
    value = bits[0]
    for bit in bits[1:]:
        value = value ^ bit
    return value


def frame_layout() -> data.StructLayout:
    """A received request: command, payload length, and a :class:`arch.link.Status`."""
    return data.StructLayout({"command": 8, "length": 16, "status": 3})


def reply_layout() -> data.StructLayout:
    """A reply's header: status and payload length."""
    return data.StructLayout({"status": 8, "length": 16})


class FrameReceiver(wiring.Component):
    """Parses request frames from the byte stream ``i``; one frame at a time.

    A frame is offered on ``frame`` (``status`` OK, CRC, TRUNCATED or LENGTH) once its
    last byte is in, or once a started frame has seen no byte for ``timeout`` cycles
    (TRUNCATED; a too-long frame is swallowed up to that gap, then LENGTH). While it is
    offered, ``payload`` streams its payload bytes from the start, and bytes arriving on
    ``i`` are dropped; taking ``frame`` ends it. Bytes before a sync byte are ignored.
    """

    def __init__(self, max_payload: int, timeout: int):
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) \
                or not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be an integer in 1..{MAX_PAYLOAD}, not {max_payload!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout (cycles without a byte that end a frame) must be >= 1, not {timeout!r}")
        self.max_payload, self.timeout = max_payload, timeout
        super().__init__({
            "i": In(stream.Signature(8)),
            "frame": Out(stream.Signature(frame_layout())),
            "payload": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        store = m.submodules.store = Memory(shape=8, depth=self.max_payload, init=[])
        w, r = store.write_port(), store.read_port()
        command, length, index = Signal(8), Signal(16), Signal(16)
        crc, received = Signal(16, init=CRC_INIT), Signal(16)
        quiet = Signal(range(self.timeout + 1))            # cycles since the frame's last byte
        byte = self.i.payload
        take = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(1), w.addr.eq(index), w.data.eq(byte)]

        def finish(status):
            m.d.sync += [self.frame.valid.eq(1), self.frame.payload.status.eq(status), index.eq(0)]
            m.next = "Offer"

        with m.If(take):
            m.d.sync += quiet.eq(0)
        with m.Else():
            m.d.sync += quiet.eq(quiet + (quiet != self.timeout))
        with m.FSM():
            with m.State("Idle"):
                m.d.sync += crc.eq(CRC_INIT)
                with m.If(take & (byte == REQUEST_SYNC)):
                    m.next = "Command"
            for state, following in (("Command", "LengthLow"), ("LengthLow", "LengthHigh")):
                with m.State(state):
                    with m.If(take):
                        m.d.sync += crc.eq(crc16_step(crc, byte))
                        if state == "Command":
                            m.d.sync += command.eq(byte)
                        else:
                            m.d.sync += length[:8].eq(byte)
                        m.next = following
                    with m.Elif(quiet == self.timeout):
                        finish(Status.TRUNCATED)
            with m.State("LengthHigh"):
                with m.If(take):
                    m.d.sync += [crc.eq(crc16_step(crc, byte)), length[8:].eq(byte), index.eq(0)]
                    with m.If(Cat(length[:8], byte) > self.max_payload):
                        m.next = "Swallow"
                    with m.Elif(Cat(length[:8], byte) == 0):
                        m.next = "CrcLow"
                    with m.Else():
                        m.next = "Payload"
                with m.Elif(quiet == self.timeout):
                    finish(Status.TRUNCATED)
            with m.State("Payload"):
                m.d.comb += w.en.eq(take)
                with m.If(take):
                    m.d.sync += [crc.eq(crc16_step(crc, byte)), index.eq(index + 1)]
                    with m.If(index == length - 1):
                        m.next = "CrcLow"
                with m.Elif(quiet == self.timeout):
                    finish(Status.TRUNCATED)
            with m.State("CrcLow"):
                with m.If(take):
                    m.d.sync += received[:8].eq(byte)
                    m.next = "CrcHigh"
                with m.Elif(quiet == self.timeout):
                    finish(Status.TRUNCATED)
            with m.State("CrcHigh"):
                with m.If(take):
                    with m.If(Cat(received[:8], byte) == crc):
                        finish(Status.OK)
                    with m.Else():
                        finish(Status.CRC)
                with m.Elif(quiet == self.timeout):
                    finish(Status.TRUNCATED)
            with m.State("Swallow"):
                with m.If(~take & (quiet == self.timeout)):
                    finish(Status.LENGTH)
            with m.State("Offer"):
                with m.If(self.frame.ready):
                    m.d.sync += self.frame.valid.eq(0)
                    m.next = "Idle"
        m.d.comb += [self.frame.payload.command.eq(command), self.frame.payload.length.eq(length)]

        # The payload, read back with back-pressure: the read port moves only when the
        # output register is free or being taken.
        advance = ~self.payload.valid | self.payload.ready
        more = self.frame.valid & (index < length)
        m.d.comb += [r.addr.eq(index), r.en.eq(advance), self.payload.payload.eq(r.data)]
        with m.If(advance):
            m.d.sync += self.payload.valid.eq(more & (self.frame.payload.status == Status.OK))
            with m.If(more & self.frame.valid & (self.frame.payload.status == Status.OK)):
                m.d.sync += index.eq(index + 1)
        with m.If(self.frame.valid & self.frame.ready):
            m.d.sync += self.payload.valid.eq(0)
        return m


class FrameSender(wiring.Component):
    """Sends a reply frame for each ``header`` taken: sync, status, length, then
    ``length`` bytes taken from ``i``, then the CRC, on the byte stream ``o``."""

    def __init__(self):
        super().__init__({"header": In(stream.Signature(reply_layout())), "i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        status, length, index = Signal(8), Signal(16), Signal(16)
        crc = Signal(16, init=CRC_INIT)
        byte = Signal(8)
        sent = self.o.valid & self.o.ready
        m.d.comb += self.o.payload.eq(byte)
        with m.FSM():
            with m.State("Idle"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += [status.eq(self.header.payload.status), length.eq(self.header.payload.length),
                                 crc.eq(CRC_INIT), index.eq(0)]
                    m.next = "Sync"
            fields = [("Sync", Const(REPLY_SYNC, 8), False, "Status"),
                      ("Status", status, True, "LengthLow"),
                      ("LengthLow", length[:8], True, "LengthHigh")]
            for state, value, checked, following in fields:
                with m.State(state):
                    m.d.comb += [self.o.valid.eq(1), byte.eq(value)]
                    with m.If(sent):
                        if checked:
                            m.d.sync += crc.eq(crc16_step(crc, value))
                        m.next = following
            with m.State("LengthHigh"):
                m.d.comb += [self.o.valid.eq(1), byte.eq(length[8:])]
                with m.If(sent):
                    m.d.sync += crc.eq(crc16_step(crc, length[8:]))
                    m.next = "Payload"
                    with m.If(length == 0):
                        m.next = "CrcLow"
            with m.State("Payload"):
                m.d.comb += [self.o.valid.eq(self.i.valid), byte.eq(self.i.payload), self.i.ready.eq(self.o.ready)]
                with m.If(sent):
                    m.d.sync += [crc.eq(crc16_step(crc, self.i.payload)), index.eq(index + 1)]
                    with m.If(index == length - 1):
                        m.next = "CrcLow"
            with m.State("CrcLow"):
                m.d.comb += [self.o.valid.eq(1), byte.eq(crc[:8])]
                with m.If(sent):
                    m.next = "CrcHigh"
            with m.State("CrcHigh"):
                m.d.comb += [self.o.valid.eq(1), byte.eq(crc[8:])]
                with m.If(sent):
                    m.next = "Idle"
        return m


class Widen(wiring.Component):
    """Bytes to ``bits``-wide words: ``word_bytes(bits)`` bytes a word, little-endian;
    the padding bits of the last byte are dropped."""

    def __init__(self, bits: int):
        self.bits = bits
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(bits))})

    def elaborate(self, platform):
        m = Module()
        count = word_bytes(self.bits)
        held = Signal(8 * count)
        index = Signal(range(count + 1))
        m.d.comb += [self.o.payload.eq(held[:self.bits]), self.i.ready.eq(~self.o.valid)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(Cat(held[8:], self.i.payload)), index.eq(index + 1)]
            with m.If(index == count - 1):
                m.d.sync += [index.eq(0), self.o.valid.eq(1)]
        return m


class Narrow(wiring.Component):
    """``bits``-wide words to bytes: ``word_bytes(bits)`` bytes a word, little-endian,
    zero-padded."""

    def __init__(self, bits: int):
        self.bits = bits
        super().__init__({"i": In(stream.Signature(bits)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        count = word_bytes(self.bits)
        held = Signal(8 * count)
        left = Signal(range(count + 1))                 # bytes of `held` still to send
        m.d.comb += [self.o.payload.eq(held[:8]), self.o.valid.eq(left != 0), self.i.ready.eq(left == 0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(self.i.payload), left.eq(count)]
        return m
