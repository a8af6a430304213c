"""The VidKV KV-cache dequantize engine: the quantize engine's beats in, fixed-point tokens out.

::

    i stream (tagged beats, golden/vidkv_stream.py)
      |  GroupParser (kv_dequant_parser.py): header -> positions (STP) -> mask (keys)
      |  -> per channel: code words, metadata (b3 values: trit words -> unpacker -> one
      |  channel's digits at a time)
      v
    per lane bank (channel c in bank c % lanes, two group slots):
      codes (2 bits per token) and a 4-entry table of the channel's decoded values,
      computed once per channel from its metadata by the TableDecoder
      (kv_dequant_table.py; the only division, by 3, is a two-bits-a-level remainder chain)
      |  TokenSender (kv_dequant_sender.py): token t, block b: one read of every bank
      |  -> lanes table lookups
      v
    a register slice, or on FFT builds the InverseStage (kv_spectral.py)
      v
    o stream: lanes channels of a token per beat, with the token's position

A group's tokens come out in order, each with its position in the original stream
(the position the STP path recorded, else the path's running token count); the two
STP paths' groups arrive in completion order, so restoring one original order across
them is the host's scatter by position (a merge in hardware would need an unbounded
number of groups buffered). The receiving slot and the sending slot alternate, so a
group is received while the previous one is sent.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_dequant_parser import GroupParser
from .kv_dequant_sender import TokenSender, output_layout
from .kv_dequant_table import TableDecoder, table_layout, third_scaled
from .kv_emit import beat_layout
from .kv_spectral import InverseStage
from .kv_units import register_stream

__all__ = ["KvDequantizer", "output_layout", "third_scaled"]


class KvDequantizer(wiring.Component):
    """Reconstructs fixed-point tokens (``frac_bits`` fraction bits) from quantized groups.

    A :class:`~hdl.kv_dequant_parser.GroupParser` writes a group's codes and positions
    into the receiving slot of the banks and its channels' metadata into a
    :class:`~hdl.kv_dequant_table.TableDecoder`, which writes the channels' value
    tables; a :class:`~hdl.kv_dequant_sender.TokenSender` sends the other, full slot.
    Its beats leave through a register slice or, on FFT builds, through an
    :class:`~hdl.kv_spectral.InverseStage`.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.

    Members
    -------
    value_2bit, stp : In(1)
        The run-time mode, as given to the quantize engine; held while a group is taken.
    i : In(stream.Signature(beat_layout(config)))
        Beats ``{data, tag}`` as the quantize engine sends them; up to one a cycle
        (``ready`` as :class:`~hdl.kv_dequant_parser.GroupParser` says).
    o : Out(stream.Signature(output_layout(config)))
        D / lanes beats per token, at most one a cycle, from a register slice (a stalled
        beat is held; the slice takes the next one when ``~o.valid | o.ready``).
    error : Out(1)
        Set when a beat's tag is not the one the group's format expects (the beat is
        dropped; cleared by reset).
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "value_2bit": In(1),
            "stp": In(1),
            "i": In(stream.Signature(beat_layout(config))),
            "o": Out(stream.Signature(output_layout(config))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.parser = parser = GroupParser(config)
        m.submodules.decoder = decoder = TableDecoder(config)
        m.submodules.sender = sender = TokenSender(config)
        for lane in range(config.lanes):
            code_mem = Memory(shape=2 * config.group_tokens, depth=2 * config.blocks, init=[])
            table_mem = Memory(shape=table_layout(config), depth=2 * config.blocks, init=[])
            m.submodules[f"codes{lane}"], m.submodules[f"table{lane}"] = code_mem, table_mem
            wiring.connect(m, parser.code_write[lane], code_mem.write_port(granularity=32))
            wiring.connect(m, decoder.table_write[lane], table_mem.write_port())
            wiring.connect(m, sender.code_read[lane], code_mem.read_port())
            wiring.connect(m, sender.table_read[lane], table_mem.read_port())
        positions = m.submodules.positions = Memory(shape=config.position_bits, depth=2 * config.group_tokens,
                                                    init=[])
        wiring.connect(m, parser.position_write, positions.write_port())
        wiring.connect(m, sender.position_read, positions.read_port())

        # The slots: the parser fills one while the sender sends the other.
        full = Signal(2)
        m.d.sync += full.eq((full | parser.fill) & ~sender.release)
        wiring.connect(m, wiring.flipped(self.i), parser.i)
        wiring.connect(m, parser.meta, decoder.meta)
        wiring.connect(m, parser.slots, sender.slots)
        m.d.comb += [parser.value_2bit.eq(self.value_2bit), parser.stp.eq(self.stp), self.error.eq(parser.error),
                     parser.full.eq(full), sender.full.eq(full), decoder.slot.eq(parser.slot),
                     parser.table_busy.eq(decoder.busy)]

        if config.fft_points > 0:                           # FFT key groups: the inverse FFT
            m.submodules.inverse = inverse = InverseStage(config, output_layout(config))
            wiring.connect(m, sender.o, inverse.i)
            wiring.connect(m, inverse.o, wiring.flipped(self.o))
        else:
            m.d.comb += sender.o.ready.eq(register_stream(m, self.o, sender.o.valid, sender.o.payload.beat))
        return m
