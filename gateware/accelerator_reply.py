"""The accelerator's reply sources (tables, result memory, KV buffers -> Narrow -> bytes) and its counters."""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.accelerator_config import AcceleratorConfig
from arch.link import COUNTER_FIELDS, INFO_FIELDS, Status
from hdl.frames import Narrow

__all__ = ["Source", "Table", "reply_sources", "table_index_shape", "counter_layout", "ReplySource", "Counters"]


class Source:
    """Where a reply's words come from."""

    TABLE, RESULTS, KVQ, KVD = range(4)


class Table:
    """The u32 tables a TABLE reply reads: INFO's fields, the counters, or RUN's cycle count."""

    INFO, COUNTERS, RUN_CYCLES = range(3)


def reply_sources(config: AcceleratorConfig) -> list[int]:
    """The :class:`Source` codes that ``config`` builds."""
    return [Source.TABLE] + [Source.RESULTS] * config.has_pe + [Source.KVQ, Source.KVD] * config.has_kv


def table_index_shape() -> range:
    """The shape of the index of a TABLE reply's next word."""
    return range(max(len(INFO_FIELDS), len(COUNTER_FIELDS)) + 1)


def counter_layout() -> data.StructLayout:
    """The performance counters (``arch.link.COUNTER_FIELDS``), u32 each."""
    return data.StructLayout({name: 32 for name in COUNTER_FIELDS})


