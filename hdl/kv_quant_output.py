"""The KV quantize engine's output: a group's preamble beats, its records, its ``b3`` trit words.

:class:`Preamble` sends a group's header, positions (STP) and mask (keys);
:class:`OutputStage` sends the channel records (:class:`~hdl.kv_emit.Emitter`), packs
``b3`` digits into trit words (:class:`~hdl.kv_units.TritPacker`) and merges the three
sources into the output stream (golden/vidkv_stream.py's format).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig
from arch.vidkv import HEADER, MASK, POSITION, TRITS

from .kv_emit import Emitter, beat_layout, lane_layout
from .kv_units import TritPacker, index_bits, register_stream

__all__ = ["Preamble", "OutputStage"]


class Preamble(wiring.Component):
    """Sends a group's header, then its ``Tg`` positions (STP value groups) or its mask words (keys).

    ``start`` (one cycle, after ``done`` has risen for the previous group) begins a
    group: ``done`` falls the next cycle. The header is
    offered (``o.valid``) once the previous group is out (``emitter_idle`` and not
    ``flushing``), each position or mask word right after; a beat goes when ``o.ready``.
    With the last beat sent, ``done`` rises and holds until the next ``start``. ``value``,
    ``salient``, ``mask``, ``slot`` and ``stp`` are read while the beats are offered.
    Positions are read ahead from the positions memory: the port reads the position two
    ahead of the one sent, which waits in a register.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.

    Members
    -------
    start : In(1)
        A group begins.
    done : Out(1)
        The group's preamble is out.
    value, salient, mask, slot : In(1), In(1), In(D), In(range(slots))
        The group.
    stp : In(1)
        Run-time STP switch (value groups send positions); used only with STP built in.
    emitter_idle, flushing : In(1)
        The previous group's records are out; its trit words are not yet.
    positions : In(ReadPort.Signature(addr_width=index_bits(slots * Tg), shape=position_bits))
        The positions memory's read; only with STP built in.
    o : Out(stream.Signature(beat_layout(config)))
        The beats.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        members = {
            "start": In(1), "done": Out(1),
            "value": In(1), "salient": In(1), "mask": In(config.d), "slot": In(range(config.slots)),
            "stp": In(1), "emitter_idle": In(1), "flushing": In(1),
            "o": Out(stream.Signature(beat_layout(config))),
        }
        if config.stp:
            members["positions"] = In(ReadPort.Signature(addr_width=index_bits(config.slots * config.group_tokens),
                                                         shape=config.position_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        tg, slot, value = config.group_tokens, self.slot, self.value
        direct, direct_valid, out_ready = self.o.payload, self.o.valid, self.o.ready
        index = Signal(range(max(tg, config.mask_words) + 1))
        if config.stp:
            pos_r = self.positions
            m.d.comb += pos_r.en.eq(0)                      # read only by the Pos states
        with m.FSM(name="preamble"):
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += self.done.eq(0)
                    m.next = "Header"
            with m.State("Header"):
                ready_for_group = self.emitter_idle & ~self.flushing
                m.d.comb += [direct_valid.eq(ready_for_group), direct.tag.eq(HEADER),
                             direct.data.eq(Cat(self.salient, value))]
                with m.If(ready_for_group & out_ready):
                    m.d.sync += index.eq(0)
                    m.next = "Mask"
                    with m.If(value):
                        m.d.sync += self.done.eq(1)
                        m.next = "Idle"
                    if config.stp:
                        with m.If(value & self.stp):
                            m.d.sync += self.done.eq(0)
                            m.next = "PosRead"
            if config.stp:
                # The positions leave through a register: the port reads a position two ahead of the one sent.
                pos_word = Signal(config.position_bits)
                with m.State("PosRead"):
                    m.d.comb += [pos_r.addr.eq(Cat(Const(0, index_bits(tg)), slot)), pos_r.en.eq(1)]
                    m.next = "PosLoad"
                with m.State("PosLoad"):
                    m.d.sync += pos_word.eq(pos_r.data)
                    m.d.comb += [pos_r.addr.eq(Cat(Const(1, index_bits(tg)), slot)), pos_r.en.eq(1)]
                    m.next = "PosSend"
                with m.State("PosSend"):
                    m.d.comb += [direct_valid.eq(1), direct.tag.eq(POSITION), direct.data.eq(pos_word)]
                    with m.If(out_ready):
                        m.d.sync += [index.eq(index + 1), pos_word.eq(pos_r.data)]
                        m.d.comb += [pos_r.addr.eq(Cat((index + 2)[:index_bits(tg)], slot)), pos_r.en.eq(1)]
                        with m.If(index == tg - 1):
                            m.d.sync += self.done.eq(1)
                            m.next = "Idle"
            with m.State("Mask"):
                m.d.comb += [direct_valid.eq(1), direct.tag.eq(MASK),
                             direct.data.eq(self.mask.word_select(index[:index_bits(config.mask_words)], 32))]
                with m.If(out_ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == config.mask_words - 1):
                        m.d.sync += self.done.eq(1)
                        m.next = "Idle"
        return m


class OutputStage(wiring.Component):
    """The record emitter, the ``b3`` trit packer and the output arbiter.

    ``load`` (one cycle, while ``idle``) hands the emitter a block of ``lanes`` channels,
    whose records it then sends one beat per cycle (a ``b3`` channel's digits go to the
    packer through a register slice). With ``load`` and ``final`` (the group's last
    block) and ``ternary`` in a ``b3`` build, ``flushing`` rises the next cycle: once the
    emitter has pushed every digit the packer sends its last, padded word, and
    ``flushing`` falls when the packer is empty.

    Output: ``direct`` beats first, else the packer's trit words, else the emitter's
    beats; a stalled source keeps the grant until its beat is taken. Every beat goes
    through a register slice: latency 1 cycle, one beat per cycle. ``direct.ready`` is
    the slice's ready (``~o.valid | o.ready``): ``direct`` must only be offered while
    the emitter is idle and the packer empty (the preamble waits for that), so that no
    other source holds the grant.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.

    Members
    -------
    load, final, ternary : In(1)
        Take ``lanes`` now; it is the group's last block; the group's normal value
        channels are ternary.
    lanes : In(ArrayLayout(lane_layout(config), lanes))
        The block's channels.
    idle : Out(1)
        The emitter has sent every record.
    flushing : Out(1)
        The packer still sends the last group's trit words.
    direct : In(stream.Signature(beat_layout(config)))
        The preamble's beats.
    o : Out(stream.Signature(beat_layout(config)))
        The engine's output beats.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "load": In(1), "final": In(1), "ternary": In(1),
            "lanes": In(data.ArrayLayout(lane_layout(config), config.lanes)),
            "idle": Out(1), "flushing": Out(1),
            "direct": In(stream.Signature(beat_layout(config))),
            "o": Out(stream.Signature(beat_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.emitter = emitter = Emitter(config)
        m.d.comb += [emitter.load.eq(self.load), emitter.lanes.eq(self.lanes), self.idle.eq(emitter.idle)]
        b3 = config.ternary_layout == "b3"
        if b3:
            m.submodules.packer = packer = TritPacker(config.group_tokens)
            # A register slice between them: the packer's queue sees only flip-flops.
            m.d.comb += emitter.trits.ready.eq(register_stream(m, packer.push, emitter.trits.valid,
                                                               emitter.trits.payload))
        # A b3 group's last digits leave the packer once the emitter has pushed them all;
        # the next group's header waits for that.
        flush_pending = self.flushing
        if b3:
            pushed_all = emitter.idle & ~packer.push.valid      # nothing left in the slice either
            m.d.comb += packer.flush.eq(flush_pending & pushed_all)
            with m.If(flush_pending & pushed_all & packer.empty):
                m.d.sync += flush_pending.eq(0)
        with m.If(self.load):
            with m.If(self.final):
                m.d.sync += flush_pending.eq(self.ternary & b3)

        # The direct beats, else the packer's and the emitter's, a held grant each.
        direct_valid, direct = self.direct.valid, self.direct.payload
        out_valid, out_ready = Signal(), Signal()
        sources = [(direct_valid, direct)]
        if b3:
            trit_beat = Signal(beat_layout(config))
            m.d.comb += [trit_beat.data.eq(packer.o.payload), trit_beat.tag.eq(TRITS)]
            sources.append((packer.o.valid, trit_beat))
        grant = Signal(len(sources) + 1)             # one-hot; the last bit is the emitter
        held_grant = Signal.like(grant)
        stalled = Signal()
        m.d.sync += [stalled.eq(out_valid & ~out_ready), held_grant.eq(grant)]
        fresh = Signal.like(grant)
        with m.If(direct_valid):
            m.d.comb += fresh.eq(1)
        if b3:
            with m.Elif(packer.o.valid):
                m.d.comb += fresh.eq(2)
        with m.Else():
            m.d.comb += fresh.eq(1 << len(sources))
        m.d.comb += grant.eq(Mux(stalled, held_grant, fresh))
        payload, valid = emitter.o.payload, emitter.o.valid
        for bit, (source_valid, source_payload) in reversed(list(enumerate(sources))):
            payload = Mux(grant[bit], source_payload, payload)
            valid = Mux(grant[bit], source_valid, valid)
        m.d.comb += [out_valid.eq(valid), out_ready.eq(register_stream(m, self.o, valid, payload)),
                     self.direct.ready.eq(out_ready), emitter.o.ready.eq(out_ready & grant[-1])]
        if b3:
            m.d.comb += packer.o.ready.eq(out_ready & grant[1])
        return m
