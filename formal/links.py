"""Harnesses for the host link's blocks (hdl/frames.py): Widen, Narrow, the frame sender
and receiver, and the CRC step they share.

Each harness drives the block's inputs from free signals that keep the stream contract,
takes its outputs with free (fair) back-pressure, and asserts: the output contract, no
beat created, lost, duplicated or reordered (an arbitrary tracked beat, chosen by the
solver, comes out where it must and with its value; beat counts stay within one word of
each other), and that a beat is answered within a bounded number of cycles.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Mux, Signal
from amaranth.hdl import Assert, Assume

from arch.link import CRC_INIT, CRC_POLY, REPLY_SYNC, REQUEST_SYNC, Status, word_bytes
from hdl.frames import FrameReceiver, FrameSender, Narrow, Widen, crc16_step

from .streams import Harness

__all__ = ["WidenHarness", "NarrowHarness", "SenderHarness", "ReceiverHarness", "CrcHarness"]

#: ``ready`` is never low for this many cycles in a row in the harnesses' sinks.
FAIR = 3


def _byte_masks(bits: int) -> Array:
    """Per byte of a ``bits``-wide word, the mask of the bits that are in the word."""
    return Array(Const((1 << min(8, bits - 8 * k)) - 1, 8) for k in range(word_bytes(bits)))


class WidenHarness(Harness):
    """:class:`Widen`: bytes in, ``bits``-wide words out (``word_bytes(bits)`` bytes a word)."""

    def __init__(self, bits: int = 20, block=Widen):
        super().__init__()
        self.bits, self.block = bits, block

    def build(self, m):
        bits, count = self.bits, word_bytes(self.bits)
        dut = m.submodules.dut = self.block(bits)
        byte, byte_in = self.source(m, dut.i, "i")
        word_out = self.sink(m, dut.o, "o", fair=FAIR)
        n_in, n_out = self.counter(m, byte_in, 8, "n_in"), self.counter(m, word_out, 8, "n_out")

        # The tracked byte: byte `k` of word `w` (both chosen by the solver).
        w, k = self.constant(m, 4, "w"), self.constant(m, range(count), "k")
        m.d.comb += Assume(k < count)
        seen, recorded = Signal(), Signal(8)
        with m.If(byte_in & (n_in == w * count + k)):
            m.d.sync += [seen.eq(1), recorded.eq(byte)]
        padded = Cat(dut.o.payload, Const(0, 8 * count - bits))
        with m.If(word_out & (n_out == w)):
            m.d.comb += Assert(seen, "o: word w went out before its byte k came in")
            m.d.comb += Assert((padded >> (k * 8))[:8] == (recorded & _byte_masks(bits)[k]),
                               "o: byte k of word w is not the byte that came in")
        m.d.comb += Assert(n_out * count <= n_in, "o: a word went out before its bytes came in")
        m.d.comb += Assert(n_in - n_out * count <= count, "i: more than a word's bytes held")
        # Once word w's last byte is in, it goes out within FAIR + 1 cycles.
        complete = (n_in >= (w + 1) * count) & (n_out <= w)
        self.bounded(m, complete, FAIR + 1, "word_wait")


class NarrowHarness(Harness):
    """:class:`Narrow`: ``bits``-wide words in, bytes out, little-endian, zero-padded."""

    def __init__(self, bits: int = 20, block=Narrow):
        super().__init__()
        self.bits, self.block = bits, block

    def build(self, m):
        bits, count = self.bits, word_bytes(self.bits)
        dut = m.submodules.dut = self.block(bits)
        word, word_in = self.source(m, dut.i, "i")
        byte_out = self.sink(m, dut.o, "o", fair=FAIR)
        n_in, n_out = self.counter(m, word_in, 6, "n_in"), self.counter(m, byte_out, 8, "n_out")

        w, k = self.constant(m, 4, "w"), self.constant(m, range(count), "k")
        m.d.comb += Assume(k < count)
        seen, recorded = Signal(), Signal(8)
        with m.If(word_in & (n_in == w)):
            m.d.sync += [seen.eq(1), recorded.eq((Cat(word, Const(0, 8 * count - bits)) >> (k * 8))[:8])]
        with m.If(byte_out & (n_out == w * count + k)):
            m.d.comb += Assert(seen, "o: byte k of word w went out before the word came in")
            m.d.comb += Assert(dut.o.payload == recorded, "o: byte k of word w is not that byte of the word")
        m.d.comb += Assert(n_out <= n_in * count, "o: more bytes out than the words in hold")
        m.d.comb += Assert(n_in * count - n_out <= count, "i: more than a word held")
        # Word w's byte k goes out within count * FAIR + 1 cycles of the word coming in.
        waiting = seen & (n_out <= w * count + k)
        self.bounded(m, waiting, count * FAIR + 1, "byte_wait")


def _crc_reference(m, crc, byte):
    """arch.link.crc16's bit loop, one byte, written on Amaranth values (the definition)."""
    register = Signal(16)
    m.d.comb += register.eq(crc ^ (byte << 8))
    for _ in range(8):
        shifted = Signal(16)
        m.d.comb += shifted.eq(Mux(register[15], (register << 1) ^ CRC_POLY, register << 1))
        register = shifted
    return register


