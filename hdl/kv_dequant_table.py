"""The KV dequantize engine's value tables: a channel's metadata -> its four decoded values.

A channel's codes index a 4-entry table of fixed-point values (``frac_bits`` fraction
bits), computed once per channel from its metadata word: ``mn + q r / 3`` for 2-bit
codes, ``-S / Tg, 0, +S / Tg`` for ternary codes ``t + 1``, ``-S / Tg, +S / Tg`` for
1-bit codes. The only division, by 3, is :func:`third_scaled`.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from arch.kv_config import KvConfig

from .kv_units import divmod3, index_bits

__all__ = ["third_scaled", "table_layout", "meta_signature", "TableDecoder"]


def third_scaled(m: Module, value, frac: int, name: str):
    """``(value 2**frac + 1) // 3`` (round half up of ``value 2**frac / 3``) for unsigned ``value``.

    ``value = 3 q + rem`` gives ``q 2**frac + (rem 2**frac + 1) // 3``: one division by 3
    of ``value`` itself (:func:`divmod3`) and a three-entry table.
    """
    quotient, rem = divmod3(m, value, name)
    small = Mux(rem == 2, ((2 << frac) + 1) // 3, Mux(rem == 1, ((1 << frac) + 1) // 3, 1 // 3))
    return (quotient << frac) + small


def table_layout(config: KvConfig) -> data.ArrayLayout:
    """A channel's table: the decoded values of codes 0..3."""
    return data.ArrayLayout(signed(config.out_bits), 4)


def meta_signature(config: KvConfig) -> wiring.Signature:
    """A channel's metadata as the parser captures it (members as seen by the parser).

    ``valid`` (one cycle per channel), ``two`` (2-bit codes), ``ternary`` (ternary codes),
    the channel's ``lane`` bank and ``row`` in it, and the metadata word's fields:
    ``mn`` and ``r`` (2-bit), ``s`` (ternary and 1-bit).
    """
    return wiring.Signature({
        "valid": Out(1), "two": Out(1), "ternary": Out(1),
        "lane": Out(range(config.lanes)), "row": Out(index_bits(config.blocks)),
        "mn": Out(signed(16)), "r": Out(16), "s": Out(max(config.s_bits, config.s_fft_bits)),
    })


class TableDecoder(wiring.Component):
    """Decodes a channel's metadata into its 4-entry value table and writes it into its lane bank.

    The block is a one-stage pipeline without back-pressure: a channel's metadata is
    sampled in the cycle ``meta.valid`` is high (one channel per cycle at most), and its
    table is written in the next cycle, at row ``meta.row`` of slot ``slot`` (sampled
    then) in bank ``meta.lane``. ``busy`` is high in that write cycle.

    Parameters
    ----------
    config : KvConfig
        The engine's configuration.

    Members
    -------
    meta : In(meta_signature(config))
        The channel's metadata (:func:`meta_signature`).
    slot : In(1)
        The receiving slot of the bank (the address's top bit).
    busy : Out(1)
        A table is being written (its metadata was valid a cycle ago).
    table_write : In(WritePort.Signature(...)).array(lanes)
        Each lane bank's table write (rows ``2 * blocks``, :func:`table_layout`); a table
        goes to one of them. (``In`` of a memory port's signature: the decoder drives it.)
    """

    def __init__(self, config: KvConfig):
        self.config = config
        super().__init__({
            "meta": In(meta_signature(config)),
            "slot": In(1),
            "busy": Out(1),
            "table_write": In(WritePort.Signature(addr_width=index_bits(2 * config.blocks),
                                                  shape=table_layout(config))).array(config.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        config, meta = self.config, self.meta
        lanes, tg, frac, out_bits = config.lanes, config.group_tokens, config.frac_bits, config.out_bits
        # The metadata -> the table's terms (the multiplication by 1/3), then the table.
        stage_two, stage_ternary = Signal(), Signal()
        stage_lane, stage_row = Signal(range(lanes)), Signal.like(meta.row)
        base, third, two_thirds = (Signal(signed(out_bits), name=n) for n in ("base", "third", "two_thirds"))
        full_range = Signal(out_bits)
        pos_value, neg_value = Signal(signed(out_bits)), Signal(signed(out_bits))
        m.d.sync += self.busy.eq(meta.valid)
        with m.If(meta.valid):
            scaled = meta.r << frac
            m.d.sync += [
                stage_two.eq(meta.two), stage_lane.eq(meta.lane), stage_row.eq(meta.row),
                stage_ternary.eq(meta.ternary),
                base.eq(meta.mn << frac), full_range.eq(scaled),
                third.eq(third_scaled(m, meta.r, frac, "third")),
                two_thirds.eq(third_scaled(m, meta.r << 1, frac, "two_thirds")),
                # round half up of +-S 2**F / Tg (Tg a power of two)
                pos_value.eq(((meta.s << frac) + (tg >> 1)) >> index_bits(tg)),
                neg_value.eq(-(((meta.s << frac) + (tg >> 1) - 1) >> index_bits(tg))),
            ]
        entry = Signal(table_layout(config))
        with m.If(stage_two):
            m.d.comb += [entry[0].eq(base), entry[1].eq(base + third), entry[2].eq(base + two_thirds),
                         entry[3].eq(base + full_range)]
        with m.Elif(stage_ternary):                          # i2 / b3 codes t + 1
            m.d.comb += [entry[0].eq(neg_value), entry[1].eq(0), entry[2].eq(pos_value), entry[3].eq(0)]
        with m.Else():                                       # 1-bit codes b
            m.d.comb += [entry[0].eq(neg_value), entry[1].eq(pos_value), entry[2].eq(0), entry[3].eq(0)]
        for lane, write in enumerate(self.table_write):
            m.d.comb += [write.addr.eq(Cat(stage_row, self.slot)), write.data.eq(entry),
                         write.en.eq(self.busy & (stage_lane == lane))]
        return m
