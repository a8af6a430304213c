"""The accelerator's engines and their glue: payload words into the PE array and the KV engines."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.accelerator_config import AcceleratorConfig
from arch.link import COUNTER_FIELDS, Command
from hdl.frames import Widen
from hdl.kv_dequant import KvDequantizer
from hdl.kv_quant import KvQuantizer
from hdl.pe_array import PeArray

__all__ = ["Engines"]


class Engines(wiring.Component):
    """The PE array with its weight and result memories, the KV engines with their output
    buffers, and the router of payload bytes into them.

    The router drives ``i.ready``: in the ``in_header`` phase it takes every byte (the
    decoder stores them); in the ``in_data`` phase it passes the bytes to the
    :class:`hdl.frames.Widen` of ``command`` (one byte per cycle while the Widen is
    empty), whose words go on to LOAD_WEIGHTS: the weight memory at ``first_beat +
    done_units`` (never stalls); LOAD_ACT: the PE array's activation input; KV_QUANT /
    KV_DEQUANT: that engine's input. ``delivered`` is high the cycle a word enters its
    destination. Outside these phases ``i.ready`` is low.

    While ``running``, the weight memory streams the job's ``weights_needed`` beats into
    the PE array through a read register (one cycle, loaded when empty or taken); the
    array's result beats are written at ``results_in`` the cycle they are valid
    (``result_written``; never stalls). The KV engines' outputs go into two
    ``SyncFIFOBuffered`` buffers; ``kv_reset`` resets both engines and both buffers.

    Members
    -------
    i : In(stream.Signature(8))
        The request's payload bytes; ``ready`` as above (combinational, no register),
        and a byte is taken when ``valid`` and ``ready``.
    in_header, in_data, command, done_units : In(1), In(1), In(8), In(16)
        The decoder's phase, command and words delivered.
    delivered : Out(1)
        A word entered the command's destination this cycle.
    family, fp16, groups, col_tiles : In(3), In(1), In(16), In(16)
        The PE array's job (held stable through a RUN).
    first_beat, weights_needed, running : In(range), In(24), In(1)
        LOAD_WEIGHTS' first beat; the beats a RUN streams; high during RUN.
    results_in : In(16)
        The result memory's write address.
    result_written : Out(1)
        The PE array's result beat is written this cycle.
    result_addr, result_en, result_data : In(16), In(1), Out(result_bits)
        The result memory's read port (data one cycle after ``result_en``).
    kv_reset, kv_kind, kv_value_2bit, kv_stp : In(1)
        The KV mode; ``kv_reset`` is sampled each cycle.
    kv_quant, kv_dequant : Out(stream.Signature(...))
        The KV output buffers' heads (``SyncFIFOBuffered``: a word written is readable
        after its latency; ``valid`` while one waits, and it leaves when ``ready`` and
        ``valid``; the engine stalls while its buffer is full).
    kv_quant_level, kv_dequant_level : Out(range(depth + 1))
        Words in the KV output buffers.
    kv_beats : Out(StructLayout)
        One bit for each ``kv_*_beats_*`` counter: a beat entered or left that engine this cycle.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "i": In(stream.Signature(8)),
            "in_header": In(1), "in_data": In(1), "command": In(8), "done_units": In(16), "delivered": Out(1),
            "family": In(3), "fp16": In(1), "groups": In(16), "col_tiles": In(16),
            "first_beat": In(range(config.weight_beats + 1)), "weights_needed": In(24), "running": In(1),
            "results_in": In(16), "result_written": Out(1),
            "result_addr": In(16), "result_en": In(1), "result_data": Out(config.result_bits),
            "kv_reset": In(1), "kv_kind": In(1), "kv_value_2bit": In(1), "kv_stp": In(1),
            "kv_quant": Out(stream.Signature(config.kv_beat_bits)),
            "kv_dequant": Out(stream.Signature(config.kv_out_bits)),
            "kv_quant_level": Out(range(config.kv_quant_fifo + 1)),
            "kv_dequant_level": Out(range(config.kv_dequant_fifo + 1)),
            "kv_beats": Out(data.StructLayout({name: 1 for name in COUNTER_FIELDS if name.startswith("kv_")})),
        })

    def elaborate(self, platform):
        m = Module()
        config, payload = self.config, self.i
        with m.If(self.in_header):
            m.d.comb += payload.ready.eq(1)
        destination = {}

        def route(code: int, bits: int):
            unit = m.submodules[f"widen_{code:02x}"] = Widen(bits)
            m.d.comb += unit.i.payload.eq(payload.payload)
            with m.If(self.in_data & (self.command == code)):
                m.d.comb += [unit.i.valid.eq(payload.valid), payload.ready.eq(unit.i.ready)]
            return unit.o

        if config.has_pe:
            pe = self._pe_array(m)
            weight_w = self._weights(m, pe)
            result_w, result_r = self._results(m, pe)
            m.d.comb += [result_r.addr.eq(self.result_addr), result_r.en.eq(self.result_en),
                         self.result_data.eq(result_r.data)]
            beats = route(Command.LOAD_WEIGHTS, config.weight_bits)
            m.d.comb += [weight_w.en.eq(beats.valid), beats.ready.eq(1),
                         weight_w.addr.eq(self.first_beat + self.done_units), weight_w.data.eq(beats.payload)]
            destination[Command.LOAD_WEIGHTS] = beats.valid
            act = route(Command.LOAD_ACT, config.pe.act_beat_bits)
            m.d.comb += [pe.act.payload.eq(act.payload), pe.act.valid.eq(act.valid), act.ready.eq(pe.act.ready)]
            destination[Command.LOAD_ACT] = act.valid & act.ready
        if config.has_kv:
            quant, dequant = self._kv_engines(m)
            tokens = route(Command.KV_QUANT, config.kv_in_bits)
            m.d.comb += [quant.i.payload.data.eq(tokens.payload), quant.i.payload.salient.eq(tokens.payload[-1]),
                         quant.i.valid.eq(tokens.valid), tokens.ready.eq(quant.i.ready)]
            destination[Command.KV_QUANT] = quant.i.valid & quant.i.ready
            packed = route(Command.KV_DEQUANT, config.kv_beat_bits)
            m.d.comb += [dequant.i.payload.eq(packed.payload), dequant.i.valid.eq(packed.valid),
                         packed.ready.eq(dequant.i.ready)]
            destination[Command.KV_DEQUANT] = dequant.i.valid & dequant.i.ready
        with m.Switch(self.command):
            for code, handshake in destination.items():
                with m.Case(code):
                    m.d.comb += self.delivered.eq(handshake)
        return m

    def _pe_array(self, m: Module) -> PeArray:
        pe = m.submodules.pe = PeArray(self.config.pe)
        m.d.comb += [pe.family.eq(self.family), pe.groups.eq(self.groups), pe.col_tiles.eq(self.col_tiles)]
        if self.config.pe.activations == "both":
            m.d.comb += pe.fp16.eq(self.fp16)
        return pe

    def _weights(self, m: Module, pe: PeArray):
        """The weight memory; during RUN its beats stream into ``pe.w``. Returns its write port."""
        config = self.config
        weights = m.submodules.weights = Memory(shape=config.weight_bits, depth=config.weight_beats, init=[])
        weight_w, weight_r = weights.write_port(), weights.read_port()
        run_read = Signal(24)                        # next weight beat to read
        advance = ~pe.w.valid | pe.w.ready
        more = self.running & (run_read < self.weights_needed)
        m.d.comb += [weight_r.addr.eq(run_read), weight_r.en.eq(advance), pe.w.payload.eq(weight_r.data)]
        with m.If(advance):
            m.d.sync += pe.w.valid.eq(more)
            with m.If(more):
                m.d.sync += run_read.eq(run_read + 1)
        with m.If(~self.running):
            m.d.sync += run_read.eq(0)
        return weight_w

    def _results(self, m: Module, pe: PeArray):
        """The result memory, written from ``pe.o`` at ``results_in``. Returns its write and read ports."""
        config = self.config
        results = m.submodules.results = Memory(shape=config.result_bits, depth=config.result_beats, init=[])
        result_w, result_r = results.write_port(), results.read_port()
        m.d.comb += [pe.o.ready.eq(1), result_w.addr.eq(self.results_in),
                     result_w.data.eq(pe.o.payload.as_value()), result_w.en.eq(pe.o.valid),
                     self.result_written.eq(pe.o.valid)]
        return result_w, result_r

    def _kv_engines(self, m: Module) -> tuple[KvQuantizer, KvDequantizer]:
        """Both KV engines, their output buffers (to ``kv_quant`` / ``kv_dequant``) and beat strobes."""
        config = self.config
        quant = KvQuantizer(config.kv)
        dequant = KvDequantizer(config.kv)
        quant_fifo = SyncFIFOBuffered(width=config.kv_beat_bits, depth=config.kv_quant_fifo)
        dequant_fifo = SyncFIFOBuffered(width=config.kv_out_bits, depth=config.kv_dequant_fifo)
        for name, unit in (("kv_quant", quant), ("kv_dequant", dequant), ("kv_quant_fifo", quant_fifo),
                           ("kv_dequant_fifo", dequant_fifo)):
            m.submodules[name] = ResetInserter(self.kv_reset)(unit)
        m.d.comb += [quant.kind.eq(self.kv_kind), quant.value_2bit.eq(self.kv_value_2bit),
                     quant.stp.eq(self.kv_stp), dequant.value_2bit.eq(self.kv_value_2bit),
                     dequant.stp.eq(self.kv_stp)]
        for engine, fifo, out, level in ((quant, quant_fifo, self.kv_quant, self.kv_quant_level),
                                         (dequant, dequant_fifo, self.kv_dequant, self.kv_dequant_level)):
            m.d.comb += [fifo.w_data.eq(engine.o.payload.as_value()), fifo.w_en.eq(engine.o.valid),
                         engine.o.ready.eq(fifo.w_rdy), out.payload.eq(fifo.r_data), out.valid.eq(fifo.r_rdy),
                         fifo.r_en.eq(out.ready), level.eq(fifo.level)]
        for name, port in (("kv_quant_beats_in", quant.i), ("kv_quant_beats_out", quant.o),
                           ("kv_dequant_beats_in", dequant.i), ("kv_dequant_beats_out", dequant.o)):
            m.d.comb += self.kv_beats[name].eq(port.valid & port.ready)
        return quant, dequant
