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
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.accelerator_config import AcceleratorConfig
from arch.bitmod import FAMILY_IDS
from arch.link import (
    COUNTER_FIELDS,
    INFO_FIELDS,
    KV_MODE_BYTES,
    LOAD_ACT_HEADER,
    LOAD_WEIGHTS_HEADER,
    Command,
    Status,
)
from hdl.frames import FrameReceiver, FrameSender, Narrow, Widen
from hdl.kv_dequant import KvDequantizer
from hdl.kv_quant import KvQuantizer
from hdl.pe_array import PeArray
from hdl.uart import UartRx, UartTx

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
    """The accelerator on byte streams: requests in on ``i``, replies out on ``o``."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        config, pe_config = self.config, self.config.pe
        rows, tiles_max = pe_config.rows, config.max_col_tiles

        m.submodules.receiver = receiver = FrameReceiver(config.max_payload, config.timeout_cycles)
        m.submodules.sender = sender = FrameSender()
        wiring.connect(m, wiring.flipped(self.i), receiver.i)
        wiring.connect(m, sender.o, wiring.flipped(self.o))

        # ---- request state
        frame = receiver.frame.payload
        command = Signal(8)
        remainder = Signal(16)                  # payload bytes after the header, then the division's rest
        units = Signal(16)                      # words in the payload after the header
        widest = max(config.kv_in_bytes, config.kv_beat_bytes, config.weight_bytes, config.act_bytes)
        unit_bytes = Signal(range(widest + 1))
        header = Signal(64)
        header_bytes, header_count = Signal(4), Signal(4)
        done_units = Signal(16)
        quiet = Signal(range(config.timeout_cycles + 1))   # cycles a stream made no progress
        counters = {name: Signal(32, name=f"count_{name}") for name in COUNTER_FIELDS}
        m.d.sync += counters["cycles"].eq(counters["cycles"] + 1)

        # payload bytes -> the header register, then (in_data) the command's Widen
        payload = receiver.payload
        in_header, in_data = Signal(), Signal()
        with m.If(in_header):
            m.d.comb += payload.ready.eq(1)
            with m.If(payload.valid):
                m.d.sync += [header.word_select(header_count, 8).eq(payload.payload),
                             header_count.eq(header_count + 1)]
        widen, destination = {}, {}

        def route(code: int, bits: int):
            unit = m.submodules[f"widen_{code:02x}"] = Widen(bits)
            m.d.comb += unit.i.payload.eq(payload.payload)
            with m.If(in_data & (command == code)):
                m.d.comb += [unit.i.valid.eq(payload.valid), payload.ready.eq(unit.i.ready)]
            widen[code] = unit
            return unit.o

        # ---- PE array, weight and result memories
        job_family = Signal(3)
        job_groups = Signal(16)
        job_tiles = Signal(16)
        job_pending, results_valid = Signal(), Signal()
        weights_loaded = Signal(range(config.weight_beats + 1))
        weights_needed = Signal(24)
        per_tile = Signal(24)
        tiles_left = Signal(16)
        first_beat = Signal(range(config.weight_beats + 1))
        running = Signal()
        results_in = Signal(16)
        results_needed = Signal(16)
        if config.has_pe:
            m.submodules.pe = pe = PeArray(pe_config)
            weights = m.submodules.weights = Memory(shape=config.weight_bits, depth=config.weight_beats, init=[])
            results = m.submodules.results = Memory(shape=config.result_bits, depth=config.result_beats, init=[])
            weight_w, weight_r = weights.write_port(), weights.read_port()
            result_w, result_r = results.write_port(), results.read_port()
            m.d.comb += [pe.family.eq(job_family), pe.groups.eq(job_groups), pe.col_tiles.eq(job_tiles)]

            beats = route(Command.LOAD_WEIGHTS, config.weight_bits)
            m.d.comb += [weight_w.en.eq(beats.valid), beats.ready.eq(1), weight_w.addr.eq(first_beat + done_units),
                         weight_w.data.eq(beats.payload)]
            destination[Command.LOAD_WEIGHTS] = beats.valid
            act = route(Command.LOAD_ACT, pe_config.lanes * 8)
            m.d.comb += [pe.act.payload.eq(act.payload), pe.act.valid.eq(act.valid), act.ready.eq(pe.act.ready)]
            destination[Command.LOAD_ACT] = act.valid & act.ready

            # RUN: the job's weight beats out of their memory into the array, results into theirs
            run_read = Signal(24)                    # next weight beat to read
            advance = ~pe.w.valid | pe.w.ready
            m.d.comb += [weight_r.addr.eq(run_read), weight_r.en.eq(advance), pe.w.payload.eq(weight_r.data)]
            with m.If(advance):
                m.d.sync += pe.w.valid.eq(running & (run_read < weights_needed))
                with m.If(running & (run_read < weights_needed)):
                    m.d.sync += run_read.eq(run_read + 1)
            with m.If(~running):
                m.d.sync += run_read.eq(0)
            m.d.comb += [pe.o.ready.eq(1), result_w.addr.eq(results_in), result_w.data.eq(pe.o.payload.as_value()),
                         result_w.en.eq(pe.o.valid)]
            with m.If(pe.o.valid):
                m.d.sync += results_in.eq(results_in + 1)

        # ---- KV engines with their output buffers; KV_MODE resets all four
        kv_reset = Signal()
        kv_kind, kv_value_2bit, kv_stp = Signal(), Signal(), Signal()
        if config.has_kv:
            quant = KvQuantizer(config.kv)
            dequant = KvDequantizer(config.kv)
            quant_fifo = SyncFIFOBuffered(width=config.kv_beat_bits, depth=config.kv_quant_fifo)
            dequant_fifo = SyncFIFOBuffered(width=config.kv_out_bits, depth=config.kv_dequant_fifo)
            for name, unit in (("kv_quant", quant), ("kv_dequant", dequant), ("kv_quant_fifo", quant_fifo),
                               ("kv_dequant_fifo", dequant_fifo)):
                m.submodules[name] = ResetInserter(kv_reset)(unit)
            m.d.comb += [quant.kind.eq(kv_kind), quant.value_2bit.eq(kv_value_2bit), quant.stp.eq(kv_stp),
                         dequant.value_2bit.eq(kv_value_2bit), dequant.stp.eq(kv_stp),
                         quant_fifo.w_data.eq(quant.o.payload.as_value()), quant_fifo.w_en.eq(quant.o.valid),
                         quant.o.ready.eq(quant_fifo.w_rdy),
                         dequant_fifo.w_data.eq(dequant.o.payload.as_value()),
                         dequant_fifo.w_en.eq(dequant.o.valid), dequant.o.ready.eq(dequant_fifo.w_rdy)]
            tokens = route(Command.KV_QUANT, config.kv_in_bits)
            m.d.comb += [quant.i.payload.data.eq(tokens.payload), quant.i.payload.salient.eq(tokens.payload[-1]),
                         quant.i.valid.eq(tokens.valid), tokens.ready.eq(quant.i.ready)]
            destination[Command.KV_QUANT] = quant.i.valid & quant.i.ready
            packed = route(Command.KV_DEQUANT, config.kv_beat_bits)
            m.d.comb += [dequant.i.payload.eq(packed.payload), dequant.i.valid.eq(packed.valid),
                         packed.ready.eq(dequant.i.ready)]
            destination[Command.KV_DEQUANT] = dequant.i.valid & dequant.i.ready
            for name, port in (("kv_quant_beats_in", quant.i), ("kv_quant_beats_out", quant.o),
                               ("kv_dequant_beats_in", dequant.i), ("kv_dequant_beats_out", dequant.o)):
                with m.If(kv_reset):
                    m.d.sync += counters[name].eq(0)
                with m.Elif(port.valid & port.ready):
                    m.d.sync += counters[name].eq(counters[name] + 1)
        delivered = Signal()                         # a word reached the command's destination
        with m.Switch(command):
            for code, handshake in destination.items():
                with m.Case(code):
                    m.d.comb += delivered.eq(handshake)

        # ---- reply sources: words -> Narrow -> sender
        reply_words = Signal(16)                     # words the reply carries
        fed = Signal(16)                             # words handed to the reply's Narrow
        source = Signal(2)                           # SRC_TABLE .. SRC_KVD
        SRC_TABLE, SRC_RESULTS, SRC_KVQ, SRC_KVD = range(4)
        narrow = {SRC_TABLE: Narrow(32)}
        if config.has_pe:
            narrow[SRC_RESULTS] = Narrow(config.result_bits)
        if config.has_kv:
            narrow[SRC_KVQ], narrow[SRC_KVD] = Narrow(config.kv_beat_bits), Narrow(config.kv_out_bits)
        for k, unit in narrow.items():
            m.submodules[f"narrow{k}"] = unit
        want_more = fed < reply_words
        table_index = Signal(range(max(len(INFO_FIELDS), len(COUNTER_FIELDS)) + 1))
        table_select = Signal(2)                     # 0 INFO, 1 COUNTERS, 2 run cycles
        info = config.info()
        info_words = Array([Const(info[name], 32) for name in INFO_FIELDS])
        counter_words = Array([counters[name] for name in COUNTER_FIELDS])
        m.d.comb += [
            narrow[SRC_TABLE].i.payload.eq(Mux(table_select == 0, info_words[table_index],
                                               Mux(table_select == 1, counter_words[table_index],
                                                   counters["run_cycles"]))),
            narrow[SRC_TABLE].i.valid.eq((source == SRC_TABLE) & want_more),
        ]
        result_next = Signal(16)
        if config.has_pe:                            # the result memory, read ahead of its Narrow
            result_valid = Signal()
            result_advance = ~result_valid | narrow[SRC_RESULTS].i.ready
            m.d.comb += [result_r.addr.eq(result_next), result_r.en.eq(result_advance),
                         narrow[SRC_RESULTS].i.payload.eq(result_r.data),
                         narrow[SRC_RESULTS].i.valid.eq(result_valid)]
            with m.If(result_advance):
                m.d.sync += result_valid.eq((source == SRC_RESULTS) & (result_next < reply_words))
                with m.If((source == SRC_RESULTS) & (result_next < reply_words)):
                    m.d.sync += result_next.eq(result_next + 1)
        if config.has_kv:
            for k, fifo in ((SRC_KVQ, quant_fifo), (SRC_KVD, dequant_fifo)):
                m.d.comb += [narrow[k].i.payload.eq(fifo.r_data),
                             narrow[k].i.valid.eq((source == k) & want_more & fifo.r_rdy),
                             fifo.r_en.eq((source == k) & want_more & narrow[k].i.ready)]
            quant_level = Mux(quant_fifo.level > config.max_payload // config.kv_beat_bytes,
                              config.max_payload // config.kv_beat_bytes, quant_fifo.level)
            dequant_level = Mux(dequant_fifo.level > config.max_payload // config.kv_out_bytes,
                                config.max_payload // config.kv_out_bytes, dequant_fifo.level)
        for k, unit in narrow.items():
            with m.If(unit.i.valid & unit.i.ready):
                m.d.sync += [fed.eq(fed + 1), table_index.eq(table_index + 1)]
            with m.If(source == k):
                m.d.comb += [sender.i.valid.eq(unit.o.valid), sender.i.payload.eq(unit.o.payload),
                             unit.o.ready.eq(sender.i.ready)]
        reply_status = Signal(8)
        reply_length = Signal(16)
        m.d.comb += [sender.header.payload.status.eq(reply_status), sender.header.payload.length.eq(reply_length)]

        # ---- the command decoder
        # Commands with a payload: (bytes a word, header bytes); those without one. A command
        # of an engine that is not built is unknown (COMMAND).
        unit_of, no_payload = {}, [Command.INFO, Command.COUNTERS]
        if config.has_pe:
            unit_of |= {Command.LOAD_WEIGHTS: (config.weight_bytes, LOAD_WEIGHTS_HEADER),
                        Command.LOAD_ACT: (config.act_bytes, LOAD_ACT_HEADER)}
            no_payload += [Command.RUN, Command.READ_RESULTS]
        if config.has_kv:
            unit_of |= {Command.KV_MODE: (1, KV_MODE_BYTES), Command.KV_QUANT: (config.kv_in_bytes, 0),
                        Command.KV_DEQUANT: (config.kv_beat_bytes, 0)}
            no_payload += [Command.KV_QUANT_READ, Command.KV_DEQUANT_READ]
        family_mask = sum(1 << FAMILY_IDS[name] for name in pe_config.families)
        words_per_group = Signal(8)
        with m.Switch(job_family):
            for fid, words in config.words_per_group.items():
                with m.Case(fid):
                    m.d.comb += words_per_group.eq(words)

        def reply(status, words=0, src=SRC_TABLE, select=0, length=None):
            """Go send a reply of ``words`` words from ``src`` (``length`` bytes)."""
            m.d.sync += [reply_status.eq(status), reply_words.eq(words), fed.eq(0), source.eq(src),
                         table_select.eq(select), table_index.eq(0), result_next.eq(0),
                         reply_length.eq(words * 4 if length is None else length)]
            m.next = "Reply"

        with m.FSM(name="decoder"):
            with m.State("Idle"):
                with m.If(receiver.frame.valid):
                    m.d.sync += [command.eq(frame.command), header_count.eq(0), header.eq(0), units.eq(0),
                                 done_units.eq(0), quiet.eq(0)]
                    with m.If(frame.status != Status.OK):
                        reply(frame.status)
                    with m.Else():
                        m.next = "Decode"
            with m.State("Decode"):
                length = frame.length
                with m.Switch(command):
                    for code, (unit, head) in unit_of.items():
                        with m.Case(code):
                            m.d.sync += [unit_bytes.eq(unit), header_bytes.eq(head), remainder.eq(length - head)]
                            with m.If((length < head) if head else Const(0)):
                                reply(Status.LENGTH)
                            with m.Elif((code == Command.LOAD_ACT) & job_pending):
                                reply(Status.ORDER)
                            with m.Else():
                                m.next = "Divide"
                    with m.Case(*no_payload):
                        with m.If(length != 0):
                            reply(Status.LENGTH)
                        with m.Else():
                            m.next = "Execute"
                    with m.Default():
                        reply(Status.COMMAND)
            with m.State("Divide"):                  # units = remainder / unit_bytes, one subtraction a cycle
                with m.If(remainder >= unit_bytes):
                    m.d.sync += [remainder.eq(remainder - unit_bytes), units.eq(units + 1)]
                with m.Elif(remainder != 0):
                    reply(Status.LENGTH)
                with m.Elif(header_bytes != 0):
                    m.next = "Header"
                with m.Else():
                    m.next = "Check"
            with m.State("Header"):
                m.d.comb += in_header.eq(1)
                with m.If(payload.valid & (header_count == header_bytes - 1)):
                    m.next = "Check"
            with m.State("Check"):
                with m.Switch(command):
                    if config.has_pe:
                        with m.Case(Command.LOAD_WEIGHTS):
                            first = header[:32]
                            with m.If((first != 0) & (first != weights_loaded)):
                                reply(Status.ORDER)
                            with m.Elif(first + units > config.weight_beats):
                                reply(Status.ARGUMENT)
                            with m.Else():
                                m.d.sync += [first_beat.eq(first), weights_loaded.eq(first)]
                                m.next = "Stream"
                        with m.Case(Command.LOAD_ACT):
                            family_id, groups, tiles = header[:8], header[16:32], header[32:48]
                            built = Const(family_mask, 8).bit_select(family_id[:3], 1) & (family_id < 8)
                            with m.If(~built | (groups == 0) | (groups > pe_config.max_groups)
                                      | (tiles == 0) | (tiles > tiles_max)):
                                reply(Status.ARGUMENT)
                            with m.Elif(units != groups * (rows * pe_config.steps_per_group)):
                                reply(Status.LENGTH)
                            with m.Else():
                                m.d.sync += [job_family.eq(family_id), job_groups.eq(groups), job_tiles.eq(tiles),
                                             tiles_left.eq(tiles), weights_needed.eq(0), results_valid.eq(0)]
                                m.next = "Size"
                    if config.has_kv:
                        with m.Case(Command.KV_MODE):
                            with m.If(units != 0):
                                reply(Status.LENGTH)
                            with m.Else():
                                m.d.sync += [kv_kind.eq(header[0]), kv_value_2bit.eq(header[8]),
                                             kv_stp.eq(header[16])]
                                m.d.comb += kv_reset.eq(1)
                                reply(Status.OK)
                    with m.Default():                # KV_QUANT, KV_DEQUANT
                        m.next = "Stream"
            with m.State("Size"):                    # weights_needed = tiles * groups * words per group
                m.d.sync += per_tile.eq(job_groups * words_per_group)
                m.next = "SizeLoop"
            with m.State("SizeLoop"):
                with m.If(tiles_left != 0):
                    m.d.sync += [weights_needed.eq(weights_needed + per_tile), tiles_left.eq(tiles_left - 1)]
                with m.Else():
                    m.next = "Stream"
            with m.State("Stream"):                  # the payload's words into their destination
                m.d.comb += in_data.eq(1)
                with m.If(delivered):
                    m.d.sync += [done_units.eq(done_units + 1), quiet.eq(0)]
                with m.Else():
                    m.d.sync += quiet.eq(quiet + 1)
                with m.If(done_units == units):
                    with m.If(command == Command.LOAD_WEIGHTS):
                        m.d.sync += weights_loaded.eq(first_beat + units)
                    with m.If(command == Command.LOAD_ACT):
                        m.d.sync += job_pending.eq(1)
                    reply(Status.OK)
                with m.Elif(quiet == config.timeout_cycles):
                    reply(Status.OVERFLOW)
            with m.State("Execute"):                 # the commands without a payload
                with m.Switch(command):
                    with m.Case(Command.INFO):
                        reply(Status.OK, len(INFO_FIELDS), SRC_TABLE, 0)
                    with m.Case(Command.COUNTERS):
                        reply(Status.OK, len(COUNTER_FIELDS), SRC_TABLE, 1)
                    if config.has_pe:
                        with m.Case(Command.RUN):
                            with m.If(~job_pending | (weights_loaded < weights_needed)):
                                reply(Status.ORDER)
                            with m.Else():
                                m.d.sync += [running.eq(1), results_in.eq(0), results_needed.eq(job_tiles * rows),
                                             counters["run_cycles"].eq(0)]
                                m.next = "Run"
                        with m.Case(Command.READ_RESULTS):
                            with m.If(~results_valid):
                                reply(Status.ORDER)
                            with m.Else():
                                reply(Status.OK, results_needed, SRC_RESULTS,
                                      length=results_needed * config.result_bytes)
                    if config.has_kv:
                        with m.Case(Command.KV_QUANT_READ):
                            reply(Status.OK, quant_level, SRC_KVQ, length=quant_level * config.kv_beat_bytes)
                        with m.Case(Command.KV_DEQUANT_READ):
                            reply(Status.OK, dequant_level, SRC_KVD, length=dequant_level * config.kv_out_bytes)
            with m.State("Run"):
                m.d.sync += counters["run_cycles"].eq(counters["run_cycles"] + 1)
                with m.If(results_in == results_needed):
                    m.d.sync += [running.eq(0), job_pending.eq(0), results_valid.eq(1)]
                    reply(Status.OK, 1, SRC_TABLE, 2)
            with m.State("Reply"):
                m.d.comb += sender.header.valid.eq(1)
                with m.If(sender.header.ready):
                    m.next = "Send"
            with m.State("Send"):                    # the sender is busy until the frame is out
                with m.If(sender.header.ready & ~want_more):
                    m.d.comb += receiver.frame.ready.eq(1)
                    with m.If(reply_status == Status.OK):
                        m.d.sync += counters["frames_ok"].eq(counters["frames_ok"] + 1)
                    with m.Else():
                        m.d.sync += counters["frames_rejected"].eq(counters["frames_rejected"] + 1)
                    m.next = "Idle"
        return m