class CrcHarness(Harness):
    """:func:`crc16_step` (the XOR network the receiver and sender use) equals the
    definition for every CRC register value and byte."""

    def __init__(self, step=crc16_step):
        super().__init__()
        self.step = step

    def build(self, m):
        crc, byte = self.free(16, "crc"), self.free(8, "byte")
        m.d.comb += Assert(self.step(crc, byte) == _crc_reference(m, crc, byte), "crc16_step differs")


class SenderHarness(Harness):
    """:class:`FrameSender`: the bytes on ``o`` are the reply frame of each header taken
    (sync, status, length, the payload bytes taken from ``i`` in order, two CRC bytes),
    and a frame of ``L`` payload bytes ends within ``FRAME_CYCLES + L * BYTE_CYCLES``
    cycles of its header under fair back-pressure: each of its six other bytes waits
    for ``o.ready`` (``FAIR`` cycles), a payload byte for ``i.valid`` and then ``o.ready``."""

    MAX_LENGTH = 3
    FRAME_CYCLES, BYTE_CYCLES = 6 * FAIR, 2 * FAIR - 1

    def __init__(self, block=FrameSender):
        super().__init__()
        self.block = block

    def build(self, m):
        dut = m.submodules.dut = self.block()
        header, header_in = self.source(m, dut.header, "header")
        byte, byte_in = self.source(m, dut.i, "i")
        self.bounded(m, ~dut.i.valid, FAIR - 1, "i_valid_low", assume=True)
        byte_out = self.sink(m, dut.o, "o", fair=FAIR)
        status, length = header[:8], header[8:24]
        m.d.comb += Assume(length <= self.MAX_LENGTH)

        # The frame being sent, as the harness expects it. The two CRC bytes are only
        # counted: their value is crc16_step's, proved separately (crc_step), and asking
        # the solver to re-prove the XOR network on every frame makes each step cost
        # minutes (parity reasoning is SAT's weak spot).
        busy, position = Signal(), Signal(range(self.MAX_LENGTH + 7))
        want_status, want_length = Signal(8), Signal(16)
        expected, checked = Signal(8), Signal()
        payload_at = (position >= 4) & (position < 4 + want_length)
        m.d.comb += checked.eq(position < 4 + want_length)
        with m.Switch(position):
            with m.Case(0):
                m.d.comb += expected.eq(REPLY_SYNC)
            with m.Case(1):
                m.d.comb += expected.eq(want_status)
            with m.Case(2):
                m.d.comb += expected.eq(want_length[:8])
            with m.Case(3):
                m.d.comb += expected.eq(want_length[8:])
            with m.Default():
                m.d.comb += expected.eq(byte)
        with m.If(header_in):
            m.d.comb += Assert(~busy, "header: taken while a frame is being sent")
            m.d.sync += [busy.eq(1), position.eq(0), want_status.eq(status), want_length.eq(length)]
        with m.If(byte_out):
            m.d.comb += Assert(busy, "o: a byte outside a frame")
            with m.If(checked):
                m.d.comb += Assert(dut.o.payload == expected, "o: the frame's byte is wrong")
            m.d.sync += position.eq(position + 1)
            with m.If(position == 5 + want_length):
                m.d.sync += busy.eq(0)
        m.d.comb += Assert(byte_in == (byte_out & busy & payload_at), "i: a payload byte not sent at its place")
        # The bound grows with the frame's length, so that the short frames' bound (18 cycles
        # for an empty one) lies within the proof's depth.
        elapsed = Signal(range(self.FRAME_CYCLES + self.MAX_LENGTH * self.BYTE_CYCLES + 2), name="frame_elapsed")
        limit = self.FRAME_CYCLES + want_length * self.BYTE_CYCLES
        m.d.sync += elapsed.eq(Mux(busy, elapsed + (elapsed <= limit), 0))
        m.d.comb += Assert(~busy | (elapsed < limit),
                           f"frame_wait: a frame of L payload bytes took more than "
                           f"{self.FRAME_CYCLES} + {self.BYTE_CYCLES} L cycles")


