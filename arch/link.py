"""The host link's frame format: the one definition the RTL and the host driver share.

Pure Python (no torch), like :mod:`arch.bitmod`: ``gateware.accelerator`` builds its
frame receiver, command decoder and reply sender from these constants and
``host.link`` encodes requests and checks replies with them. docs/host_link.md
describes the format in prose.

A request is ``REQUEST_SYNC, command, length (2 bytes, little-endian), payload, crc (2
bytes, little-endian)``; a reply is ``REPLY_SYNC, status, length, payload, crc``. The CRC
is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
XOR) over every byte after the sync byte and before the CRC.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REQUEST_SYNC", "REPLY_SYNC", "CRC_POLY", "CRC_INIT", "crc16", "Command", "Status", "STATUS_TEXT",
           "FRAME_BYTES", "MIN_DIVISOR", "BOARD_BAUD", "encode_request", "encode_reply", "decode_reply",
           "FrameError", "INFO_FIELDS", "COUNTER_FIELDS", "HeaderLayout", "LOAD_WEIGHTS_LAYOUT",
           "LOAD_ACT_LAYOUT", "KV_MODE_LAYOUT", "word_bytes", "pack_words", "unpack_words"]

REQUEST_SYNC = 0xA5
REPLY_SYNC = 0x5A
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
#: Header bytes after the sync byte: command / status, then the payload length.
HEADER_BYTES = 3
#: Bytes a frame adds to its payload: the sync byte, the header and the CRC.
FRAME_BYTES = 1 + HEADER_BYTES + 2
#: The fewest clock cycles per UART bit: the receiver samples a bit in its middle.
MIN_DIVISOR = 4
#: The board builds' UART rate and the host driver's default: 3 Mbaud, the most the
#: boards' USB-serial bridges (FT231X on the ULX3S, FT2232H on the iCEBreaker) carry
#: at a standard rate (their 3 MHz baud base divided by 1).
BOARD_BAUD = 3_000_000


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


class Command:
    """Request command codes (docs/host_link.md has each one's payload and reply)."""

    INFO = 0x01            # -> the build's parameters (INFO_FIELDS)
    COUNTERS = 0x02        # -> the performance counters (COUNTER_FIELDS)
    LOAD_WEIGHTS = 0x10    # u32 first beat, then weight beats -> (empty)
    LOAD_ACT = 0x11        # family, groups, col_tiles, activations -> (empty): starts a PE-array job
    RUN = 0x12             # (empty) -> u32 cycles: streams the job's weights, results kept on chip
    READ_RESULTS = 0x13    # (empty) -> the job's result beats
    KV_MODE = 0x20         # kind, value_2bit, stp -> (empty): resets both KV engines
    KV_QUANT = 0x21        # quantizer input beats -> (empty)
    KV_QUANT_READ = 0x22   # (empty) -> the quantizer's waiting output beats
    KV_DEQUANT = 0x23      # dequantizer input beats -> (empty)
    KV_DEQUANT_READ = 0x24  # (empty) -> the dequantizer's waiting output beats

    ALL = (INFO, COUNTERS, LOAD_WEIGHTS, LOAD_ACT, RUN, READ_RESULTS, KV_MODE, KV_QUANT, KV_QUANT_READ,
           KV_DEQUANT, KV_DEQUANT_READ)


class Status:
    """Reply status codes."""

    OK = 0
    CRC = 1          # the request's CRC did not match: nothing was done
    TRUNCATED = 2    # the request stopped mid-frame for longer than the byte timeout
    LENGTH = 3       # the payload length is too long for this build, or wrong for the command
    COMMAND = 4      # unknown command code
    ORDER = 5        # the command needs an earlier one (RUN before LOAD_ACT, ...)
    ARGUMENT = 6     # a field is out of range for this build (family not built, too many beats, ...)
    OVERFLOW = 7     # an engine's output buffer stayed full: read it, then KV_MODE to start over


STATUS_TEXT = {
    Status.OK: "ok",
    Status.CRC: "CRC mismatch in the request",
    Status.TRUNCATED: "request truncated (byte timeout)",
    Status.LENGTH: "payload length not accepted",
    Status.COMMAND: "unknown command",
    Status.ORDER: "command out of order",
    Status.ARGUMENT: "argument out of range for this build",
    Status.OVERFLOW: "engine output buffer overflow",
}

#: INFO's reply: these fields, u32 little-endian each, in this order (``engines``: bit 0 the
#: PE array is built, bit 1 the KV engines are).
INFO_FIELDS = ("version", "engines", "clk_hz", "baud", "max_payload",
               "pe_rows", "pe_cols", "pe_lanes", "pe_group_size", "pe_scale_bits", "pe_families", "pe_max_k",
               "pe_acc_bits", "pe_activations", "pe_align_bits", "weight_beats", "result_beats",
               "kv_d", "kv_group_tokens", "kv_in_bits", "kv_lanes", "kv_f_num", "kv_f_den", "kv_b3", "kv_stp",
               "kv_fft", "kv_frac_bits", "kv_out_bits", "kv_quant_fifo", "kv_dequant_fifo")
#: COUNTERS' reply: u32 little-endian each.
COUNTER_FIELDS = ("frames_ok", "frames_rejected", "run_cycles", "kv_quant_beats_in", "kv_quant_beats_out",
                  "kv_dequant_beats_in", "kv_dequant_beats_out", "cycles")


@dataclass(frozen=True)
class HeaderLayout:
    """The fixed-size header at the start of a request's payload: the one table of its fields.

    ``fields`` are ``(name, bit offset, bit width)``, unsigned, little-endian (bit ``8 * k``
    is bit 0 of the header's byte ``k``); the bits no field covers are sent as zero and
    ignored. The host packs headers with :meth:`pack`; ``gateware.link_layouts`` builds
    the RTL's ``data`` layout from ``fields``.
    """

    size: int                                   # bytes on the link
    fields: tuple[tuple[str, int, int], ...]

    def __post_init__(self):
        taken = 0
        for name, offset, width in self.fields:
            bits = ((1 << width) - 1) << offset
            if width < 1 or offset < 0 or offset + width > 8 * self.size or taken & bits:
                raise ValueError(f"field {name!r} at bits {offset}..{offset + width - 1} overlaps another "
                                 f"or leaves the {self.size}-byte header")
            taken |= bits

    def pack(self, **values: int) -> bytes:
        """The header's bytes with these field values (each field given once, in range)."""
        names = {name for name, _, _ in self.fields}
        if set(values) != names:
            raise ValueError(f"a header needs the fields {sorted(names)}, not {sorted(values)}")
        word = 0
        for name, offset, width in self.fields:
            value = int(values[name])
            if not 0 <= value < 1 << width:
                raise ValueError(f"header field {name!r} holds 0..{(1 << width) - 1}, not {value}")
            word |= value << offset
        return word.to_bytes(self.size, "little")

    def unpack(self, header: bytes) -> dict[str, int]:
        """The inverse of :meth:`pack`: the field values of ``header`` (``size`` bytes)."""
        if len(header) != self.size:
            raise ValueError(f"a header is {self.size} bytes, not {len(header)}")
        word = int.from_bytes(header, "little")
        return {name: word >> offset & ((1 << width) - 1) for name, offset, width in self.fields}


#: LOAD_WEIGHTS: u32 index of the first beat written.
LOAD_WEIGHTS_LAYOUT = HeaderLayout(4, (("first", 0, 32),))
#: LOAD_ACT: u8 family id, u8 fp16 (bit 0: the job's activations are FP16), u16 groups (K / G),
#: u16 column tiles, u16 0.
LOAD_ACT_LAYOUT = HeaderLayout(8, (("family", 0, 8), ("fp16", 8, 1), ("groups", 16, 16), ("col_tiles", 32, 16)))
#: KV_MODE: one byte each, bit 0 used: kind (0 keys, 1 values), value_2bit, stp.
KV_MODE_LAYOUT = HeaderLayout(3, (("kind", 0, 1), ("value_2bit", 8, 1), ("stp", 16, 1)))


class FrameError(ValueError):
    """A reply that is not a well-formed frame (bad sync, length or CRC)."""


def word_bytes(bits: int) -> int:
    """Bytes a ``bits``-wide word takes on the link (little-endian, zero-padded)."""
    return -(-bits // 8)


def pack_words(words, bits: int) -> bytes:
    """``words`` (unsigned ints below ``2**bits``) as little-endian ``word_bytes(bits)``-byte fields."""
    size = word_bytes(bits)
    out = bytearray()
    for w in words:
        if not 0 <= w < 1 << bits:
            raise ValueError(f"a {bits}-bit word must be in 0..{(1 << bits) - 1}, not {w}")
        out += w.to_bytes(size, "little")
    return bytes(out)


def unpack_words(data: bytes, bits: int) -> list[int]:
    """The inverse of :func:`pack_words` (``len(data)`` must be a multiple of the word's bytes)."""
    size = word_bytes(bits)
    if len(data) % size:
        raise FrameError(f"{len(data)} bytes are not a whole number of {size}-byte words")
    return [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]


def _frame(sync: int, code: int, payload: bytes) -> bytes:
    if not 0 <= code < 256:
        raise ValueError(f"a command or status must be a byte, not {code}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"a payload holds at most 65535 bytes, not {len(payload)}")
    body = bytes([code]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([sync]) + body + crc16(body).to_bytes(2, "little")


def encode_request(command: int, payload: bytes = b"") -> bytes:
    """A request frame."""
    return _frame(REQUEST_SYNC, command, payload)


def encode_reply(status: int, payload: bytes = b"") -> bytes:
    """A reply frame (what the accelerator sends; the tests' reference)."""
    return _frame(REPLY_SYNC, status, payload)


def decode_reply(frame: bytes) -> tuple[int, bytes]:
    """``(status, payload)`` of a whole reply frame; :class:`FrameError` if it is malformed."""
    if len(frame) < FRAME_BYTES or frame[0] != REPLY_SYNC:
        raise FrameError(f"not a reply frame: {frame[:8].hex()}...")
    length = int.from_bytes(frame[2:4], "little")
    if len(frame) != FRAME_BYTES + length:
        raise FrameError(f"reply of {len(frame)} bytes, but its header says a {length}-byte payload")
    body, crc = frame[1:-2], int.from_bytes(frame[-2:], "little")
    if crc16(body) != crc:
        raise FrameError(f"reply CRC {crc:#06x}, computed {crc16(body):#06x}")
    return frame[1], frame[1 + HEADER_BYTES:-2]