class ReplySource(wiring.Component):
    """A reply's words from the source the decoder picked, turned into bytes for the sender.

    A :class:`hdl.frames.Narrow` a source turns each word into ``word_bytes(bits)`` bytes,
    and ``o`` carries the bytes of the selected source's Narrow (``o.ready`` is passed to
    it). Words are fed while ``fed < reply_words``: TABLE words combinationally from the
    INFO constants, the counters or RUN's cycle count, by ``table_index``; RESULTS from the
    result memory through a read-ahead register (one cycle from ``result_next`` to a
    valid word; it moves on when empty or taken, ``result_advance``); KVQ / KVD straight
    from their output buffers. A Narrow takes a word when it has sent the last one's
    bytes, so a reply moves at one byte per cycle at most, as fast as ``o.ready`` allows.

    Members
    -------
    source, table_select, reply_words : In(2), In(2), In(16)
        The current reply (:class:`Source`, :class:`Table`, words); stable during it.
    fed, table_index, result_next : In(16), In(range), In(16)
        The decoder's counts of words fed, the table word next and the result beat next.
    took : Out(4)
        Bit ``k``: source ``k``'s Narrow takes a word this cycle.
    result_advance : Out(1)
        The result read-ahead register loads this cycle.
    counters : In(counter_layout())
        The counters' values for the COUNTERS table.
    result_addr, result_en, result_data : Out(16), Out(1), In(result_bits)
        The result memory's read port (data one cycle after ``result_en``).
    kv_quant, kv_dequant : In(stream.Signature(...))
        The KV output buffers' heads: ``ready`` is high (combinationally) while this
        source is selected, words are wanted and its Narrow is empty; a word is taken
        when ``ready`` and ``valid``.
    o : Out(stream.Signature(8))
        The reply's payload bytes, to the sender: those of the selected source's Narrow,
        ``o.ready`` passed straight to it (no register on the way; a Narrow holds a
        word and sends its bytes in the following cycles, one per cycle ``o.ready`` is high).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "source": In(2), "table_select": In(2), "reply_words": In(16),
            "fed": In(16), "table_index": In(table_index_shape()), "result_next": In(16),
            "took": Out(4), "result_advance": Out(1),
            "counters": In(counter_layout()),
            "result_addr": Out(16), "result_en": Out(1), "result_data": In(config.result_bits),
            "kv_quant": In(stream.Signature(config.kv_beat_bits)),
            "kv_dequant": In(stream.Signature(config.kv_out_bits)),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        config, source = self.config, self.source
        widths = {Source.TABLE: 32, Source.RESULTS: config.result_bits, Source.KVQ: config.kv_beat_bits,
                  Source.KVD: config.kv_out_bits}
        narrow = {k: Narrow(widths[k]) for k in reply_sources(config)}
        for k, unit in narrow.items():
            m.submodules[f"narrow{k}"] = unit
        want_more = self.fed < self.reply_words
        info = config.info()
        info_words = Array([Const(info[name], 32) for name in INFO_FIELDS])
        counter_words = Array([self.counters[name] for name in COUNTER_FIELDS])
        m.d.comb += [
            narrow[Source.TABLE].i.payload.eq(Mux(self.table_select == Table.INFO, info_words[self.table_index],
                                                  Mux(self.table_select == Table.COUNTERS,
                                                      counter_words[self.table_index],
                                                      self.counters.run_cycles))),
            narrow[Source.TABLE].i.valid.eq((source == Source.TABLE) & want_more),
        ]
        if config.has_pe:                            # the result memory, read ahead of its Narrow
            result_valid = Signal()
            results = narrow[Source.RESULTS].i
            m.d.comb += [self.result_advance.eq(~result_valid | results.ready),
                         self.result_addr.eq(self.result_next), self.result_en.eq(self.result_advance),
                         results.payload.eq(self.result_data), results.valid.eq(result_valid)]
            with m.If(self.result_advance):
                m.d.sync += result_valid.eq((source == Source.RESULTS) & (self.result_next < self.reply_words))
        if config.has_kv:
            for k, fifo in ((Source.KVQ, self.kv_quant), (Source.KVD, self.kv_dequant)):
                m.d.comb += [narrow[k].i.payload.eq(fifo.payload),
                             narrow[k].i.valid.eq((source == k) & want_more & fifo.valid),
                             fifo.ready.eq((source == k) & want_more & narrow[k].i.ready)]
        for k, unit in narrow.items():
            m.d.comb += self.took[k].eq(unit.i.valid & unit.i.ready)
            with m.If(source == k):
                m.d.comb += [self.o.valid.eq(unit.o.valid), self.o.payload.eq(unit.o.payload),
                             unit.o.ready.eq(self.o.ready)]
        return m


class Counters(wiring.Component):
    """The performance counters that COUNTERS returns (``arch.link.COUNTER_FIELDS``).

    Each counter is a register that counts its event in the cycle the event is high
    (value one cycle later): ``cycles`` every cycle; ``frames_ok`` / ``frames_rejected``
    each ``frame_done`` whose ``reply_status`` is OK / not OK; the four ``kv_*_beats_*``
    each beat that enters or leaves a KV engine (``kv_beats``), cleared by ``kv_reset``;
    these stay zero without ``kv`` (the KV engines are not built). ``run_cycles`` is the
    decoder's register, passed through.

    Members
    -------
    frame_done : In(1)
        A request is done and its reply sent.
    reply_status : In(8)
        That request's reply status.
    run_cycles : In(32)
        The decoder's count of the last RUN's cycles, passed on as that counter.
    kv_reset : In(1)
        KV_MODE resets the KV engines.
    kv_beats : In(StructLayout)
        One bit a KV counter: a beat moved this cycle.
    counts : Out(counter_layout())
        The counters' values.
    """

    def __init__(self, kv: bool):
        self.kv = kv
        super().__init__({
            "frame_done": In(1), "reply_status": In(8), "run_cycles": In(32), "kv_reset": In(1),
            "kv_beats": In(data.StructLayout({name: 1 for name in COUNTER_FIELDS if name.startswith("kv_")})),
            "counts": Out(counter_layout()),
        })

    def elaborate(self, platform):
        m = Module()
        counters = {name: Signal(32, name=f"count_{name}") for name in COUNTER_FIELDS if name != "run_cycles"}
        counters["run_cycles"] = self.run_cycles
        m.d.comb += [self.counts[name].eq(counter) for name, counter in counters.items()]

        def count(name):
            m.d.sync += counters[name].eq(counters[name] + 1)

        count("cycles")
        for name in self.kv_beats.shape().members if self.kv else ():
            with m.If(self.kv_reset):
                m.d.sync += counters[name].eq(0)
            with m.Elif(self.kv_beats[name]):
                count(name)
        with m.If(self.frame_done):
            with m.If(self.reply_status == Status.OK):
                count("frames_ok")
            with m.Else():
                count("frames_rejected")
        return m
