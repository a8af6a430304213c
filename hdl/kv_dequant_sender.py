"""The KV dequantize engine's sender: a full slot of the lane banks -> decoded tokens with positions."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_dequant_parser import slot_signature
from .kv_dequant_table import table_layout
from .kv_units import index_bits

__all__ = ["output_layout", "sent_layout", "TokenSender"]


def output_layout(config: KvConfig) -> data.StructLayout:
    """An output beat: ``lanes`` fixed-point channels of one token and the token's position."""
    return data.StructLayout({"data": data.ArrayLayout(signed(config.out_bits), config.lanes),
                              "position": config.position_bits})


def sent_layout(config: KvConfig) -> data.StructLayout:
    """A decoded beat as :class:`~hdl.kv_spectral.InverseStage` takes it: the ``beat``, its
    ``normal`` channels, ``fft`` (an FFT key group) and ``last`` (the token's last beat)."""
    return data.StructLayout({"beat": output_layout(config), "normal": config.lanes, "fft": 1, "last": 1})


class TokenSender(wiring.Component):
    """Sends the group of a full slot: token by token, ``lanes`` channels (one block) per beat.

    Token ``t``, block ``b`` reads bank row ``b`` of every lane bank (its codes and table)
    and the slot's position ``t``, then selects token ``t``'s code in each lane and looks
    it up in the lane's table. The slots are sent alternately, from slot 0, each once
    ``full`` has its bit; ``release`` marks it (one cycle) as its last beat is read.

    The block is a two-stage pipeline (bank read, code select; the table lookup follows
    the second register): a beat is on ``o`` 2 cycles after its read, one beat per
    cycle, and the pipeline (reads included) advances whenever ``~o.valid | o.ready``.
    The position is the one the slot's STP group recorded, else the slot's ``base``
    plus ``t``. The ``normal``, ``fft`` and ``last`` fields are set on FFT builds only.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.

    Members
    -------
    full : In(2)
        Bit per slot: the slot holds a group not yet sent.
    release : Out(2)
        Bit per slot: the slot's last beat is read (one cycle).
    slots : In(slot_signature(config))
        The two slots' group facts (:func:`~hdl.kv_dequant_parser.slot_signature`).
    code_read, table_read : In(ReadPort.Signature(addr_width=index_bits(2 * blocks), shape=...)).array(lanes)
        The lane banks' reads (codes ``2 * Tg`` bits, tables ``table_layout(config)``). (``In``
        of a memory port's signature: the sender drives ``addr`` and ``en``, ``data`` comes back.)
    position_read : In(ReadPort.Signature(addr_width=index_bits(2 * Tg), shape=position_bits))
        The position bank's read.
    o : Out(stream.Signature(sent_layout(config)))
        The decoded beats.
    """

    def __init__(self, config: KvConfig):
        self.config = config
        bank_addr = index_bits(2 * config.blocks)
        super().__init__({
            "full": In(2),
            "release": Out(2),
            "slots": In(slot_signature(config)),
            "code_read": In(ReadPort.Signature(addr_width=bank_addr, shape=2 * config.group_tokens))
            .array(config.lanes),
            "table_read": In(ReadPort.Signature(addr_width=bank_addr, shape=table_layout(config)))
            .array(config.lanes),
            "position_read": In(ReadPort.Signature(addr_width=index_bits(2 * config.group_tokens),
                                                    shape=config.position_bits)),
            "o": Out(stream.Signature(sent_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, tg, blocks = config.lanes, config.group_tokens, config.blocks
        spectral = config.fft_points > 0
        slot_stp, slot_key = self.slots.stp, self.slots.key
        slot_mask, slot_base = Array(self.slots.mask), Array(self.slots.base)

        # Token t, block b of the full slot; reads run ahead into the output.
        out_slot = Signal()
        out_token = Signal(range(tg))
        out_block = Signal(range(blocks)) if blocks > 1 else Const(0, 0)
        sending = self.full.bit_select(out_slot, 1)
        pending, selected = Signal(), Signal()              # read data here, selected codes here
        advance = ~selected | self.o.ready
        last = (out_token == tg - 1) & (out_block == blocks - 1)
        for code_read, table_read in zip(self.code_read, self.table_read, strict=True):
            m.d.comb += [code_read.addr.eq(Cat(out_block, out_slot)), code_read.en.eq(advance),
                         table_read.addr.eq(Cat(out_block, out_slot)), table_read.en.eq(advance)]
        pos_r = self.position_read
        m.d.comb += [pos_r.addr.eq(Cat(out_token, out_slot)), pos_r.en.eq(advance)]
        read_token, read_slot = Signal.like(out_token), Signal()
        read_normal, read_fft, read_last = Signal(lanes), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [pending.eq(sending), read_token.eq(out_token), read_slot.eq(out_slot)]
            if spectral:
                m.d.sync += [read_normal.eq(~slot_mask[out_slot].word_select(out_block, lanes)),
                             read_fft.eq(slot_key.bit_select(out_slot, 1)), read_last.eq(out_block == blocks - 1)]
            with m.If(sending):
                if blocks > 1:
                    m.d.sync += out_block.eq(Mux(out_block == blocks - 1, 0, out_block + 1))
                with m.If(out_block == blocks - 1):
                    m.d.sync += out_token.eq(Mux(out_token == tg - 1, 0, out_token + 1))
                with m.If(last):
                    m.d.comb += self.release.eq(1 << out_slot)
                    m.d.sync += out_slot.eq(~out_slot)
        # A register between the token's code select and the table select.
        codes_now = [Signal(2, name=f"code_now{lane}", reset_less=True) for lane in range(lanes)]
        tables_now = [Signal(table_layout(config), name=f"table_now{lane}", reset_less=True)
                      for lane in range(lanes)]
        position_now = Signal(config.position_bits, reset_less=True)
        normal_now, fft_now, last_now = Signal(lanes), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [selected.eq(pending), normal_now.eq(read_normal), fft_now.eq(read_fft),
                         last_now.eq(read_last)]
            m.d.sync += [position_now.eq(Mux(slot_stp.bit_select(read_slot, 1), pos_r.data,
                                             slot_base[read_slot] + read_token))]
            for lane in range(lanes):
                m.d.sync += [codes_now[lane].eq(self.code_read[lane].data.word_select(read_token, 2)),
                             tables_now[lane].eq(self.table_read[lane].data)]
        decoded = Signal(output_layout(config))
        for lane in range(lanes):
            m.d.comb += decoded.data[lane].eq(tables_now[lane][codes_now[lane]])
        m.d.comb += [decoded.position.eq(position_now),
                     self.o.valid.eq(selected), self.o.payload.beat.eq(decoded),
                     self.o.payload.normal.eq(normal_now), self.o.payload.fft.eq(fft_now),
                     self.o.payload.last.eq(last_now)]
        return m
