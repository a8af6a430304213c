"""The host driver: run GEMV/GEMM and KV quantize/dequantize on the accelerator over its UART.

::

    from host.driver import Accelerator
    with Accelerator("/dev/ttyUSB1") as acc:          # or the path a simulated board prints
        acc.load_weights(bw)                          # golden.bitmod.BitmodWeights
        y = acc.gemv(a_q)                             # == golden.bitmod.matmul_int(a_q[None], bw)[0]
        packed = acc.quantize_kv(x, "key")            # == golden.vidkv_stream.pack_tokens(x, "key", ...)
        tokens = acc.dequantize_kv(packed)

Everything moves in golden's formats (``golden.bitmod_pack`` weight beats,
``golden.vidkv_stream`` KV beats); the frame format is arch/link.py's. The driver reads
the build's parameters with INFO, so it needs nothing but the port.
"""

from __future__ import annotations

import time
from fractions import Fraction

import torch

from arch.bitmod import FAMILY_IDS
from arch.kv_config import KvConfig
from arch.link import (
    COUNTER_FIELDS,
    INFO_FIELDS,
    KV_MODE_LAYOUT,
    LOAD_ACT_LAYOUT,
    LOAD_WEIGHTS_LAYOUT,
    REPLY_SYNC,
    STATUS_TEXT,
    Command,
    FrameError,
    Status,
    crc16,
    encode_request,
    pack_words,
    unpack_words,
    word_bytes,
)
from arch.pe_array_config import PeArrayConfig
from golden.bitmod import BitmodWeights
from golden.vidkv_pack import PackedKV
from golden.vidkv_stream import HEADER, beats_per_group, group_counts, stream_beats

from .kv_beats import check_packed, check_run_inputs, packed_mode, parse_job_beats, token_beats, unpack_output
from .pe_array_jobs import assemble, check_inputs, plan_jobs

__all__ = ["Accelerator", "LinkError", "LinkTimeout"]

_FAMILY_NAMES = {v: k for k, v in FAMILY_IDS.items()}


class LinkError(RuntimeError):
    """The accelerator answered a request with an error status."""

    def __init__(self, command: str, status: int):
        self.command, self.status = command, status
        super().__init__(f"{command}: the accelerator replied {STATUS_TEXT.get(status, f'status {status}')}")


class LinkTimeout(TimeoutError):
    """No (complete) reply within the timeout."""


def _command_name(code: int) -> str:
    return next((k for k, v in vars(Command).items() if v == code and k.isupper() and k != "ALL"), hex(code))


