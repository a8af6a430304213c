"""The accelerator top: PE array, KV engines, on-chip buffers and a UART command interface.

::

    rx -> UartRx -> FrameReceiver (sync, length, CRC; payload in a byte memory)
                        |
                        v  command decoder (one request at a time)
      LOAD_WEIGHTS: payload -> Widen -> weight memory
      LOAD_ACT:     header -> job registers; payload -> Widen -> PeArray.act (its activation buffer)
      RUN:          weight memory -> PeArray.w;  PeArray.o -> result memory
      READ_RESULTS: result memory -> Narrow -> reply
      KV_MODE:      kind / value_2bit / stp, both KV engines and their buffers reset
      KV_QUANT:     payload -> Widen -> KvQuantizer.i;    KvQuantizer.o -> FIFO
      KV_DEQUANT:   payload -> Widen -> KvDequantizer.i;  KvDequantizer.o -> FIFO
      KV_*_READ:    FIFO -> Narrow -> reply;  INFO, COUNTERS: registers -> Narrow -> reply
                        |
    tx <- UartTx <- FrameSender (sync, status, length, CRC)

Every request gets exactly one reply (arch/link.py has the format, docs/host_link.md
the commands). A request is checked whole (CRC, length, order, arguments) before it
changes anything, except that a KV_QUANT / KV_DEQUANT whose engine stays blocked for the
byte timeout (its output buffer full) stops part-way with an OVERFLOW reply.

The parts: :class:`~gateware.accelerator_decoder.CommandDecoder` (the request sequencer),
:class:`~gateware.accelerator_engines.Engines` (the engines, their memories and buffers, the
payload router), :class:`~gateware.accelerator_reply.ReplySource` and
:class:`~gateware.accelerator_reply.Counters`. The request headers' layouts are
``arch.link``'s tables (``gateware.link_layouts``).
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from arch.accelerator_config import AcceleratorConfig
from hdl.frames import FrameReceiver, FrameSender
from hdl.uart import UartRx, UartTx

from .accelerator_decoder import CommandDecoder
from .accelerator_engines import Engines
from .accelerator_reply import Counters, ReplySource

__all__ = ["Accelerator", "AcceleratorCore"]


class Accelerator(wiring.Component):
    """The whole accelerator behind a UART: ``rx`` in, ``tx`` out (8N1, idle high)."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        divisor = self.config.divisor
        m.submodules.uart_rx = uart_rx = UartRx(divisor)
        m.submodules.uart_tx = uart_tx = UartTx(divisor)
        m.submodules.core = core = AcceleratorCore(self.config)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        wiring.connect(m, uart_rx.o, core.i)
        wiring.connect(m, core.o, uart_tx.i)
        return m


class AcceleratorCore(wiring.Component):
    """The accelerator on byte streams: requests in on ``i``, replies out on ``o``.

    A :class:`FrameReceiver` and a :class:`FrameSender` frame the bytes; a
    :class:`CommandDecoder` runs one request at a time; :class:`Engines` holds the PE array,
    the KV engines, their buffers and the payload router; a :class:`ReplySource` feeds the
    reply's words; :class:`Counters` count for COUNTERS.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.receiver = receiver = FrameReceiver(config.max_payload, config.timeout_cycles)
        m.submodules.sender = sender = FrameSender()
        m.submodules.decoder = decoder = CommandDecoder(config)
        m.submodules.engines = engines = Engines(config)
        m.submodules.reply = reply = ReplySource(config)
        m.submodules.counters = counters = Counters(config.has_kv)
        wiring.connect(m, wiring.flipped(self.i), receiver.i)
        wiring.connect(m, sender.o, wiring.flipped(self.o))
        wiring.connect(m, receiver.frame, decoder.frame)
        wiring.connect(m, receiver.payload, engines.i)
        wiring.connect(m, decoder.reply, sender.header)
        wiring.connect(m, reply.o, sender.i)
        wiring.connect(m, engines.kv_quant, reply.kv_quant)
        wiring.connect(m, engines.kv_dequant, reply.kv_dequant)

        def join(source, sink, *names):
            m.d.comb += [getattr(sink, name).eq(getattr(source, name)) for name in names]

        join(decoder, engines, "in_header", "in_data", "command", "done_units", "family", "fp16", "groups",
             "col_tiles",
             "first_beat", "weights_needed", "running", "results_in", "kv_reset", "kv_kind", "kv_value_2bit",
             "kv_stp")
        join(engines, decoder, "delivered", "result_written", "kv_quant_level", "kv_dequant_level")
        join(decoder, reply, "source", "table_select", "reply_words", "fed", "table_index", "result_next")
        join(reply, decoder, "took", "result_advance")
        join(reply, engines, "result_addr", "result_en")
        join(engines, reply, "result_data")
        join(decoder, counters, "run_cycles", "kv_reset")
        join(engines, counters, "kv_beats")
        m.d.comb += [decoder.byte.eq(receiver.payload.payload), decoder.byte_valid.eq(receiver.payload.valid),
                     counters.frame_done.eq(receiver.frame.ready),
                     counters.reply_status.eq(decoder.reply.payload.status), reply.counters.eq(counters.counts)]
        return m