class ReceiverHarness(Harness):
    """:class:`FrameReceiver` never wedges: after any byte sequence, ``timeout + 3``
    silent cycles with the frame taken bring it back to idle, and a good frame sent then
    is received with its command, length and payload. Its outputs keep the contract
    (``payload``'s beats end when ``frame`` is taken, as the block documents)."""

    MAX_PAYLOAD, TIMEOUT = 3, 3
    COMMAND = 0x42

    def __init__(self, block=FrameReceiver):
        super().__init__()
        self.block = block

    def build(self, m):
        dut = m.submodules.dut = self.block(self.MAX_PAYLOAD, self.TIMEOUT)
        byte, _ = self.source(m, dut.i, "i")
        self.sink(m, dut.frame, "frame")
        # Taking `frame` ends its payload stream (FrameReceiver's documented protocol).
        payload_out = self.sink(m, dut.payload, "payload", ends=dut.frame.valid & dut.frame.ready)

        # `go` rises once, at a moment the solver chooses; from then on the harness sends
        # silence, then the frame A5 42 01 00 x crc, and reads the payload before the frame.
        go = self.free(1, "go")
        x = self.constant(m, 8, "x")
        going, t = Signal(), Signal(6)
        m.d.comb += Assume(~going | go)
        m.d.sync += going.eq(go)
        quiet = self.TIMEOUT + 3
        crc = Const(CRC_INIT, 16)
        good = [Const(REQUEST_SYNC, 8), Const(self.COMMAND, 8), Const(1, 8), Const(0, 8), x]
        for value in good[1:]:
            step = Signal(16)                    # a signal per byte: nesting the XOR network explodes
            m.d.comb += step.eq(crc16_step(crc, value))
            crc = step
        good += [crc[:8], crc[8:]]
        done = quiet + len(good)                 # t of the first cycle after the frame's last byte
        with m.If(go):
            m.d.sync += t.eq(t + (t != 63))
            m.d.comb += Assume(dut.payload.ready & (dut.frame.ready == ((t < quiet) | (t >= done + 3))))
            with m.If(t < quiet):
                m.d.comb += Assume(~dut.i.valid)
            for n, value in enumerate(good):
                with m.If(t == quiet + n):
                    m.d.comb += Assume(dut.i.valid & (byte == value))
            with m.If(t >= done):
                m.d.comb += Assume(~dut.i.valid)
            with m.If(t == done + 1):
                m.d.comb += Assert(dut.frame.valid & (dut.frame.payload.status == Status.OK)
                                   & (dut.frame.payload.command == self.COMMAND)
                                   & (dut.frame.payload.length == 1),
                                   "frame: the good frame after the silence was not received")
            got = Signal(2)
            with m.If((t >= quiet) & payload_out):
                m.d.sync += got.eq(got + 1)
                m.d.comb += Assert(dut.payload.payload == x, "payload: not the good frame's byte")
            with m.If(t == done + 3):
                m.d.comb += Assert(got == 1, "payload: the good frame's byte did not come exactly once")
            with m.If(t > done + 3):
                m.d.comb += Assert(~dut.frame.valid & ~dut.payload.valid, "frame: not back to idle")
