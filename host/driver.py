"""The host driver: run GEMV/GEMM and KV quantize/dequantize on the accelerator over its UART.

::

    from host.driver import Accelerator
    with Accelerator("/dev/ttyUSB1") as acc:          # or the path a simulated board prints
        acc.load_weights(bw)                          # golden.bitmod.BitmodWeights
        y = acc.gemv(a_q)                             # == golden.bitmod.matmul_int(a_q[None], bw)[0]
        y = acc.gemv(a)                               # float16 a, an FP16 build: == golden.bitmod.matmul_fp16
        packed = acc.quantize_kv(x, "key")            # == golden.vidkv_stream.pack_tokens(x, "key", ...)
        tokens = acc.dequantize_kv(packed)

Everything moves in golden's formats (``golden.bitmod_pack`` weight beats,
``golden.vidkv_stream`` KV beats); the frame format is arch/link.py's. The driver reads
the build's parameters with INFO, so it needs nothing but the port.

The requests go over a :class:`host.link.Link` (``Accelerator.link``), which heals the
line (docs/host_link.md, "Faults on the line"): it hunts for replies, drains stray bytes
and sends a failed request again as :data:`RETRY_POLICY` allows. Here the GEMM and KV jobs
recover from the rest: a lost RUN reply is told by ORDER, a lost KV reply by COUNTERS or by
starting the KV job over. ``Accelerator.stats`` (:class:`LinkStats`) counts what happened.
The link's names (:class:`LinkError`, :class:`LinkTimeout`, :class:`LinkUnreliable`,
:class:`LinkStats`, :data:`RETRY_POLICY`) are importable from here too.
"""

from __future__ import annotations

import time
from fractions import Fraction

import torch

from arch.bitmod import FAMILY_IDS
from arch.fp16 import ACTIVATION_KINDS
from arch.kv_config import KvConfig
from arch.link import (
    BOARD_BAUD,
    INFO_FIELDS,
    KV_MODE_LAYOUT,
    LOAD_ACT_LAYOUT,
    LOAD_WEIGHTS_LAYOUT,
    Command,
    FrameError,
    Status,
    pack_words,
    unpack_words,
    word_bytes,
)
from arch.pe_array_config import PeArrayConfig
from golden.bitmod import BitmodWeights, fp16_output
from golden.vidkv_pack import PackedKV
from golden.vidkv_stream import HEADER, beats_per_group, group_counts, stream_beats

from .kv_beats import check_packed, check_run_inputs, packed_mode, parse_job_beats, token_beats, unpack_output
from .link import RETRY_POLICY, Link, LinkError, LinkStats, LinkTimeout, LinkUnreliable, _command_name, _Uncertain
from .pe_array_jobs import assemble, assemble_tags, check_inputs, plan_jobs

__all__ = ["Accelerator", "LinkError", "LinkTimeout", "LinkUnreliable", "LinkStats", "RETRY_POLICY"]

_FAMILY_NAMES = {v: k for k, v in FAMILY_IDS.items()}


class _Restart(Exception):
    """A KV job cannot go on (output lost on the way back): start it over from KV_MODE."""


def _on_link(name: str, doc: str) -> property:
    """An attribute of the Accelerator that is its link's (read and set there)."""
    return property(lambda self: getattr(self.link, name), lambda self, value: setattr(self.link, name, value),
                    doc=doc)