class Accelerator:
    """A connection to the accelerator.

    Parameters
    ----------
    port : str or serial-like
        A serial device path (opened with pyserial at ``baud``), or an open object with
        ``write(bytes)``, ``read(n)`` (returning fewer bytes on timeout) and
        ``reset_input_buffer()``.
    baud : int
        The build's baud rate (``mixbit build`` prints it; 115200 by default).
    timeout : float
        Seconds to wait for a reply before :class:`LinkTimeout`.
    """

    def __init__(self, port, *, baud: int = 115_200, timeout: float = 5.0):
        if isinstance(port, str):
            try:
                import serial
            except ImportError:
                raise RuntimeError("a serial port needs pyserial: pip install pyserial") from None
            port = serial.Serial(port, baudrate=baud, timeout=timeout)
        self.port, self.timeout = port, timeout
        self.info = dict(zip(INFO_FIELDS, unpack_words(self.request(Command.INFO), 32), strict=True))
        i = self.info
        families = tuple(name for fid, name in sorted(_FAMILY_NAMES.items()) if i["pe_families"] >> fid & 1)
        self.pe_config = PeArrayConfig(rows=i["pe_rows"], cols=i["pe_cols"], lanes=i["pe_lanes"],
                                       group_size=i["pe_group_size"], scale_bits=i["pe_scale_bits"],
                                       families=families, max_k=i["pe_max_k"])
        self.kv_config = KvConfig(d=i["kv_d"], group_tokens=i["kv_group_tokens"], in_bits=i["kv_in_bits"],
                                  lanes=i["kv_lanes"], f=float(Fraction(i["kv_f_num"], i["kv_f_den"])),
                                  ternary_layout="b3" if i["kv_b3"] else "i2", stp=bool(i["kv_stp"]),
                                  fft=bool(i["kv_fft"]), frac_bits=i["kv_frac_bits"])
        self._weights: BitmodWeights | None = None

    def _need(self, bit: int, what: str) -> None:
        if not self.info["engines"] >> bit & 1:
            raise RuntimeError(f"this build has no {what} (built with engines = "
                               f"{'pe' if self.info['engines'] == 1 else 'kv'})")

    # ---- link
    def close(self) -> None:
        if hasattr(self.port, "close"):
            self.port.close()

    def __enter__(self) -> Accelerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, n: int, command: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        data = b""
        while len(data) < n:
            chunk = self.port.read(n - len(data))
            data += chunk
            if not chunk and time.monotonic() > deadline:
                self.port.reset_input_buffer()
                raise LinkTimeout(f"{_command_name(command)}: no complete reply within {self.timeout} s "
                                  f"({len(data)} of {n} bytes)")
        return data

    def exchange(self, frame: bytes, command: int = -1) -> tuple[int, bytes]:
        """Send raw request bytes; return the reply's ``(status, payload)`` (for tests and tools)."""
        self.port.write(frame)
        head = self._read(4, command)
        if head[0] != REPLY_SYNC:
            self.port.reset_input_buffer()
            raise FrameError(f"{_command_name(command)}: reply starts with {head.hex()}, not the sync byte")
        length = int.from_bytes(head[2:4], "little")
        rest = self._read(length + 2, command)
        if crc16(head[1:] + rest[:-2]) != int.from_bytes(rest[-2:], "little"):
            raise FrameError(f"{_command_name(command)}: reply CRC mismatch")
        return head[1], rest[:-2]

    def request(self, command: int, payload: bytes = b"") -> bytes:
        """Send one request; return the reply's payload (LinkError on an error status)."""
        if len(payload) > getattr(self, "info", {}).get("max_payload", 0xFFFF):
            raise ValueError(f"payload of {len(payload)} bytes exceeds the build's max_payload "
                             f"{self.info['max_payload']}")
        status, reply = self.exchange(encode_request(command, payload), command)
        if status != Status.OK:
            raise LinkError(_command_name(command), status)
        return reply

    def counters(self) -> dict[str, int]:
        """The performance counters (arch.link.COUNTER_FIELDS)."""
        return dict(zip(COUNTER_FIELDS, unpack_words(self.request(Command.COUNTERS), 32), strict=True))

    # ---- BitMoD GEMV / GEMM
    def load_weights(self, bw: BitmodWeights) -> None:
        """Pack ``bw`` (golden.bitmod_pack, the build's columns) into the weight memory."""
        self._need(0, "PE array")
        config = self.pe_config
        probe = torch.zeros((1, bw.shape[1]), dtype=torch.int8) if isinstance(bw, BitmodWeights) else None
        check_inputs(config, probe, bw)
        beats = plan_jobs(config, probe, bw)[0].weights
        if len(beats) > self.info["weight_beats"]:
            raise ValueError(f"bw needs {len(beats)} weight beats; this build's weight memory holds "
                             f"{self.info['weight_beats']} (weight_beats)")
        bits = config.cols * 32
        per_frame = (self.info["max_payload"] - LOAD_WEIGHTS_LAYOUT.size) // word_bytes(bits)
        for first in range(0, len(beats), per_frame):
            chunk = beats[first:first + per_frame]
            self.request(Command.LOAD_WEIGHTS, LOAD_WEIGHTS_LAYOUT.pack(first=first) + pack_words(chunk, bits))
        self._weights = bw

    def gemm(self, a_q: torch.Tensor) -> torch.Tensor:
        """``matmul_int(a_q, bw)`` (int64 ``[M, N]``) for the loaded weights, ``rows`` tokens a job."""
        if self._weights is None:
            raise RuntimeError("gemm needs weights: call load_weights(bw) first")
        bw = self._weights
        config = self.pe_config
        jobs = plan_jobs(config, a_q, bw)
        act_bytes = LOAD_ACT_LAYOUT.size + len(jobs[0].act) * config.lanes
        if act_bytes > self.info["max_payload"]:
            raise ValueError(f"a job's activations ({config.rows} tokens x K = {bw.shape[1]}) take {act_bytes} "
                             f"bytes; this build's max_payload is {self.info['max_payload']}")
        if jobs[0].results > self.info["result_beats"]:
            raise ValueError(f"N = {bw.shape[0]} needs {jobs[0].results} result beats; this build holds "
                             f"{self.info['result_beats']}")
        result_bits = config.cols * config.acc_bits
        beats = []
        self.run_cycles = 0
        for job in jobs:
            header = LOAD_ACT_LAYOUT.pack(family=job.family, groups=job.groups, col_tiles=job.col_tiles)
            self.request(Command.LOAD_ACT, header + pack_words(job.act, config.lanes * 8))
            self.run_cycles += int.from_bytes(self.request(Command.RUN), "little")
            beats.append(unpack_words(self.request(Command.READ_RESULTS), result_bits))
        return assemble(config, a_q.shape[0], bw.shape[0], jobs, beats)

    def gemv(self, a_q: torch.Tensor) -> torch.Tensor:
        """``matmul_int(a_q[None], bw)[0]`` for a 1-D int8 ``a_q``."""
        if not isinstance(a_q, torch.Tensor) or a_q.dim() != 1:
            raise ValueError(f"a_q must be a 1-D int8 tensor, not shape {tuple(getattr(a_q, 'shape', ()))}")
        return self.gemm(a_q[None])[0]

    # ---- VidKV
    def _kv_mode(self, kind: bool, value_2bit: bool, stp: bool) -> None:
        self.request(Command.KV_MODE, KV_MODE_LAYOUT.pack(kind=kind, value_2bit=value_2bit, stp=stp))

    def _drain(self, command: int, bits: int, want: int) -> list[int]:
        words: list[int] = []
        deadline = time.monotonic() + self.timeout
        while len(words) < want:
            got = unpack_words(self.request(command), bits)
            words += got
            if got:
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise LinkTimeout(f"{_command_name(command)}: {len(words)} of {want} beats after {self.timeout} s")
        if len(words) > want:
            raise FrameError(f"{_command_name(command)}: {len(words)} beats, expected {want}")
        return words

    def quantize_kv(self, x: torch.Tensor, kind: str = "key", salient=None,
                    value_format: str = "ternary") -> dict[str, PackedKV]:
        """Quantize tokens ``x`` [T, D] (whole groups) like golden's ``pack_tokens``."""
        self._need(1, "KV engines")
        config = self.kv_config
        check_run_inputs(config, x, kind, salient, value_format)
        stp = salient is not None
        self._kv_mode(kind == "value", value_format == "2bit", stp)
        counts = group_counts(kind, x.shape[0], config.group_tokens, salient)
        want = sum(n * beats_per_group(path, d=config.d, group_tokens=config.group_tokens, n_hi=config.n_hi,
                                       value_format=value_format, ternary_layout=config.ternary_layout, stp=stp)
                   for path, n in counts.items())
        bits = config.lanes * config.in_bits + 1
        beat_bits = 32 + config.tag_bits
        beats = token_beats(config, x, salient)
        # At most a group of tokens per frame, and the output read after each: the
        # output buffer then never holds more than what is in flight.
        per_frame = min(self.info["max_payload"] // word_bytes(bits), config.group_tokens * config.blocks)
        per_frame -= per_frame % config.blocks
        out: list[int] = []
        for first in range(0, len(beats), per_frame):
            self.request(Command.KV_QUANT, pack_words(beats[first:first + per_frame], bits))
            out += unpack_words(self.request(Command.KV_QUANT_READ), beat_bits)
        out += self._drain(Command.KV_QUANT_READ, beat_bits, want - len(out))
        tagged = [(b >> 32, b & 0xFFFFFFFF) for b in out]
        return parse_job_beats(config, tagged, value_format, stp)

    def dequantize_kv(self, packed: dict[str, PackedKV]) -> tuple[torch.Tensor, torch.Tensor]:
        """Dequantize golden-packed groups; returns ``(tokens [T, D], positions [T])`` in the
        engine's output order (positions say where each token came from)."""
        self._need(1, "KV engines")
        config = self.kv_config
        check_packed(config, packed)
        mode = packed_mode(packed)
        self._kv_mode("key" not in packed, mode["value_2bit"], mode["stp"])
        beat_bits = 32 + config.tag_bits
        out_bits = config.lanes * config.out_bits + config.position_bits
        beats = [data | tag << 32 for tag, data in stream_beats(packed)]
        want = sum(p.groups * p.group_tokens for p in packed.values()) * config.blocks
        # A group per frame (split further if it exceeds max_payload), the output read after each.
        per_frame = self.info["max_payload"] // word_bytes(beat_bits)
        frames: list[list[int]] = []
        for beat in beats:
            if not frames or beat >> 32 == HEADER or len(frames[-1]) == per_frame:
                frames.append([])
            frames[-1].append(beat)
        # Each group's tokens are read out before the next group goes in, so the output
        # buffer needs to hold one group's tokens.
        per_group = config.group_tokens * config.blocks
        out: list[int] = []
        groups_in = 0
        for k, frame in enumerate(frames):
            self.request(Command.KV_DEQUANT, pack_words(frame, beat_bits))
            if k + 1 == len(frames) or frames[k + 1][0] >> 32 == HEADER:      # a group is complete
                groups_in += 1
                out += self._drain(Command.KV_DEQUANT_READ, out_bits, groups_in * per_group - len(out))
        if len(out) != want:
            raise FrameError(f"KV_DEQUANT_READ: {len(out)} beats, expected {want}")
        return unpack_output(config, out)
