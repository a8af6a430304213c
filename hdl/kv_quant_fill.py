"""The KV quantize engine's fill stage: input tokens -> group buffer slots and channel statistics.

A beat (``lanes`` channels of one token) goes to the group buffer slot its path
(key / value / salient value) fills; the statistics of its channels (min, max and the
sum of magnitudes, per channel) are updated in place; a slot whose last beat is in is
marked full and reported on :attr:`FillStage.done`, until the encoder clears it.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_units import index_bits, magnitude

__all__ = ["input_layout", "stats_layout", "FillStage"]


def input_layout(config: KvConfig) -> data.StructLayout:
    """An input beat: ``lanes`` channels of one token and the token's salient flag."""
    return data.StructLayout({"data": data.ArrayLayout(signed(config.in_bits), config.lanes), "salient": 1})


def stats_layout(config: KvConfig) -> data.ArrayLayout:
    """A word of the statistics memory: ``mn``, ``mx`` and ``s`` (sum of ``|x|``) of ``lanes`` channels."""
    lane = data.StructLayout({"mn": signed(config.mn_bits), "mx": signed(config.mn_bits),
                              "s": unsigned(config.s_bits)})
    return data.ArrayLayout(lane, config.lanes)


class FillStage(wiring.Component):
    """Writes input beats into their path's buffer slot and keeps the slot's channel statistics.

    Paths: keys, or values (``kind``); with STP built in and ``stp`` high, a value token
    whose ``salient`` flag is set (read on its first beat) goes to the salient path.
    Each path fills its ``slots_per_path`` slots in turn, ``Tg`` tokens of ``D / lanes``
    beats each. The beat ``b`` of a slot's token ``t`` goes to buffer word ``(slot, t,
    b)``; with STP, the token's position (a count of all tokens) to ``(slot, t)`` of the
    positions memory.

    The input stream takes one beat per cycle. ``i.ready`` is high when the beat's slot
    is not full: on a token's first beat the path's fill slot (both paths' fill slots while
    STP is on), on the others the token's slot. The buffer and
    position writes leave from registers a cycle after the beat is taken.

    The statistics are a read-modify-write pipeline of a beat per cycle: the beat
    registered and its read asked for (``s0``), the memory's answer (``s1``), min / max /
    sum into a register (``s2``), the write (``s3``, four cycles after the beat was
    taken); the read misses the writes of the three beats before it, which are
    forwarded when a token has at most three beats. With ``s3`` of a slot's last beat the
    slot is marked full and its number enters ``done``, a FIFO of ``slots`` entries
    (which never fills: a slot is reported once until it is cleared).

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.
    buffer_addr_bits, stats_addr_bits : int
        Address widths of the group buffer and the statistics memory.

    Members
    -------
    kind : In(1)
        0 keys, 1 values; must not change while a group is incomplete.
    stp : In(1)
        Run-time STP switch (values); used only with STP built in.
    i : In(stream.Signature(input_layout(config)))
        The tokens, ``D / lanes`` beats each, channel order.
    buffer : In(WritePort.Signature(addr_width=buffer_addr_bits, shape=buffer_bits))
        The group buffer's write (registered).
    positions : In(WritePort.Signature(addr_width=index_bits(slots * Tg), shape=position_bits))
        The positions memory's write (registered); only with STP built in.
    stats_write : In(WritePort.Signature(addr_width=stats_addr_bits, shape=stats_layout(config)))
        The statistics' write (registered).
    stats_read : In(ReadPort.Signature(addr_width=stats_addr_bits, shape=stats_layout(config)))
        The statistics' read-modify-write read (not transparent).
    done : Out(stream.Signature(range(slots)))
        The completed slots, in completion order.
    clear_full : In(slots)
        Bit per slot: the encoder is done with the slot (sampled every cycle).
    """

    def __init__(self, config: KvConfig, buffer_addr_bits: int, stats_addr_bits: int):
        self.config = config
        members = {
            "kind": In(1),
            "stp": In(1),
            "i": In(stream.Signature(input_layout(config))),
            "buffer": In(WritePort.Signature(addr_width=buffer_addr_bits, shape=config.buffer_bits)),
            "stats_write": In(WritePort.Signature(addr_width=stats_addr_bits, shape=stats_layout(config))),
            "stats_read": In(ReadPort.Signature(addr_width=stats_addr_bits, shape=stats_layout(config))),
            "done": Out(stream.Signature(range(config.slots))),
            "clear_full": In(config.slots),
        }
        if config.stp:
            addr_bits = index_bits(config.slots * config.group_tokens)
            members["positions"] = In(WritePort.Signature(addr_width=addr_bits, shape=config.position_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, blocks, slots = config.lanes, config.group_tokens, config.blocks, config.slots
        paths = 2 if config.stp else 1
        stp_on = self.stp & self.kind if config.stp else Const(0)
        layout = stats_layout(config)
        buf_w, stats_w, stats_rmw = self.buffer, self.stats_write, self.stats_read
        done = m.submodules.done = SyncFIFO(width=index_bits(slots) or 1, depth=slots)
        m.d.comb += [self.done.valid.eq(done.r_rdy), self.done.payload.eq(done.r_data),
                     done.r_en.eq(self.done.ready)]
        full = Signal(slots)
        set_full = Signal(slots)
        m.d.sync += full.eq((full | set_full) & ~self.clear_full)

        # A counter of one value would be a zero-width signal, which Verilog cannot declare.
        block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        token = [Signal(range(tg), name=f"token{p}") for p in range(paths)]
        per_path = config.slots_per_path
        which = [Signal(range(per_path), name=f"which{p}") for p in range(paths)]    # the path's fill slot
        path = Signal(range(paths)) if paths > 1 else Const(0, 1)
        cur_path = Signal.like(path, name="cur_path") if paths > 1 else Const(0, 1)
        position = Signal(config.position_bits)
        slot_of = [which[p] + p * per_path for p in range(paths)]

        if paths > 1:
            m.d.comb += path.eq(Mux(block == 0, stp_on & self.i.payload.salient, cur_path))
            fill_slot = Mux(path, slot_of[1], slot_of[0])
            fill_token = Mux(path, token[1], token[0])
            first_free = ~full.bit_select(slot_of[0], 1) & (~stp_on | ~full.bit_select(slot_of[1], 1))
        else:
            fill_slot, fill_token = slot_of[0], token[0]
            first_free = ~full.bit_select(slot_of[0], 1)
        m.d.comb += self.i.ready.eq(Mux(block == 0, first_free, ~full.bit_select(fill_slot, 1)))
        accept = self.i.valid & self.i.ready
        last_beat = (block == blocks - 1) & (fill_token == tg - 1)
        # Every memory access of a beat leaves from registers (s0, the registered writes).
        m.d.sync += [
            buf_w.addr.eq(Cat(block, fill_token, fill_slot)),
            buf_w.data.eq(self.i.payload.data),
            buf_w.en.eq(accept),
        ]
        if config.stp:
            pos_w = self.positions
            m.d.sync += [pos_w.addr.eq(Cat(fill_token, fill_slot)), pos_w.data.eq(position),
                         pos_w.en.eq(accept & (block == 0))]
        with m.If(accept):
            if blocks > 1:
                m.d.sync += block.eq(Mux(block == blocks - 1, 0, block + 1))
            with m.If(block == 0):
                m.d.sync += position.eq(position + 1)
                if paths > 1:
                    m.d.sync += cur_path.eq(path)
            for p in range(paths):
                with m.If((block == blocks - 1) & (path == p)):
                    m.d.sync += token[p].eq(Mux(token[p] == tg - 1, 0, token[p] + 1))
                    with m.If(token[p] == tg - 1):
                        m.d.sync += which[p].eq(Mux(which[p] == per_path - 1, 0, which[p] + 1))

        # The statistics, read-modify-write: s0: the beat registered, its read asked for;
        # s1: the memory's answer; s2: min / max / sum into a register; s3: the write.
        beat_tags = data.StructLayout({"valid": 1, "first": 1, "last": 1, "slot": range(slots),
                                       "addr": len(stats_w.addr), "data": self.i.payload.data.shape()})
        s0, s1, s2, s3 = (Signal(beat_tags, name=n) for n in ("s0", "s1", "s2", "s3"))
        old = Signal(layout)                                 # the statistics before s2's beat
        new = Signal(layout)                                 # ... and after it
        m.d.sync += [s0.valid.eq(accept), s0.first.eq(fill_token == 0), s0.last.eq(last_beat),
                     s0.slot.eq(fill_slot), s0.addr.eq(Cat(block, fill_slot)), s0.data.eq(self.i.payload.data),
                     s1.eq(s0), s2.eq(s1), s3.eq(s2), stats_w.data.eq(new)]
        m.d.comb += stats_rmw.addr.eq(s0.addr)
        answer = Signal(layout, reset_less=True)            # the memory's answer to s2's read
        m.d.sync += answer.eq(stats_rmw.data)
        # The read missed three writes: in the cycle it was asked for, the next, and the one
        # s3 makes now, of the three beats before it. They are other channels' unless a
        # token has at most three beats: then forward them, the latest first.
        if blocks > 3:
            m.d.comb += old.eq(answer)
        else:
            written = [Signal(beat_tags, name=f"written{k}") for k in (1, 2)]
            written_data = [Signal(layout, name=f"written_data{k}") for k in (1, 2)]
            m.d.sync += [written[0].eq(s3), written_data[0].eq(stats_w.data), written[1].eq(written[0]),
                         written_data[1].eq(written_data[0])]
            forwarded = answer
            for tags, value in reversed(list(zip([s3, *written], [stats_w.data, *written_data], strict=True))):
                forwarded = Mux(tags.valid & (tags.addr == s2.addr), value, forwarded)
            m.d.comb += old.eq(forwarded)
        for lane in range(lanes):
            x, before, after = s2.data[lane], old[lane], new[lane]
            m.d.comb += [
                after.mn.eq(Mux(s2.first | (x < before.mn), x, before.mn)),
                after.mx.eq(Mux(s2.first | (x > before.mx), x, before.mx)),
                after.s.eq(Mux(s2.first, 0, before.s) + magnitude(x)),
            ]
        m.d.comb += [stats_w.addr.eq(s3.addr), stats_w.en.eq(s3.valid)]
        with m.If(s3.valid & s3.last):
            m.d.comb += [set_full.eq(1 << s3.slot), done.w_en.eq(1), done.w_data.eq(s3.slot)]
        return m