class Accelerator:
    """A connection to the accelerator.

    Parameters
    ----------
    port : str or serial-like
        A serial device path (opened with pyserial at ``baud``), or an open object with
        ``write(bytes)``, ``read(n)`` (returning fewer bytes, soon, when none come) and
        ``reset_input_buffer()``; ``in_waiting`` is used if it has one.
    baud : int
        The build's baud rate (``mixbit build`` prints it): 3 Mbaud by default, the rate of
        every board build (``arch.link.BOARD_BAUD``). INFO then reports the build's
        ``baud`` and ``clk_hz`` (its PLL clock).
    timeout : float
        Seconds to wait for the first byte of a reply; an attempt with no byte back in
        that time counts as silent, and a request whose every attempt was silent raises
        :class:`LinkTimeout`.
    retries : int
        Frames a request is sent again at most after a failed attempt (so ``retries + 1``
        in all), and KV jobs are started over at most as often; then
        :class:`LinkUnreliable`. 0 turns retrying off.
    settle : float
        Seconds of silence after which the accelerator is known to be idle (no frame half
        received, no reply on its way). It must exceed the build's ``byte_timeout_us``
        (50 ms by default): a started frame ends by that timeout. The driver drains the
        line to this much silence after any failed attempt or stray byte, so nothing left
        over is read as the next reply.
    max_frame : int, optional
        Payload bytes a request frame carries at most (default: the build's
        ``max_payload``). Weights and KV beats are split to fit; a smaller frame gets
        through a noisy line more often. A job's activations (LOAD_ACT) are one frame.
    """

    def __init__(self, port, *, baud: int = BOARD_BAUD, timeout: float = 5.0, retries: int = 4,
                 settle: float = 0.1, max_frame: int | None = None):
        Link.check_settings(timeout=timeout, retries=retries, settle=settle)
        if max_frame is not None and (isinstance(max_frame, bool) or not isinstance(max_frame, int)
                                      or max_frame < 1):
            raise ValueError(f"max_frame must be a positive number of bytes, not {max_frame!r}")
        #: The link the requests go over (it owns the port, the retries and the stats).
        self.link = Link(port, baud=baud, timeout=timeout, retries=retries, settle=settle)
        self._job_pending: bool | None = None   # a PE-array job waits for RUN (None: unknown)
        try:
            self.info = dict(zip(INFO_FIELDS, unpack_words(self.request(Command.INFO), 32), strict=True))
        except BaseException:
            if self.link.opened:
                self.link.port.close()
            raise
        i = self.info
        self.max_frame = i["max_payload"] if max_frame is None else min(max_frame, i["max_payload"])
        families = tuple(name for fid, name in sorted(_FAMILY_NAMES.items()) if i["pe_families"] >> fid & 1)
        self.pe_config = PeArrayConfig(rows=i["pe_rows"], cols=i["pe_cols"], lanes=i["pe_lanes"],
                                       group_size=i["pe_group_size"], scale_bits=i["pe_scale_bits"],
                                       families=families, max_k=i["pe_max_k"],
                                       activations=ACTIVATION_KINDS[i["pe_activations"]],
                                       align_bits=i["pe_align_bits"])
        self.kv_config = KvConfig(d=i["kv_d"], group_tokens=i["kv_group_tokens"], in_bits=i["kv_in_bits"],
                                  lanes=i["kv_lanes"], f=float(Fraction(i["kv_f_num"], i["kv_f_den"])),
                                  ternary_layout="b3" if i["kv_b3"] else "i2", stp=bool(i["kv_stp"]),
                                  fft=bool(i["kv_fft"]), frac_bits=i["kv_frac_bits"])
        self.link.max_payload = i["max_payload"]
        self.link.reply_sizes = self._reply_sizes()
        self._weights: BitmodWeights | None = None

    port = _on_link("port", "The serial port (or the serial-like object) the link talks over.")
    timeout = _on_link("timeout", "Seconds to wait for the first byte of a reply.")
    retries = _on_link("retries", "Frames a request is sent again at most; KV jobs started over at most.")
    settle = _on_link("settle", "Seconds of silence after which the accelerator is known to be idle.")
    stats = _on_link("stats", "What the link went through (:class:`LinkStats`).")

    def _reply_sizes(self) -> dict[int, tuple[int, int, int]]:
        """``(least, most, unit)``: the payload lengths an OK reply can have, for the
        commands whose replies depend on the build (the link checks replies against them)."""
        info, kv, pe = self.info, self.kv_config, self.pe_config
        sizes = {}
        for command, size in ((Command.KV_QUANT_READ, word_bytes(32 + kv.tag_bits)),
                              (Command.KV_DEQUANT_READ, word_bytes(kv.lanes * kv.out_bits + kv.position_bits))):
            sizes[command] = (0, info["max_payload"] // size * size, size)
        size = word_bytes(pe.result_beat_bits)
        sizes[Command.READ_RESULTS] = (0, info["result_beats"] * size, size)
        return sizes

    def _need(self, bit: int, what: str) -> None:
        if not self.info["engines"] >> bit & 1:
            raise RuntimeError(f"this build has no {what} (built with engines = "
                               f"{'pe' if self.info['engines'] == 1 else 'kv'})")

    # ---- the link (host/link.py)
    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def exchange(self, frame: bytes, command: int = -1) -> tuple[int, bytes]:
        """Send raw request bytes once; return the reply's ``(status, payload)`` (for tests
        and tools: no retry). A damaged reply raises FrameError, none LinkTimeout."""
        return self.link.exchange(frame, command)

    def request(self, command: int, payload: bytes = b"", expect: tuple[int, int, int] | None = None) -> bytes:
        """Send one request; return the reply's payload: :meth:`host.link.Link.request`
        (retries as :data:`RETRY_POLICY` allows; LinkError on an error status)."""
        return self.link.request(command, payload, expect)

    def counters(self) -> dict[str, int]:
        """The performance counters (arch.link.COUNTER_FIELDS)."""
        return self.link.counters()

    # ---- BitMoD GEMV / GEMM
    def load_weights(self, bw: BitmodWeights) -> None:
        """Pack ``bw`` (golden.bitmod_pack, the build's columns) into the weight memory."""
        self._need(0, "PE array")
        config = self.pe_config
        dtype = torch.float16 if config.activations == "fp16" else torch.int8
        probe = torch.zeros((1, bw.shape[1]), dtype=dtype) if isinstance(bw, BitmodWeights) else None
        check_inputs(config, probe, bw)
        beats = plan_jobs(config, probe, bw)[0].weights
        if len(beats) > self.info["weight_beats"]:
            raise ValueError(f"bw needs {len(beats)} weight beats; this build's weight memory holds "
                             f"{self.info['weight_beats']} (weight_beats)")
        bits = config.cols * 32
        per_frame = max(1, (self.max_frame - LOAD_WEIGHTS_LAYOUT.size) // word_bytes(bits))
        self._weights = None                 # the memory holds neither the old nor the new weights
        for first in range(0, len(beats), per_frame):
            chunk = beats[first:first + per_frame]
            self.request(Command.LOAD_WEIGHTS, LOAD_WEIGHTS_LAYOUT.pack(first=first) + pack_words(chunk, bits))
        self._weights = bw

    def _start_job(self, act: bytes) -> None:
        """LOAD_ACT, with no job of an earlier, broken-off call left pending before it (so
        that an ORDER reply after a lost one can only mean that this one went in)."""
        if self._job_pending is not False:
            try:                             # RUN whatever job may be pending; its results are dropped
                self.request(Command.RUN)
            except LinkError as error:
                if error.status != Status.ORDER:
                    raise
        self._job_pending = None
        self.request(Command.LOAD_ACT, act)
        self._job_pending = True

    def gemm(self, a: torch.Tensor) -> torch.Tensor:
        """``a`` times the loaded weights, ``rows`` tokens a job.

        int8 ``a`` (an ``int8`` or ``both`` build): ``matmul_int(a, bw)``, int64 ``[M, N]``;
        float16 ``a`` (``pe_activations`` ``fp16`` or ``both``): ``matmul_fp16(a, bw)``,
        float32 ``[M, N]``, bit for bit. A build without the mode refuses with ValueError;
        a job the accelerator flags invalid (an Inf or NaN activation) raises ValueError.
        """
        if self._weights is None:
            raise RuntimeError("gemm needs weights: call load_weights(bw) first")
        bw = self._weights
        config = self.pe_config
        if isinstance(a, torch.Tensor) and a.dtype == torch.float16 and not config.fp16:
            raise ValueError("a is float16 but this accelerator was built with pe_activations=int8: "
                             "build it with pe_activations=fp16 or both for FP16 activations")
        jobs = plan_jobs(config, a, bw)
        act_bytes = LOAD_ACT_LAYOUT.size + len(jobs[0].act) * config.act_beat_bits // 8
        if act_bytes > self.info["max_payload"]:
            raise ValueError(f"a job's activations ({config.rows} tokens x K = {bw.shape[1]}) take {act_bytes} "
                             f"bytes; this build's max_payload is {self.info['max_payload']}")
        if jobs[0].results > self.info["result_beats"]:
            raise ValueError(f"N = {bw.shape[0]} needs {jobs[0].results} result beats; this build holds "
                             f"{self.info['result_beats']}")
        result_bits = config.result_beat_bits
        beats = []
        self.run_cycles = 0
        for job in jobs:
            header = LOAD_ACT_LAYOUT.pack(family=job.family, fp16=job.fp16, groups=job.groups,
                                          col_tiles=job.col_tiles)
            self._start_job(header + pack_words(job.act, config.act_beat_bits))
            self._job_pending = None
            self.run_cycles += int.from_bytes(self.request(Command.RUN), "little")
            self._job_pending = False
            size = job.results * word_bytes(result_bits)
            beats.append(unpack_words(self.request(Command.READ_RESULTS, expect=(size, size, 1)), result_bits))
        acc = assemble(config, a.shape[0], bw.shape[0], jobs, beats)
        if a.dtype != torch.float16:
            return acc
        er, invalid = assemble_tags(config, a.shape[0], jobs, beats)
        if invalid.any():
            raise ValueError(f"the accelerator flagged token {int(invalid.nonzero()[0])}'s job invalid: an "
                             f"activation of its job is Inf or NaN")
        return fp16_output(acc, er, bw.cs, config.align_bits)

    def gemv(self, a: torch.Tensor) -> torch.Tensor:
        """``gemm(a[None])[0]`` for a 1-D int8 or float16 ``a``."""
        if not isinstance(a, torch.Tensor) or a.dim() != 1:
            raise ValueError(f"a must be a 1-D int8 or float16 tensor, not shape {tuple(getattr(a, 'shape', ()))}")
        return self.gemm(a[None])[0]

    # ---- VidKV
    def _kv_mode(self, kind: bool, value_2bit: bool, stp: bool) -> None:
        self.request(Command.KV_MODE, KV_MODE_LAYOUT.pack(kind=kind, value_2bit=value_2bit, stp=stp))

    def _kv_send(self, command: int, words: list[int], bits: int, counter: str, before: int) -> None:
        """KV_QUANT / KV_DEQUANT of ``words``, ``before`` beats having gone in since KV_MODE.
        A lost reply is resolved with COUNTERS' ``counter`` (beats into that engine)."""
        payload = pack_words(words, bits)
        failures = []
        for _ in range(self.retries + 1):
            try:
                self.link._request(command, payload)
                return
            except _Uncertain as lost:
                failures += lost.failures
                went_in = self.counters()[counter] - before
                self.stats.resolved += 1
                if went_in == len(words):
                    return
                if went_in != 0:
                    raise _Restart(f"{_command_name(command)}: {went_in} of {len(words)} beats went in") from None
        raise LinkUnreliable(_command_name(command), len(failures), failures)

    def _kv_read(self, command: int, bits: int) -> list[int]:
        """One KV_*_READ; a lost reply (its beats gone) starts the job over."""
        try:
            return unpack_words(self.link._request(command), bits)
        except _Uncertain as lost:
            raise _Restart(f"{_command_name(command)}: {lost.failures[-1]}") from None

    def _drain(self, command: int, bits: int, want: int) -> list[int]:
        words: list[int] = []
        deadline = time.monotonic() + self.timeout
        while len(words) < want:
            got = self._kv_read(command, bits)
            words += got
            if got:
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise LinkTimeout(f"{_command_name(command)}: {len(words)} of {want} beats after {self.timeout} s")
        if len(words) > want:
            raise FrameError(f"{_command_name(command)}: {len(words)} beats, expected {want}")
        return words

    def _kv_job(self, what: str, run):
        """``run()`` (a whole KV job from KV_MODE), started over on a lost output reply, at
        most ``retries`` times; then LinkUnreliable."""
        failures = []
        for _ in range(self.retries + 1):
            try:
                return run()
            except _Restart as restart:
                failures.append(str(restart))
                self.stats.job_restarts += 1
        raise LinkUnreliable(what, len(failures), failures, "runs of the job")

    def quantize_kv(self, x: torch.Tensor, kind: str = "key", salient=None,
                    value_format: str = "ternary") -> dict[str, PackedKV]:
        """Quantize tokens ``x`` [T, D] (whole groups) like golden's ``pack_tokens``."""
        self._need(1, "KV engines")
        config = self.kv_config
        check_run_inputs(config, x, kind, salient, value_format)
        stp = salient is not None
        counts = group_counts(kind, x.shape[0], config.group_tokens, salient)
        want = sum(n * beats_per_group(path, d=config.d, group_tokens=config.group_tokens, n_hi=config.n_hi,
                                       value_format=value_format, ternary_layout=config.ternary_layout, stp=stp)
                   for path, n in counts.items())
        bits = config.lanes * config.in_bits + 1
        beat_bits = 32 + config.tag_bits
        beats = token_beats(config, x, salient)
        # A group of tokens at a time (in frames of whole tokens if max_frame allows), the
        # output read after each: the output buffer then never holds more than what is in
        # flight (arch.accelerator_config sizes kv_quant_fifo for this).
        group = config.group_tokens * config.blocks
        per_frame = min(self.max_frame // word_bytes(bits), group)
        if per_frame >= config.blocks:
            per_frame -= per_frame % config.blocks
        per_frame = max(1, per_frame)

        def run() -> list[int]:
            self._kv_mode(kind == "value", value_format == "2bit", stp)
            out: list[int] = []
            for start in range(0, len(beats), group):
                for first in range(start, min(start + group, len(beats)), per_frame):
                    chunk = beats[first:min(first + per_frame, start + group)]
                    self._kv_send(Command.KV_QUANT, chunk, bits, "kv_quant_beats_in", first)
                out += self._kv_read(Command.KV_QUANT_READ, beat_bits)
            if len(out) > want:
                raise FrameError(f"KV_QUANT_READ: {len(out)} beats, expected {want}")
            return out + self._drain(Command.KV_QUANT_READ, beat_bits, want - len(out))

        out = self._kv_job("quantize_kv", run)
        tagged = [(b >> 32, b & 0xFFFFFFFF) for b in out]
        return parse_job_beats(config, tagged, value_format, stp)

    def dequantize_kv(self, packed: dict[str, PackedKV]) -> tuple[torch.Tensor, torch.Tensor]:
        """Dequantize golden-packed groups; returns ``(tokens [T, D], positions [T])`` in the
        engine's output order (positions say where each token came from)."""
        self._need(1, "KV engines")
        config = self.kv_config
        check_packed(config, packed)
        mode = packed_mode(packed)
        beat_bits = 32 + config.tag_bits
        out_bits = config.lanes * config.out_bits + config.position_bits
        beats = [data | tag << 32 for tag, data in stream_beats(packed)]
        want = sum(p.groups * p.group_tokens for p in packed.values()) * config.blocks
        # A group per frame (split further if it exceeds max_frame), the output read after each.
        per_frame = max(1, self.max_frame // word_bytes(beat_bits))
        frames: list[list[int]] = []
        for beat in beats:
            if not frames or beat >> 32 == HEADER or len(frames[-1]) == per_frame:
                frames.append([])
            frames[-1].append(beat)
        # Each group's tokens are read out before the next group goes in, so the output
        # buffer needs to hold one group's tokens.
        per_group = config.group_tokens * config.blocks

        def run() -> list[int]:
            self._kv_mode("key" not in packed, mode["value_2bit"], mode["stp"])
            out: list[int] = []
            groups_in = sent = 0
            for k, frame in enumerate(frames):
                self._kv_send(Command.KV_DEQUANT, frame, beat_bits, "kv_dequant_beats_in", sent)
                sent += len(frame)
                if k + 1 == len(frames) or frames[k + 1][0] >> 32 == HEADER:      # a group is complete
                    groups_in += 1
                    out += self._drain(Command.KV_DEQUANT_READ, out_bits, groups_in * per_group - len(out))
            return out

        out = self._kv_job("dequantize_kv", run)
        if len(out) != want:
            raise FrameError(f"KV_DEQUANT_READ: {len(out)} beats, expected {want}")
        return unpack_output(config, out)
