"""The VidKV KV-cache quantize engine (docs/vidkv_contract.md sections 2-6).

::

    i stream (lanes channels of a token per beat, + salient)
      |
      v  FillStage: path (key / value / salient) -> the path's group slot
    group buffer (ColumnMemory:                     stats (ColumnMemory: mn, mx, S per channel,
      |   slots x Tg tokens x D/lanes beats)           read-modify-write per beat)
      v  per completed group (slot FIFO, in completion order):
    GroupStage: [ranker: the n_hi widest key channels] -> (FFT lane records)
    -> EncodeControl: per block of lanes channels, Tg buffer reads
    -> LanePipeline: lane encoders (2-bit / 1-bit / ternary)
    -> OutputStage: Preamble's header, positions (STP), mask (keys); the emitter's records
       of the block's channels (b3 digits -> trit packer) -> o stream

A path fills one of its slots while the encoder works on another (and, for keys
with a ranking, the ranker on a third), so input continues during encoding. Values
with STP (``stp`` built in and the run-time ``stp`` input high) send salient tokens
to a second path that forms its own 2-bit groups; every STP group also records its
tokens' positions. The run-time inputs ``kind`` (0 keys,
1 values), ``value_2bit`` and ``stp`` must not change while a group is incomplete
(change them after a reset). The output stream's format is golden/vidkv_stream.py's.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from arch.kv_config import KvConfig

from .columns import ColumnMemory
from .kv_emit import beat_layout
from .kv_quant_encode import EncodeControl, LanePipeline
from .kv_quant_fill import FillStage, input_layout, stats_layout
from .kv_quant_groups import GroupStage
from .kv_quant_output import OutputStage, Preamble
from .kv_spectral import SpectralStage

__all__ = ["KvQuantizer", "input_layout"]


def _attach(m: Module, port, user) -> None:
    """Connect memory port ``port`` (``addr``, ``en``, ``data``) to a component's port interface ``user``."""
    m.d.comb += [port.addr.eq(user.addr), port.en.eq(user.en)]
    if user.signature.members["data"].flow == Out:
        m.d.comb += port.data.eq(user.data)
    else:
        m.d.comb += user.data.eq(port.data)


class KvQuantizer(wiring.Component):
    """Quantizes a stream of key or value tokens into tagged beats of packed groups.

    Ports: ``i`` (tokens, D / lanes beats each, channel order; ``salient`` is read on a
    token's first beat), ``o`` (beats ``{data, tag}``), and the run-time mode
    ``kind``, ``value_2bit``, ``stp``.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "kind": In(1),
            "value_2bit": In(1),
            "stp": In(1),
            "i": In(stream.Signature(input_layout(config))),
            "o": Out(stream.Signature(beat_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        fft = bool(config.fft_points)
        ranking = 0 < config.n_hi < config.d
        buffer = m.submodules.buffer = ColumnMemory(config.buffer_bits, config.buffer_depth,
                                                    read_ports=2 if fft else 1)
        # The statistics: read-modify-write by the fill, read by the encoder and the ranker; a copy per reader.
        stats = m.submodules.stats = ColumnMemory(stats_layout(config).size, config.slots * config.blocks,
                                                  read_ports=3 if ranking else 2, replicate=True)
        buffer_addr, stats_addr = len(buffer.write.addr), len(stats.write.addr)
        m.submodules.fill = fill = FillStage(config, buffer_addr, stats_addr)
        m.submodules.groups = groups = GroupStage(config, stats_addr)
        m.submodules.control = control = EncodeControl(config, buffer_addr, stats_addr)
        m.submodules.output = output = OutputStage(config)
        m.submodules.preamble = preamble = Preamble(config)

        connect(m, flipped(self.i), fill.i)
        m.d.comb += [fill.kind.eq(self.kind), fill.stp.eq(self.stp), fill.clear_full.eq(control.clear_full)]
        _attach(m, buffer.write, fill.buffer)
        _attach(m, stats.write, fill.stats_write)
        _attach(m, stats.reads[0], fill.stats_read)
        if config.stp:
            # A slot's positions are read only once it is complete: no read meets a write.
            positions = m.submodules.positions = Memory(shape=config.position_bits,
                                                        depth=config.slots * config.group_tokens, init=[],
                                                        attrs={"no_rw_check": 1})
            _attach(m, positions.write_port(), fill.positions)
            _attach(m, positions.read_port(), preamble.positions)

        connect(m, fill.done, groups.done)
        connect(m, groups.o, control.group)
        m.d.comb += groups.kind.eq(self.kind)
        if ranking:
            _attach(m, stats.reads[2], groups.stats)
        if fft:
            m.submodules.spectral = spectral = SpectralStage(config, buffer_addr)
            buf_f = buffer.reads[1]
            m.d.comb += [buf_f.addr.eq(spectral.buf_addr), buf_f.en.eq(spectral.buf_en),
                         spectral.buf_data.eq(buf_f.data),
                         spectral.start.eq(groups.start), spectral.slot.eq(groups.slot),
                         spectral.mask.eq(groups.mask), groups.busy.eq(spectral.busy),
                         groups.parity.eq(spectral.parity)]

        m.submodules.pipeline = pipeline = LanePipeline(config, spectral.banks if fft else 0)
        buf_r, stats_r = buffer.reads[0], stats.reads[1]
        m.d.comb += [
            control.value_2bit.eq(self.value_2bit), control.advance.eq(pipeline.advance),
            control.handoff.eq(pipeline.handoff), control.final.eq(pipeline.final),
            buf_r.addr.eq(control.buf_addr), stats_r.addr.eq(control.stats_addr),
            buf_r.en.eq(pipeline.advance), stats_r.en.eq(pipeline.advance),
            pipeline.buf_data.eq(buf_r.data), pipeline.stats_data.eq(stats_r.data),
            pipeline.issue.eq(control.issue), pipeline.stats_issue.eq(control.stats_issue),
            pipeline.emitter_idle.eq(output.idle), pipeline.preamble_done.eq(preamble.done),
        ]
        if fft:
            m.d.comb += [spectral.read_en.eq(control.read_en), spectral.read_base.eq(control.read_base),
                         spectral.read_parity.eq(control.read_parity),
                         pipeline.value.eq(control.value), pipeline.read_en.eq(control.read_en),
                         pipeline.normal.eq(control.normal), pipeline.records.eq(spectral.records)]

        m.d.comb += [
            preamble.start.eq(control.start), preamble.value.eq(control.value),
            preamble.salient.eq(control.salient), preamble.mask.eq(control.mask), preamble.slot.eq(control.slot),
            preamble.stp.eq(self.stp), preamble.emitter_idle.eq(output.idle),
            preamble.flushing.eq(output.flushing),
            output.load.eq(pipeline.load), output.final.eq(pipeline.final), output.ternary.eq(control.ternary),
            output.lanes.eq(pipeline.lanes),
        ]
        connect(m, preamble.o, output.direct)
        connect(m, output.o, flipped(self.o))
        return m
