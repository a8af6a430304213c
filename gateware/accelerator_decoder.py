"""The accelerator's command decoder: one request at a time, from its frame to its reply header."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from arch.accelerator_config import AcceleratorConfig
from arch.bitmod import FAMILY_IDS
from arch.link import (
    COUNTER_FIELDS,
    INFO_FIELDS,
    KV_MODE_LAYOUT,
    LOAD_ACT_LAYOUT,
    LOAD_WEIGHTS_LAYOUT,
    Command,
    Status,
)
from hdl.frames import frame_layout, reply_layout

from .accelerator_reply import Source, Table, reply_sources, table_index_shape
from .link_layouts import header_layout

__all__ = ["CommandDecoder"]


class CommandDecoder(wiring.Component):
    """The accelerator's sequencer: decodes and checks a request, runs it, starts its reply.

    It takes a frame from ``frame`` (the :class:`hdl.frames.FrameReceiver`'s header
    stream) when idle and holds ``frame.ready`` low until that request's reply has been
    sent, so one request is handled at a time. A request is checked whole before it
    changes anything: its status, its command (one of an engine that is not built is
    unknown), its length (a header of the command's ``arch.link`` layout, then whole
    words; the word count takes one cycle a word), the header's arguments and the order
    of commands. A bad request goes straight to its error reply. A request with words
    then has its ``in_data`` phase: the router moves the words to the command's engine,
    ``delivered`` counting them, until all are in (reply OK) or none moved for the byte
    timeout (reply OVERFLOW). RUN stays in its phase until the PE array has written
    ``col_tiles * rows`` result beats. Every request ends with one reply: its header is
    offered on ``reply``, then the decoder waits until the reply source has fed all of the
    reply's words and the sender is idle, and takes the frame.

    Members
    -------
    frame : In(stream.Signature(frame_layout()))
        The received request (command, length, receive status). Sampled in the first
        cycle ``valid`` is seen while idle; ``ready`` rises for one cycle once the reply
        is sent (the sender idle again and all the reply's words fed): one request
        at a time, the receiver holding it until then.
    byte, byte_valid : In(8), In(1)
        The payload byte stream (the router drives its ``ready``): in the ``in_header``
        phase the router takes a byte each cycle and the decoder stores each valid byte.
    in_header, in_data : Out(1)
        The phase: header bytes (to the decoder), then data words (to the engines).
    command : Out(8)
        The request's command, valid from the cycle after the frame is taken.
    done_units : Out(16)
        Words of the payload delivered so far.
    delivered : In(1)
        A word reached the command's engine this cycle (sampled in the ``in_data`` phase).
    family, fp16, groups, col_tiles : Out(3), Out(1), Out(16), Out(16)
        The PE-array job of the last accepted LOAD_ACT (``fp16``: its activations are FP16;
        a build takes only the modes its ``activations`` has, else ARGUMENT).
    first_beat : Out(range(weight_beats + 1))
        The weight beat the current LOAD_WEIGHTS writes first.
    weights_needed : Out(24)
        Weight beats the job reads (``col_tiles * groups * words per group``).
    running : Out(1)
        High while RUN streams the job's weights.
    results_in : Out(16)
        Result beats written so far in this RUN (the result memory's write address).
    result_written : In(1)
        The PE array wrote a result beat this cycle.
    kv_reset : Out(1)
        High for the one cycle KV_MODE is accepted: resets the KV engines and their buffers.
    kv_kind, kv_value_2bit, kv_stp : Out(1)
        The KV mode last set with KV_MODE.
    kv_quant_level, kv_dequant_level : In(range(fifo depth + 1))
        Beats waiting in the KV output buffers (sampled when a KV_*_READ executes).
    reply : Out(stream.Signature(reply_layout()))
        The reply's header (status, length) to the sender: one a request, valid from the
        cycle after the request's outcome is known until ``ready``; the payload stays
        stable until the next reply. After the header is taken, ``ready`` high again
        (with all words fed) means the sender has sent the whole frame.
    reply_words, source, table_select : Out(16), Out(2), Out(2)
        The reply's words, from which :class:`Source`, and which :class:`Table` a TABLE
        reply reads; set with the reply header, stable until the next reply.
    fed, table_index, result_next : Out(16), Out(range), Out(16)
        Words handed to the reply's Narrow, the table word handed next and the result
        beat read next; zero at the start of a reply.
    took : In(4)
        Bit ``k``: source ``k``'s Narrow took a word this cycle (counts ``fed`` and
        ``table_index`` the next cycle).
    result_advance : In(1)
        The result read-ahead register moves on this cycle (counts ``result_next``).
    run_cycles : Out(32)
        The last RUN's cycles (RUN's reply word and a counter), counted while it runs.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "frame": In(stream.Signature(frame_layout())),
            "byte": In(8), "byte_valid": In(1),
            "in_header": Out(1), "in_data": Out(1),
            "command": Out(8), "done_units": Out(16), "delivered": In(1),
            "family": Out(3), "fp16": Out(1), "groups": Out(16), "col_tiles": Out(16),
            "first_beat": Out(range(config.weight_beats + 1)), "weights_needed": Out(24),
            "running": Out(1), "results_in": Out(16), "result_written": In(1),
            "kv_reset": Out(1), "kv_kind": Out(1), "kv_value_2bit": Out(1), "kv_stp": Out(1),
            "kv_quant_level": In(range(config.kv_quant_fifo + 1)),
            "kv_dequant_level": In(range(config.kv_dequant_fifo + 1)),
            "reply": Out(stream.Signature(reply_layout())),
            "reply_words": Out(16), "source": Out(2), "table_select": Out(2),
            "fed": Out(16), "table_index": Out(table_index_shape()), "result_next": Out(16),
            "took": In(4), "result_advance": In(1),
            "run_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        r = SimpleNamespace(
            remainder=Signal(16),          # payload bytes after the header, then the division's rest
            units=Signal(16),              # words in the payload after the header
            unit_bytes=Signal(range(max(config.kv_in_bytes, config.kv_beat_bytes, config.weight_bytes,
                                        config.act_bytes) + 1)),
            header=Signal(64), header_bytes=Signal(4), header_count=Signal(4),
            quiet=Signal(range(config.timeout_cycles + 1)),   # cycles a stream made no progress
            job_pending=Signal(), results_valid=Signal(),
            weights_loaded=Signal(range(config.weight_beats + 1)),
            per_tile=Signal(24), tiles_left=Signal(16), results_needed=Signal(16),
            reply_status=Signal(8), reply_length=Signal(16),
        )
        m.d.comb += [self.reply.payload.status.eq(r.reply_status), self.reply.payload.length.eq(r.reply_length)]

        with m.If(self.in_header):
            with m.If(self.byte_valid):
                m.d.sync += [r.header.word_select(r.header_count, 8).eq(self.byte),
                             r.header_count.eq(r.header_count + 1)]
        if config.has_pe:
            with m.If(self.result_written):
                m.d.sync += self.results_in.eq(self.results_in + 1)
        for k in reply_sources(config):
            with m.If(self.took[k]):
                m.d.sync += [self.fed.eq(self.fed + 1), self.table_index.eq(self.table_index + 1)]
        if config.has_pe:
            with m.If(self.result_advance):
                with m.If((self.source == Source.RESULTS) & (self.result_next < self.reply_words)):
                    m.d.sync += self.result_next.eq(self.result_next + 1)

        r.words_per_group = Signal(8)
        with m.Switch(self.family):
            for fid, words in config.words_per_group.items() if config.has_pe else ():
                with m.Case(fid):
                    m.d.comb += r.words_per_group.eq(words)

        with m.FSM(name="decoder"):
            self._receive(m, r)
            self._check(m, r)
            with m.State("Stream"):                  # the payload's words into their destination
                m.d.comb += self.in_data.eq(1)
                with m.If(self.delivered):
                    m.d.sync += [self.done_units.eq(self.done_units + 1), r.quiet.eq(0)]
                with m.Else():
                    m.d.sync += r.quiet.eq(r.quiet + 1)
                with m.If(self.done_units == r.units):
                    with m.If(self.command == Command.LOAD_WEIGHTS):
                        m.d.sync += r.weights_loaded.eq(self.first_beat + r.units)
                    with m.If(self.command == Command.LOAD_ACT):
                        m.d.sync += r.job_pending.eq(1)
                    self._reply(m, r, Status.OK)
                with m.Elif(r.quiet == config.timeout_cycles):
                    self._reply(m, r, Status.OVERFLOW)
            self._execute(m, r)
            with m.State("Reply"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "Send"
            with m.State("Send"):                    # the sender is busy until the frame is out
                with m.If(self.reply.ready & ~(self.fed < self.reply_words)):
                    m.d.comb += self.frame.ready.eq(1)
                    m.next = "Idle"
        return m

    def _reply(self, m: Module, r: SimpleNamespace, status, words=0, src=Source.TABLE, select=Table.INFO,
               length=None) -> None:
        """Go send a reply of ``words`` words from ``src`` (``length`` bytes)."""
        m.d.sync += [r.reply_status.eq(status), self.reply_words.eq(words), self.fed.eq(0), self.source.eq(src),
                     self.table_select.eq(select), self.table_index.eq(0), self.result_next.eq(0),
                     r.reply_length.eq(words * 4 if length is None else length)]
        m.next = "Reply"

    def _receive(self, m: Module, r: SimpleNamespace) -> None:
        """The states Idle, Decode, Divide and Header: a request's command, length and header."""
        config = self.config
        # Commands with a payload: (bytes a word, header bytes); those without one. A command
        # of an engine that is not built is unknown (COMMAND).
        unit_of, no_payload = {}, [Command.INFO, Command.COUNTERS]
        if config.has_pe:
            unit_of |= {Command.LOAD_WEIGHTS: (config.weight_bytes, LOAD_WEIGHTS_LAYOUT.size),
                        Command.LOAD_ACT: (config.act_bytes, LOAD_ACT_LAYOUT.size)}
            no_payload += [Command.RUN, Command.READ_RESULTS]
        if config.has_kv:
            unit_of |= {Command.KV_MODE: (1, KV_MODE_LAYOUT.size), Command.KV_QUANT: (config.kv_in_bytes, 0),
                        Command.KV_DEQUANT: (config.kv_beat_bytes, 0)}
            no_payload += [Command.KV_QUANT_READ, Command.KV_DEQUANT_READ]
        frame = self.frame.payload
        with m.State("Idle"):
            with m.If(self.frame.valid):
                m.d.sync += [self.command.eq(frame.command), r.header_count.eq(0), r.header.eq(0), r.units.eq(0),
                             self.done_units.eq(0), r.quiet.eq(0)]
                with m.If(frame.status != Status.OK):
                    self._reply(m, r, frame.status)
                with m.Else():
                    m.next = "Decode"
        with m.State("Decode"):
            length = frame.length
            with m.Switch(self.command):
                for code, (unit, head) in unit_of.items():
                    with m.Case(code):
                        m.d.sync += [r.unit_bytes.eq(unit), r.header_bytes.eq(head), r.remainder.eq(length - head)]
                        with m.If((length < head) if head else Const(0)):
                            self._reply(m, r, Status.LENGTH)
                        with m.Elif((code == Command.LOAD_ACT) & r.job_pending):
                            self._reply(m, r, Status.ORDER)
                        with m.Else():
                            m.next = "Divide"
                with m.Case(*no_payload):
                    with m.If(length != 0):
                        self._reply(m, r, Status.LENGTH)
                    with m.Else():
                        m.next = "Execute"
                with m.Default():
                    self._reply(m, r, Status.COMMAND)
        with m.State("Divide"):                      # units = remainder / unit_bytes, one subtraction a cycle
            with m.If(r.remainder >= r.unit_bytes):
                m.d.sync += [r.remainder.eq(r.remainder - r.unit_bytes), r.units.eq(r.units + 1)]
            with m.Elif(r.remainder != 0):
                self._reply(m, r, Status.LENGTH)
            with m.Elif(r.header_bytes != 0):
                m.next = "Header"
            with m.Else():
                m.next = "Check"
        with m.State("Header"):
            m.d.comb += self.in_header.eq(1)
            with m.If(self.byte_valid & (r.header_count == r.header_bytes - 1)):
                m.next = "Check"

    def _check(self, m: Module, r: SimpleNamespace) -> None:
        """The states Check, Size and SizeLoop: a request's header arguments, and the job's size."""
        config, pe_config = self.config, self.config.pe
        family_mask = sum(1 << FAMILY_IDS[name] for name in pe_config.families)

        def view(layout):
            shape = header_layout(layout)
            return shape(r.header[:shape.size])

        with m.State("Check"):
            with m.Switch(self.command):
                if config.has_pe:
                    with m.Case(Command.LOAD_WEIGHTS):
                        first = view(LOAD_WEIGHTS_LAYOUT).first
                        with m.If((first != 0) & (first != r.weights_loaded)):
                            self._reply(m, r, Status.ORDER)
                        with m.Elif(first + r.units > config.weight_beats):
                            self._reply(m, r, Status.ARGUMENT)
                        with m.Else():
                            m.d.sync += [self.first_beat.eq(first), r.weights_loaded.eq(first)]
                            m.next = "Stream"
                    with m.Case(Command.LOAD_ACT):
                        act = view(LOAD_ACT_LAYOUT)
                        family_id, groups, tiles = act.family, act.groups, act.col_tiles
                        built = Const(family_mask, 8).bit_select(family_id[:3], 1) & (family_id < 8)
                        modes = {"int8": ~act.fp16, "fp16": act.fp16, "both": Const(1, 1)}
                        mode_built = modes[pe_config.activations]
                        with m.If(~built | ~mode_built | (groups == 0) | (groups > pe_config.max_groups)
                                  | (tiles == 0) | (tiles > config.max_col_tiles)):
                            self._reply(m, r, Status.ARGUMENT)
                        with m.Elif(r.units != groups * (pe_config.rows * pe_config.steps_per_group)):
                            self._reply(m, r, Status.LENGTH)
                        with m.Else():
                            m.d.sync += [self.family.eq(family_id), self.fp16.eq(act.fp16), self.groups.eq(groups),
                                         self.col_tiles.eq(tiles), r.tiles_left.eq(tiles),
                                         self.weights_needed.eq(0), r.results_valid.eq(0)]
                            m.next = "Size"
                if config.has_kv:
                    with m.Case(Command.KV_MODE):
                        with m.If(r.units != 0):
                            self._reply(m, r, Status.LENGTH)
                        with m.Else():
                            mode = view(KV_MODE_LAYOUT)
                            m.d.sync += [self.kv_kind.eq(mode.kind), self.kv_value_2bit.eq(mode.value_2bit),
                                         self.kv_stp.eq(mode.stp)]
                            m.d.comb += self.kv_reset.eq(1)
                            self._reply(m, r, Status.OK)
                with m.Default():                    # KV_QUANT, KV_DEQUANT
                    m.next = "Stream"
        with m.State("Size"):                        # weights_needed = tiles * groups * words per group
            m.d.sync += r.per_tile.eq(self.groups * r.words_per_group)
            m.next = "SizeLoop"
        with m.State("SizeLoop"):
            with m.If(r.tiles_left != 0):
                m.d.sync += [self.weights_needed.eq(self.weights_needed + r.per_tile),
                             r.tiles_left.eq(r.tiles_left - 1)]
            with m.Else():
                m.next = "Stream"

    def _execute(self, m: Module, r: SimpleNamespace) -> None:
        """The states Execute and Run: the commands without a payload."""
        config = self.config
        with m.State("Execute"):
            with m.Switch(self.command):
                with m.Case(Command.INFO):
                    self._reply(m, r, Status.OK, len(INFO_FIELDS), Source.TABLE, Table.INFO)
                with m.Case(Command.COUNTERS):
                    self._reply(m, r, Status.OK, len(COUNTER_FIELDS), Source.TABLE, Table.COUNTERS)
                if config.has_pe:
                    with m.Case(Command.RUN):
                        with m.If(~r.job_pending | (r.weights_loaded < self.weights_needed)):
                            self._reply(m, r, Status.ORDER)
                        with m.Else():
                            m.d.sync += [self.running.eq(1), self.results_in.eq(0),
                                         r.results_needed.eq(self.col_tiles * config.pe.rows)]
                            m.d.sync += self.run_cycles.eq(0)
                            m.next = "Run"
                    with m.Case(Command.READ_RESULTS):
                        with m.If(~r.results_valid):
                            self._reply(m, r, Status.ORDER)
                        with m.Else():
                            self._reply(m, r, Status.OK, r.results_needed, Source.RESULTS,
                                        length=r.results_needed * config.result_bytes)
                if config.has_kv:
                    for command, level, size, src in (
                            (Command.KV_QUANT_READ, self.kv_quant_level, config.kv_beat_bytes, Source.KVQ),
                            (Command.KV_DEQUANT_READ, self.kv_dequant_level, config.kv_out_bytes, Source.KVD)):
                        with m.Case(command):          # what one reply holds, at most
                            cap = config.max_payload // size
                            words = Mux(level > cap, cap, level)
                            self._reply(m, r, Status.OK, words, src, length=words * size)
        with m.State("Run"):
            m.d.sync += self.run_cycles.eq(self.run_cycles + 1)
            with m.If(self.results_in == r.results_needed):
                m.d.sync += [self.running.eq(0), r.job_pending.eq(0), r.results_valid.eq(1)]
                self._reply(m, r, Status.OK, 1, Source.TABLE, Table.RUN_CYCLES)
