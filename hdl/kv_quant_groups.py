"""The KV quantize engine's group hand-off: completed slots -> ranked groups -> (FFT) -> the encoder.

A completed slot becomes a group ``{slot, value, mask}``: :class:`GroupStage` ranks a
key group's channels (``mask``: its ``n_hi`` widest channels, which keep 2 bits), and
with the FFT built in has the group's lane records made before the encoder takes it
(``bank``: where they are).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_quant_fill import stats_layout
from .kv_units import ChannelRanker, index_bits

__all__ = ["group_layout", "GroupStage"]


def group_layout(config: KvConfig, bank: bool = False) -> data.StructLayout:
    """A group: its buffer ``slot``, ``value`` (0 keys, 1 values), ``mask`` (bit c: channel c keeps
    2 bits; all set for values) and, with ``bank``, the bank of its FFT lane records."""
    fields = {"slot": range(config.slots), "value": 1, "mask": config.d}
    return data.StructLayout({**fields, "bank": 1} if bank else fields)


class GroupStage(wiring.Component):
    """Takes the completed slots in order, ranks the channels of key groups and (FFT) has their
    lane records made, then offers the groups to the encoder.

    A slot is taken from ``done`` (``done.ready`` is high for one cycle, with
    ``done.valid``) while the ranked group's register is empty and the ranker idle;
    ``kind`` is sampled then. A value group, or any group without a ranking (``n_hi`` 0
    or ``D``), is ranked the next cycle. For a key group with a ranking the stage reads
    the slot's statistics (``D / lanes`` reads, one a cycle), loads the channels' ranges
    into the :class:`~hdl.kv_units.ChannelRanker`, starts it and holds the group ranked
    when it is done; ``mask`` is a constant without a ranking.

    Without the FFT a ranked group is offered on ``o`` at once. With the FFT the
    hand-off takes it while ``o`` is empty: a value group is offered two cycles later;
    a key group starts the :class:`~hdl.kv_spectral.SpectralStage` (``start`` for one
    cycle, with ``slot`` and ``mask``; both 0 otherwise) and is offered once ``busy`` has
    fallen and ``o`` is empty, with ``bank`` the stage's ``parity`` then (the bank of its
    records until the next start). A new group's records go to the bank of the group
    before the last one offered, so that one must be done: the last one taken by the
    encoder. ``o`` holds one group: ``o.valid`` stays high, with the payload, until
    ``o.ready``.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.
    stats_addr_bits : int
        Address width of the statistics memory.

    Members
    -------
    kind : In(1)
        0 keys, 1 values.
    done : In(stream.Signature(range(slots)))
        The completed slots.
    stats : In(ReadPort.Signature(addr_width=stats_addr_bits, shape=stats_layout(config)))
        The ranker's statistics read (``en`` not driven); only with a ranking.
    o : Out(stream.Signature(group_layout(config, bank=fft)))
        The groups for the encoder.
    start, slot, mask : Out(1), Out(range(slots)), Out(D)
        The FFT stage's start, the group's slot and mask; only with the FFT built in.
    busy, parity : In(1)
        The FFT stage's state and the bank of its last records; only with the FFT built in.
    """

    def __init__(self, config: KvConfig, stats_addr_bits: int):
        self.config = config
        self.ranking = 0 < config.n_hi < config.d
        fft = bool(config.fft_points)
        members = {
            "kind": In(1),
            "done": In(stream.Signature(range(config.slots))),
            "o": Out(stream.Signature(group_layout(config, bank=fft))),
        }
        if self.ranking:
            members["stats"] = In(ReadPort.Signature(addr_width=stats_addr_bits, shape=stats_layout(config)))
        if fft:
            members.update({"start": Out(1), "slot": Out(range(config.slots)), "mask": Out(config.d),
                            "busy": In(1), "parity": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, blocks, n_hi = config.lanes, config.blocks, config.n_hi
        ranked_valid = Signal()                             # a group waits for the encoder (or the hand-off)
        ranked_slot = Signal(range(config.slots))
        ranked_value = Signal()
        if self.ranking:
            m.submodules.ranker = ranker = ChannelRanker(config.d, lanes, config.r_bits, n_hi)
            rank_block = Signal(range(blocks + 1))
            rank_read, rank_raw_valid = Signal(), Signal()
            raw_rank = Signal(stats_layout(config), reset_less=True)   # the memory's output, registered
            m.d.sync += [rank_read.eq(0), rank_raw_valid.eq(rank_read), raw_rank.eq(self.stats.data)]
            for lane in range(lanes):
                got = raw_rank[lane]
                m.d.comb += ranker.ranges[lane].eq(got.mx - got.mn)
            m.d.comb += [ranker.load.eq(rank_raw_valid),
                         self.stats.addr.eq(Cat(rank_block[:index_bits(blocks)], ranked_slot))]
            new_mask = ranker.mask
        else:
            new_mask = Const(-1 if n_hi else 0, config.d)
        rank_idle = Signal() if self.ranking else Const(1)  # the ranker takes one group at a time
        take_group = self.done.valid & ~ranked_valid & rank_idle
        with m.If(take_group):
            m.d.comb += self.done.ready.eq(1)
            m.d.sync += [ranked_slot.eq(self.done.payload), ranked_value.eq(self.kind)]
        if not self.ranking:
            with m.If(take_group):
                m.d.sync += ranked_valid.eq(1)
        else:
            with m.FSM(name="rank"):
                with m.State("Idle"):
                    m.d.comb += rank_idle.eq(1)
                    with m.If(take_group):
                        m.d.sync += rank_block.eq(0)
                        with m.If(self.kind):
                            m.d.sync += ranked_valid.eq(1)
                        with m.Else():
                            m.next = "Load"
                with m.State("Load"):                       # D / lanes reads, each loaded a cycle later
                    m.d.sync += [rank_read.eq(1), rank_block.eq(rank_block + 1)]
                    with m.If(rank_block == blocks - 1):
                        m.next = "Last"
                with m.State("Last"):                       # the last block's read lands
                    m.next = "Loaded"
                with m.State("Loaded"):                     # ... and loads into the ranker
                    m.next = "Start"
                with m.State("Start"):
                    m.d.comb += ranker.start.eq(1)
                    m.next = "Wait"
                with m.State("Wait"):
                    with m.If(~ranker.busy):
                        m.d.sync += ranked_valid.eq(1)
                        m.next = "Idle"
        if config.fft_points:
            group_valid = self._spectral_handoff(m, ranked_valid, ranked_slot, ranked_value, new_mask)
        else:
            group_valid = ranked_valid
            m.d.comb += [self.o.payload.slot.eq(ranked_slot), self.o.payload.value.eq(ranked_value),
                         self.o.payload.mask.eq(new_mask)]
        m.d.comb += self.o.valid.eq(group_valid)
        with m.If(self.o.ready):
            with m.If(self.o.valid):
                m.d.sync += group_valid.eq(0)
        return m

    def _spectral_handoff(self, m: Module, ranked_valid: Signal, ranked_slot: Signal, ranked_value: Signal,
                          new_mask) -> Signal:
        """Takes ranked groups, has the FFT stage make a key group's lane records; returns ``o``'s valid."""
        config = self.config
        group_valid = Signal()
        group_slot, group_value, group_mask = Signal(range(config.slots)), Signal(), Signal(config.d)
        group_bank = Signal()                               # the bank of the group's lane records
        held_slot, held_value, held_mask = Signal(range(config.slots)), Signal(), Signal(config.d)
        m.d.comb += [self.o.payload.slot.eq(group_slot), self.o.payload.value.eq(group_value),
                     self.o.payload.mask.eq(group_mask), self.o.payload.bank.eq(group_bank)]
        with m.FSM(name="spectral_handoff"):
            with m.State("Idle"):
                with m.If(ranked_valid & ~group_valid):
                    m.d.sync += [ranked_valid.eq(0), held_slot.eq(ranked_slot), held_value.eq(ranked_value),
                                 held_mask.eq(new_mask)]
                    with m.If(ranked_value):
                        m.next = "Handoff"
                    with m.Else():
                        m.d.comb += [self.start.eq(1), self.slot.eq(ranked_slot), self.mask.eq(new_mask)]
                        m.next = "Run"
            with m.State("Run"):
                with m.If(~self.busy):
                    m.next = "Handoff"
            with m.State("Handoff"):
                with m.If(~group_valid):
                    # The stage is idle: its parity is this group's bank until the next start.
                    m.d.sync += [group_valid.eq(1), group_slot.eq(held_slot), group_value.eq(held_value),
                                 group_mask.eq(held_mask), group_bank.eq(self.parity)]
                    m.next = "Idle"
        return group_valid
