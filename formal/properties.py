"""Every formal property mixbit proves, with its bound and the mutations that must break it.

``pytest -m formal`` (tests/test_formal.py) checks each :data:`PROPERTIES` entry with SBY
and each of its mutations, which must fail at the assertion it names; every assertion of a
property's harness is named by one of its mutations (docs/formal.md, "Every assertion is
broken by a mutation"). docs/formal.md is written from this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from .mutants import Mutation

__all__ = ["Property", "PROPERTIES", "get_property"]


@dataclass(frozen=True)
class Property:
    """A harness class (``factory``, from ``module``), checked in ``mode`` to ``depth``.

    ``blocks`` names the harness's keyword arguments that take a block class, with the
    module each is defined in; a mutation replaces every one whose module it edits.
    """

    name: str
    module: str
    factory: str
    blocks: dict[str, tuple[str, str]]
    mode: str
    depth: int
    claim: str
    mutations: tuple[Mutation, ...] = field(default=())

    def harness(self, mutation: Mutation | None = None):
        """The harness around the real blocks, or around the blocks ``mutation`` breaks."""
        harness_class = getattr(importlib.import_module(self.module), self.factory)
        if mutation is None:
            return harness_class()
        mutated = {argument: mutation.apply(cls) for argument, (module, cls) in self.blocks.items()
                   if module in (mutation.module, *mutation.users)}
        if not mutated:
            raise ValueError(f"{self.name}: no block of module {mutation.module}")
        return harness_class(**mutated)


_FRAMES = "hdl.frames"
_LINKS = "formal.links"
_UNITS = "formal.units"
_KV_UNITS = "hdl.kv_units"
_ARRAY_IO = "hdl.array_io"

# The PE array's output ring (hdl.array_io.drain_results), broken three ways; pe_array_output
# and pe_array_jobs check the same contract on it.
_RING_POPS = ("    pop = o.valid & o.ready\n", "    pop = o.valid\n",
              "the output ring pops a result that was not taken")
_RING_COUNT = ("Mux(push & ~pop, up, Mux(pop & ~push, down, filled))",
               "Mux(push & ~o.valid, up, Mux(o.valid & ~push, down, filled))",
               "the output ring counts a result as gone once offered, taken or not: o.valid drops")
_RING_READ = ("        with m.If(pop):\n            m.d.sync += read_s.eq(rotated(read_s))",
              "        with m.If(o.valid):\n            m.d.sync += read_s.eq(rotated(read_s))",
              "the output ring's read pointer moves past a result that was not taken")
# The KV engines' output register slice (hdl.kv_units.register_stream) with its valid loaded
# in every cycle, not only when the slice may move.
_SLICE_VALID = ("    with m.If(ready):\n        m.d.sync += [o.valid.eq(valid), o.payload.eq(payload)]",
                "    m.d.sync += o.valid.eq(valid)\n"
                "    with m.If(ready):\n        m.d.sync += o.payload.eq(payload)",
                "the output slice's valid follows its source in every cycle: a waiting beat is withdrawn")
# A Widen word that completes after two of its three bytes, or after four.
_WIDEN_EARLY = ("with m.If(index == count - 1):", "with m.If(index == count - 2):",
                "a word is offered after two of its three bytes")
_WIDEN_LATE = ("with m.If(index == count - 1):", "with m.If(index == count):",
               "a word is completed a byte late (four bytes a word)")
# A Narrow that offers a byte in the cycle its word is offered on i, from the old word.
_NARROW_EARLY = ("self.o.valid.eq(left != 0)", "self.o.valid.eq((left != 0) | self.i.valid)",
                 "a byte is offered as soon as a word is offered on i, before the word is taken")
# The trit unpacker's channel count starting at a whole channel.
_UNPACK_INIT = ("        queue = Signal(2 * capacity)\n        count = Signal(range(capacity + 1))\n"
                "        # A pushed",
                "        queue = Signal(2 * capacity)\n        count = Signal(range(capacity + 1), init=tg)\n"
                "        # A pushed",
                "the unpacker's count starts at a whole channel: it offers one before any came in")

PROPERTIES: tuple[Property, ...] = (
    Property(
        "crc_step", _LINKS, "CrcHarness", {"step": (_FRAMES, "crc16_step")}, "prove", 1,
        "crc16_step equals CRC-16/CCITT-FALSE's bit loop for every register value and byte",
        (Mutation(_FRAMES, "register[8 + b] = register[8 + b] ^ {16 + b}", "register[8 + b] = register[8 + b]",
                  "the byte is not XORed into the register", "crc16_step differs"),)),
    Property(
        "widen", _LINKS, "WidenHarness", {"block": (_FRAMES, "Widen")}, "bmc", 24,
        "Widen(20): contract on o; byte k of word w lands in word w at byte k; counts within a word; "
        "a complete word out within 4 cycles",
        (Mutation(_FRAMES, "self.i.ready.eq(~self.o.valid)", "self.i.ready.eq(1)",
                  "a byte is taken while the word waits: the word's bytes are overwritten",
                  "more than a word's bytes held"),
         Mutation(_FRAMES, "held.eq(Cat(held[8:], self.i.payload))", "held.eq(Cat(self.i.payload, held[:-8]))",
                  "bytes assembled big-endian", "is not the byte that came in"),
         Mutation(_FRAMES, "with m.If(self.o.valid & self.o.ready):\n            m.d.sync += self.o.valid.eq(0)\n"
                  "        with m.If(self.i.valid & self.i.ready):\n            m.d.sync += [held",
                  "with m.If(self.o.valid):\n            m.d.sync += self.o.valid.eq(0)\n"
                  "        with m.If(self.i.valid & self.i.ready):\n            m.d.sync += [held",
                  "valid drops after a cycle whether or not the word was taken", "valid dropped"),
         Mutation(_FRAMES,
                  "            m.d.sync += [held.eq(Cat(held[8:], self.i.payload)), index.eq(index + 1)]\n",
                  "            m.d.sync += index.eq(index + 1)\n        with m.If(self.i.valid):\n"
                  "            m.d.sync += held.eq(Cat(held[8:], self.i.payload))\n"
                  "        with m.If(self.i.valid & self.i.ready):\n",
                  "the shift register moves on every byte offered, taken or not: a waiting word changes",
                  "payload changed"),
         Mutation(_FRAMES, *_WIDEN_EARLY, "went out before its byte k came in", alone=True),
         Mutation(_FRAMES, *_WIDEN_EARLY, "a word went out before its bytes came in", alone=True),
         Mutation(_FRAMES, *_WIDEN_LATE, "word_wait", alone=True))),
    Property(
        "narrow", _LINKS, "NarrowHarness", {"block": (_FRAMES, "Narrow")}, "bmc", 24,
        "Narrow(20): contract on o; byte k of word w goes out as byte w*3+k; counts within a word; "
        "a byte out within 10 cycles of its word",
        (Mutation(_FRAMES, "self.i.ready.eq(left == 0)", "self.i.ready.eq(left <= 1)",
                  "the next word is taken while the last byte waits: that byte is lost", "more than a word held"),
         Mutation(_FRAMES, "m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]",
                  "m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]\n        with m.If(self.o.valid):\n"
                  "            m.d.sync += held.eq(held >> 8)",
                  "a byte shifts out while stalled: payload changes before it is taken", "payload changed"),
         Mutation(_FRAMES, "        with m.If(self.o.valid & self.o.ready):\n"
                  "            m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]\n",
                  "        with m.If(self.o.valid & self.o.ready):\n            m.d.sync += held.eq(held >> 8)\n"
                  "        with m.If(self.o.valid):\n            m.d.sync += left.eq(left - 1)\n",
                  "the byte count goes down on every byte offered, taken or not", "valid dropped"),
         Mutation(_FRAMES, *_NARROW_EARLY, "went out before the word came in"),
         Mutation(_FRAMES, *_NARROW_EARLY, "more bytes out than the words in hold", alone=True),
         Mutation(_FRAMES, "self.o.payload.eq(held[:8])", "self.o.payload.eq(held[-8:])",
                  "bytes sent from the word's top end", "is not that byte of the word"),
         Mutation(_FRAMES, "self.o.valid.eq(left != 0)", "self.o.valid.eq(left > 1)",
                  "a word's last byte is never offered (and no word taken after it)", "byte_wait"))),
    Property(
        "frame_sender", _LINKS, "SenderHarness", {"block": (_FRAMES, "FrameSender")}, "bmc", 30,
        "FrameSender: every byte on o is the reply frame of the header taken (sync, status, length, "
        "the payload taken from i in order, two CRC bytes); a frame of L <= 3 payload bytes ends "
        "within 18 + 5 L cycles",
        (Mutation(_FRAMES, "self.i.ready.eq(self.o.ready)]", "self.i.ready.eq(1)]",
                  "a payload byte is taken while o is stalled: it is lost", "not sent at its place"),
         Mutation(_FRAMES, "(\"LengthLow\", length[:8], True, \"LengthHigh\")",
                  "(\"LengthLow\", length[8:], True, \"LengthHigh\")",
                  "the length's high byte sent in place of its low byte", "the frame's byte is wrong"),
         Mutation(_FRAMES, "                with m.If(sent):\n                    m.next = \"Idle\"",
                  "                m.next = \"Idle\"",
                  "the last CRC byte is withdrawn if it is not taken at once", "valid dropped"),
         Mutation(_FRAMES, "                    with m.If(sent):\n                        if checked:",
                  "                    with m.If(self.o.valid):\n                        if checked:",
                  "the sync, status and length bytes move on whether or not they were taken", "payload changed"),
         Mutation(_FRAMES, "m.d.comb += self.o.payload.eq(byte)",
                  "m.d.comb += [self.o.payload.eq(byte), self.header.ready.eq(1)]",
                  "header.ready is always high: a header taken mid-frame is lost",
                  "taken while a frame is being sent"),
         Mutation(_FRAMES, "with m.If(self.header.valid):", "with m.If(self.header.ready):",
                  "a frame starts without a header (ready tested for valid)", "a byte outside a frame"),
         Mutation(_FRAMES, "m.d.comb += [self.o.valid.eq(1), byte.eq(crc[:8])]",
                  "m.d.comb += [self.o.valid.eq(0), byte.eq(crc[:8])]",
                  "the CRC's low byte is never offered: the sender hangs", "frame_wait"))),
    Property(
        "frame_receiver", _LINKS, "ReceiverHarness", {"block": (_FRAMES, "FrameReceiver")}, "bmc", 40,
        "FrameReceiver(max_payload 3, timeout 3): after any bytes, 6 silent cycles bring it back to "
        "idle and the next good frame is received with its command, length and payload byte, once; "
        "contract on frame and payload",
        (Mutation(_FRAMES, "with m.If(~take & (quiet == self.timeout)):\n"
                  "                    finish(Status.LENGTH)",
                  "with m.If(~take & (quiet == self.timeout) & (command == 0x42)):\n"
                  "                    finish(Status.LENGTH)",
                  "a too-long frame is swallowed forever unless its command is 0x42 (a wedge)",
                  "not received"),
         Mutation(_FRAMES, "m.d.sync += self.payload.valid.eq(0)\n        return m",
                  "m.d.sync += self.payload.valid.eq(0)\n"
                  "        with m.If(self.payload.valid & self.payload.ready):\n"
                  "            m.d.sync += self.payload.valid.eq(1)\n        return m",
                  "a payload byte is offered again after it was taken", "payload: not the good frame's byte"),
         Mutation(_FRAMES, "                with m.If(self.frame.ready):\n"
                  "                    m.d.sync += self.frame.valid.eq(0)",
                  "                with m.If(self.frame.ready | take):\n"
                  "                    m.d.sync += self.frame.valid.eq(0)",
                  "a byte that comes while a frame is offered ends the offer", "frame: valid dropped"),
         Mutation(_FRAMES, "        with m.If(take):\n            m.d.sync += quiet.eq(0)",
                  "        with m.If(take):\n            m.d.sync += [quiet.eq(0), command.eq(byte)]",
                  "the command register loads every byte taken, also while its frame is offered",
                  "frame: payload changed"),
         Mutation(_FRAMES, "        with m.If(self.frame.valid & self.frame.ready):\n"
                  "            m.d.sync += self.payload.valid.eq(0)",
                  "        with m.If(self.frame.valid & (self.frame.ready | take)):\n"
                  "            m.d.sync += self.payload.valid.eq(0)",
                  "a byte that comes while a frame is offered ends its payload", "payload: valid dropped"),
         Mutation(_FRAMES, "advance = ~self.payload.valid | self.payload.ready", "advance = 1",
                  "the payload's read moves on whether or not its byte was taken", "payload: payload changed",
                  alone=True),
         Mutation(_FRAMES, "more = self.frame.valid & (index < length)",
                  "more = self.frame.valid & (index < length - 1)",
                  "a frame's last payload byte is never read out", "did not come exactly once"),
         Mutation(_FRAMES, "                    m.d.sync += self.frame.valid.eq(0)\n"
                  "                    m.next = \"Idle\"",
                  "                    m.next = \"Idle\"",
                  "a frame stays offered after it was taken", "not back to idle", alone=True))),
    Property(
        "weight_decoder", _UNITS, "DecoderHarness", {"block": ("hdl.decoder", "WeightDecoder")}, "bmc", 3,
        "WeightDecoder (all families): for every family ID, code and dt the digits sum to "
        "arch.bitmod.code_values; digits 0 or +-2**shift, shift <= 2; unbuilt IDs give zero digits",
        (Mutation("hdl.decoder", "negative=high, shift=(low == below))", "negative=high, shift=(low != below))",
                  "Booth digits +-1 and +-2 swapped", "do not sum to the table"),
         Mutation("hdl.decoder", "for index, fields in enumerate(fp_terms(value)):",
                  "for index, fields in enumerate(fp_terms(value if code_value != 5 else -value)):",
                  "the fp code 5 decodes with the wrong sign", "do not sum to the table"),
         Mutation("hdl.decoder",
                  "        with m.If(self.i.ready):\n            m.d.sync += self.o.valid.eq(self.i.valid)\n",
                  "        m.d.sync += self.o.valid.eq(self.i.valid)\n        with m.If(self.i.ready):\n",
                  "o.valid follows i.valid in every cycle, not only when the stage moves", "valid dropped"),
         Mutation("hdl.decoder",
                  "            with m.If(self.i.valid):\n                m.d.sync += self.o.payload.eq(terms)\n",
                  "        with m.If(self.i.valid):\n            m.d.sync += self.o.payload.eq(terms)\n",
                  "the output register loads every code offered, not only when the stage moves",
                  "payload changed"),
         Mutation("hdl.decoder", "self.i.ready.eq(~self.o.valid | self.o.ready)", "self.i.ready.eq(1)",
                  "a code is taken while the one before waits on o", "a second code taken while one waits"),
         Mutation("hdl.decoder", "abs(d).bit_length() - 1 if d else 0", "abs(d).bit_length() if d else 0",
                  "fp digits shift one place too far (4 becomes 2**3)", "a digit shifts by more than"),
         Mutation("hdl.decoder", "            m.d.sync += self.o.valid.eq(self.i.valid)\n",
                  "            m.d.sync += self.o.valid.eq(1)\n",
                  "the stage offers digits whenever it moves, code or not", "a digit set nobody asked for"),
         Mutation("hdl.decoder", "    merged = 0\n    for flag, candidate in candidates:\n"
                  "        merged = merged | (candidate.as_value() & flag.replicate(len(candidate.as_value())))\n",
                  "    merged = candidates[-1][1].as_value()\n"
                  "    for flag, candidate in reversed(candidates[:-1]):\n"
                  "        width = max(len(merged), len(candidate.as_value()))\n"
                  "        merged = ((candidate.as_value() & flag.replicate(width))\n"
                  "                  | (merged & ~flag.replicate(width)))\n",
                  "a priority select whose default is the last family: an unbuilt ID decodes as fp3",
                  "an unbuilt family gave nonzero digits"))),
    Property(
        "trit_round_trip", _UNITS, "TritHarness",
        {"packer": (_KV_UNITS, "TritPacker"), "unpacker": (_KV_UNITS, "TritUnpacker")}, "bmc", 7,
        "TritPacker -> TritUnpacker (a channel of 20 digits, any digits 0..2, free stalls): the "
        "channel comes out of the unpacker unchanged (every b3 byte value packed and unpacked), no "
        "more come out than went in",
        (Mutation(_KV_UNITS, "return sum_tree([times(d, 3 ** (4 - n)) for n, d in enumerate(digits)])[:8]",
                  "return sum_tree([times(d, 3 ** n) for n, d in enumerate(digits)])[:8]",
                  "b3 bytes packed with the digit order reversed", "digits changed on the way"),
         Mutation(_KV_UNITS, "digits.append(((scaled << 1) + scaled)[8:10])",
                  "digits.append(((scaled << 1) + scaled)[7:9])",
                  "the unpacker reads a b3 byte's digits from the wrong bits", "digits changed on the way"),
         Mutation(_KV_UNITS, "        with m.Elif(self.o.ready):\n            m.d.sync += word_valid.eq(0)",
                  "        with m.Else():\n            m.d.sync += word_valid.eq(0)",
                  "the packer offers a word for one cycle only", "pack.o: word changed while waiting"),
         Mutation(_KV_UNITS, *_UNPACK_INIT, "channel out before it was pushed"),
         Mutation(_KV_UNITS, *_UNPACK_INIT, "more channels out than in", alone=True))),
    Property(
        "trit_drain", _UNITS, "TritDrainHarness",
        {"packer": (_KV_UNITS, "TritPacker"), "unpacker": (_KV_UNITS, "TritUnpacker")}, "bmc", 30,
        "TritPacker -> TritUnpacker (Tg 16, one or two channels, free stalls): once the last channel "
        "is in the packer, it is out of the unpacker within 12 cycles (its word padded by flush)",
        (Mutation(_KV_UNITS, " | (self.flush & (count != 0))) & (", ") & (",
                  "the packer never sends a part word: a group's last channel stays in it", "drain"),)),
    Property(
        "kv_quant_output", "formal.engines", "KvQuantHarness", {"block": ("hdl.kv_quant", "KvQuantizer")},
        "prove", 2,
        "KvQuantizer (D 32, Tg 16, 2 lanes, b3, STP) with free mode, inputs and back-pressure: o keeps "
        "the stream contract from every state, reachable or not (k-induction)",
        (Mutation(_KV_UNITS, "m.d.comb += ready.eq(~o.valid | o.ready)", "m.d.comb += ready.eq(1)",
                  "the output register slice loads a new beat while its beat waits", "payload changed",
                  users=("hdl.kv_quant_output", "hdl.kv_quant")),
         Mutation(_KV_UNITS, *_SLICE_VALID, "valid dropped", users=("hdl.kv_quant_output", "hdl.kv_quant")))),
    Property(
        "kv_dequant_output", "formal.engines", "KvDequantHarness",
        {"block": ("hdl.kv_dequant", "KvDequantizer")}, "prove", 2,
        "KvDequantizer (the same build) with free mode, inputs and back-pressure: o keeps the stream "
        "contract from every state (k-induction)",
        (Mutation(_KV_UNITS, "m.d.comb += ready.eq(~o.valid | o.ready)",
                  "m.d.comb += ready.eq(~o.valid | o.ready | valid)",
                  "the output register slice takes the source's beat over its waiting one", "payload changed",
                  users=("hdl.kv_dequant",)),
         Mutation(_KV_UNITS, *_SLICE_VALID, "valid dropped", users=("hdl.kv_dequant",)))),
    Property(
        "pe_array_output", "formal.engines", "PeArrayHarness", {"block": ("hdl.pe_array", "PeArray")},
        "bmc", 50,
        "PeArray (1x1x4, int4, K 32) with free job fields, activations, weights and back-pressure: "
        "o keeps the stream contract for 50 cycles from reset (its first result can come out at cycle 45)",
        (Mutation(_ARRAY_IO, *_RING_POPS, "payload changed", users=("hdl.pe_array",)),
         Mutation(_ARRAY_IO, *_RING_COUNT, "valid dropped", users=("hdl.pe_array",)))),
    Property(
        "pe_array_jobs", "formal.engines", "PeArrayJobHarness", {"block": ("hdl.pe_array", "PeArray")},
        "bmc", 60,
        "PeArray (1x1x4, int4, K 32, one tile) on jobs of free activations and weights under fair "
        "back-pressure: no result leaves before its job's 8 activation and 5 weight beats are in "
        "(none created) and a job whose beats are all in is answered within 40 cycles (none lost), "
        "for 60 cycles from reset",
        (Mutation(_ARRAY_IO, "self._groups * config.steps_per_group - 2)",
                  "self._groups * config.steps_per_group - 3)",
                  "a job's activation rows end one beat early", "a result before its job's activations",
                  users=("hdl.pe_array",)),
         Mutation("hdl.weight_steps_window", "emit_next.eq(in_codes_next & ~level.low_next & can_emit_next)",
                  "emit_next.eq(in_codes_next & can_emit_next)",
                  "the weight window emits a step without waiting for its codes",
                  "a result before its job's weights", users=("hdl.weight_steps", "hdl.pe_array")),
         Mutation("hdl.pe_array", "delay_line(m, bus.tile_end[c], stages, f\"tile_end{c}\")",
                  "delay_line(m, bus.tile_end[c], stages + 1, f\"tile_end{c}\")",
                  "a tile's end reaches the cell a cycle after its last group sum: the result is never "
                  "copied out", "job_wait"),
         Mutation(_ARRAY_IO, *_RING_COUNT, "valid dropped", users=("hdl.pe_array",)),
         Mutation(_ARRAY_IO, *_RING_READ, "payload changed", users=("hdl.pe_array",)))),
)


def get_property(name: str) -> Property:
    for prop in PROPERTIES:
        if prop.name == name:
            return prop
    raise ValueError(f"no formal property {name!r}; known: {', '.join(p.name for p in PROPERTIES)}")
