"""Every formal property mixbit proves, with its bound and the mutations that must break it.

``pytest -m formal`` (tests/test_formal.py) checks each :data:`PROPERTIES` entry with SBY
and each of its mutations, which must fail; docs/formal.md is written from this table.
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
                  "valid drops after a cycle whether or not the word was taken", "valid dropped"))),
    Property(
        "narrow", _LINKS, "NarrowHarness", {"block": (_FRAMES, "Narrow")}, "bmc", 24,
        "Narrow(20): contract on o; byte k of word w goes out as byte w*3+k; counts within a word; "
        "a byte out within 10 cycles of its word",
        (Mutation(_FRAMES, "self.i.ready.eq(left == 0)", "self.i.ready.eq(left <= 1)",
                  "the next word is taken while the last byte waits: that byte is lost", "more than a word held"),
         Mutation(_FRAMES, "m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]",
                  "m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]\n        with m.If(self.o.valid):\n"
                  "            m.d.sync += held.eq(held >> 8)",
                  "a byte shifts out while stalled: payload changes before it is taken", "payload changed"))),
    Property(
        "frame_sender", _LINKS, "SenderHarness", {"block": (_FRAMES, "FrameSender")}, "bmc", 30,
        "FrameSender: every byte on o is the reply frame of the header taken (sync, status, length, "
        "the payload taken from i in order, two CRC bytes); a frame of <= 3 payload bytes ends "
        "within 54 cycles",
        (Mutation(_FRAMES, "self.i.ready.eq(self.o.ready)]", "self.i.ready.eq(1)]",
                  "a payload byte is taken while o is stalled: it is lost", "not sent at its place"),
         Mutation(_FRAMES, "(\"LengthLow\", length[:8], True, \"LengthHigh\")",
                  "(\"LengthLow\", length[8:], True, \"LengthHigh\")",
                  "the length's high byte sent in place of its low byte", "the frame's byte is wrong"))),
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
                  "a payload byte is offered again after it was taken", "payload: not the good frame's byte"))),
    Property(
        "weight_decoder", _UNITS, "DecoderHarness", {"block": ("hdl.decoder", "WeightDecoder")}, "bmc", 3,
        "WeightDecoder (all families): for every family ID, code and dt the digits sum to "
        "arch.bitmod.code_values; digits 0 or +-2**shift, shift <= 2; unbuilt IDs give zero digits",
        (Mutation("hdl.decoder", "negative=high, shift=(low == below))", "negative=high, shift=(low != below))",
                  "Booth digits +-1 and +-2 swapped", "do not sum to the table"),
         Mutation("hdl.decoder", "for index, fields in enumerate(fp_terms(value)):",
                  "for index, fields in enumerate(fp_terms(value if code_value != 5 else -value)):",
                  "the fp code 5 decodes with the wrong sign", "do not sum to the table"))),
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
                  "the unpacker reads a b3 byte's digits from the wrong bits", "digits changed on the way"))),
    Property(
        "kv_quant_output", "formal.engines", "KvQuantHarness", {"block": ("hdl.kv_quant", "KvQuantizer")},
        "prove", 2,
        "KvQuantizer (D 32, Tg 16, 2 lanes, b3, STP) with free mode, inputs and back-pressure: o keeps "
        "the stream contract from every state, reachable or not (k-induction)",
        (Mutation(_KV_UNITS, "m.d.comb += ready.eq(~o.valid | o.ready)", "m.d.comb += ready.eq(1)",
                  "the output register slice loads a new beat while its beat waits", "payload changed",
                  users=("hdl.kv_quant_output", "hdl.kv_quant")),)),
    Property(
        "kv_dequant_output", "formal.engines", "KvDequantHarness",
        {"block": ("hdl.kv_dequant", "KvDequantizer")}, "prove", 2,
        "KvDequantizer (the same build) with free mode, inputs and back-pressure: o keeps the stream "
        "contract from every state (k-induction)",
        (Mutation(_KV_UNITS, "m.d.comb += ready.eq(~o.valid | o.ready)",
                  "m.d.comb += ready.eq(~o.valid | o.ready | valid)",
                  "the output register slice takes the source's beat over its waiting one", "payload changed",
                  users=("hdl.kv_dequant",)),)),
    Property(
        "pe_array_output", "formal.engines", "PeArrayHarness", {"block": ("hdl.pe_array", "PeArray")},
        "bmc", 50,
        "PeArray (1x1x4, int4, K 32) with free job fields, activations, weights and back-pressure: "
        "o keeps the stream contract for 50 cycles from reset (its first result can come out at cycle 45)",
        (Mutation("hdl.array_io", "    pop = o.valid & o.ready\n", "    pop = o.valid\n",
                  "the output ring pops a result that was not taken", "before the beat was taken",
                  users=("hdl.pe_array",)),)),
    Property(
        "pe_array_jobs", "formal.engines", "PeArrayJobHarness", {"block": ("hdl.pe_array", "PeArray")},
        "bmc", 60,
        "PeArray (1x1x4, int4, K 32, one tile) on jobs of free activations and weights under fair "
        "back-pressure: no result leaves before its job's 8 activation and 5 weight beats are in "
        "(none created) and a job whose beats are all in is answered within 40 cycles (none lost), "
        "for 60 cycles from reset",
        (Mutation("hdl.array_io", "self._groups * config.steps_per_group - 2)",
                  "self._groups * config.steps_per_group - 3)",
                  "a job's activation rows end one beat early", "a result before its job's activations",
                  users=("hdl.pe_array",)),)),
)


def get_property(name: str) -> Property:
    for prop in PROPERTIES:
        if prop.name == name:
            return prop
    raise ValueError(f"no formal property {name!r}; known: {', '.join(p.name for p in PROPERTIES)}")
