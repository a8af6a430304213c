"""The serial link to the accelerator: request frames out, replies in, on a line that heals.

:class:`Link` owns the port and exchanges arch/link.py's frames over it; what the requests
mean (INFO, the PE-array and KV jobs) is host/driver.py's, whose ``Accelerator`` talks
through a ``Link``.

The link heals (docs/host_link.md, "Faults on the line"): a reply is hunted for after its
sync byte and taken only if its status, its length (what the command's reply can be) and
its CRC fit; after a failed attempt or a stray byte the line is drained to silence, so a
leftover reply is never read as the next command's; and a failed request is sent again as
:data:`RETRY_POLICY` allows (bounded by ``retries``), the jobs recovering from the rest
(:class:`_Uncertain`). ``Link.stats`` (:class:`LinkStats`) counts what happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from arch.link import (
    BOARD_BAUD,
    COUNTER_FIELDS,
    HEADER_BYTES,
    INFO_FIELDS,
    REPLY_SYNC,
    STATUS_TEXT,
    Command,
    FrameError,
    Status,
    crc16,
    encode_request,
    unpack_words,
)

__all__ = ["Link", "LinkError", "LinkTimeout", "LinkUnreliable", "LinkStats", "RETRY_POLICY"]

#: What the driver does when it cannot tell whether the accelerator executed a request
#: (its reply was lost or damaged on the way back; docs/host_link.md explains each):
#:
#: ``repeat``: send it again; executing it twice is the same as once.
#: ``order``: send it again; an ORDER reply then means the lost one went in (the board
#: accepts it only in a state that executing it leaves).
#: ``count``: ask COUNTERS how many beats the KV engine took since KV_MODE: none, send it
#: again; all, go on; else start the KV job over.
#: ``restart``: the reply carried output the request consumed; start the KV job over.
#:
#: A request the accelerator rejected whole (CRC, TRUNCATED or LENGTH, with silence after)
#: or did not answer at all did nothing, and is sent again whatever its policy.
RETRY_POLICY = {
    Command.INFO: "repeat",
    Command.COUNTERS: "repeat",
    Command.READ_RESULTS: "repeat",
    Command.KV_MODE: "repeat",
    Command.LOAD_WEIGHTS: "order",
    Command.LOAD_ACT: "order",
    Command.RUN: "order",
    Command.KV_QUANT: "count",
    Command.KV_DEQUANT: "count",
    Command.KV_QUANT_READ: "restart",
    Command.KV_DEQUANT_READ: "restart",
}

#: Statuses the frame receiver gives a request it could not take whole: the request did
#: nothing, and a noisy line explains them (a flipped bit, a dropped byte, a bad length).
_TRANSIENT = (Status.CRC, Status.TRUNCATED, Status.LENGTH)
#: Seconds a read of the port waits at most (the driver keeps its own deadlines).
_POLL = 0.01


class LinkError(RuntimeError):
    """The accelerator answered a request with an error status."""

    def __init__(self, command: str, status: int | None, message: str | None = None):
        self.command, self.status = command, status
        text = STATUS_TEXT.get(status, f"status {status}")
        super().__init__(message or f"{command}: the accelerator replied {text}")


class LinkTimeout(TimeoutError):
    """No (complete) reply within the timeout."""


class LinkUnreliable(LinkError):
    """A request (or a KV job) found no good exchange within its bounded attempts.

    ``failures`` lists what went wrong each time (a rejected request, a damaged or lost
    reply, silence); ``attempts`` is how many frames (or jobs) were tried.
    """

    def __init__(self, command: str, attempts: int, failures: list[str], what: str = "attempts"):
        self.attempts, self.failures = attempts, list(failures)
        counts: dict[str, int] = {}
        for failure in failures:
            counts[failure] = counts.get(failure, 0) + 1
        summary = ", ".join(f"{why} x{n}" for why, n in counts.items()) or "no detail"
        super().__init__(command, None, f"{command}: no good exchange in {attempts} {what} ({summary}); "
                                        "the line is too noisy (a smaller max_frame helps large requests through)")


@dataclass
class LinkStats:
    """What the link went through (``Accelerator.stats``).

    ``requests``: requests made (each with one or more frames); ``frames``: request frames
    sent; ``retried``: requests that took more than one frame; ``resent``: frames sent
    again; ``rejected``: replies CRC / TRUNCATED / LENGTH (the request did nothing);
    ``lost``: attempts without a whole, well-formed reply (bad CRC, cut short, a length
    that does not fit the command); ``silent``: attempts with no byte back at all;
    ``stray_bytes``: bytes read and thrown away (before a reply's sync byte or while
    draining to silence); ``settles``: drains to silence; ``resolved``: requests of policy
    ``order`` or ``count`` whose fate ORDER or COUNTERS told; ``job_restarts``: KV jobs
    started over.
    """

    requests: int = 0
    frames: int = 0
    retried: int = 0
    resent: int = 0
    rejected: int = 0
    lost: int = 0
    silent: int = 0
    stray_bytes: int = 0
    settles: int = 0
    resolved: int = 0
    job_restarts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class _Uncertain(Exception):
    """A request whose reply was lost: the accelerator may or may not have executed it."""

    def __init__(self, command: int, failures: list[str]):
        self.command, self.failures = command, failures
        super().__init__(f"{_command_name(command)}: reply lost ({', '.join(failures)})")




@dataclass
class _Outcome:
    kind: str                    # "reply", "silent" or "lost"
    status: int = Status.OK
    payload: bytes = b""
    why: str = ""
    stray: bool = False          # bytes before the reply's sync byte


def _command_name(code: int) -> str:
    return next((k for k, v in vars(Command).items() if v == code and k.isupper() and k != "ALL"), hex(code))



class Link:
    """The frame exchange with the accelerator over one port (``Accelerator.link``).

    ``port``, ``baud``, ``timeout``, ``retries`` and ``settle`` are
    :class:`host.driver.Accelerator`'s (its docstring says what each does). Until the
    owner has read the build's INFO, a request may carry up to 64 KB and the replies whose
    length depends on the build are taken at any length; then it sets ``max_payload`` (the
    build's) and ``reply_sizes`` (``{command: (least, most, unit)}``, the payload bytes an
    OK reply to each such command can have).
    """

    def __init__(self, port, *, baud: int = BOARD_BAUD, timeout: float = 5.0, retries: int = 4,
                 settle: float = 0.1):
        self.check_settings(timeout=timeout, retries=retries, settle=settle)
        self.opened = isinstance(port, str)  # the link opened the port (a device path)
        if self.opened:
            try:
                import serial
            except ImportError:
                raise RuntimeError("a serial port needs pyserial: pip install pyserial") from None
            port = serial.Serial(port, baudrate=baud, timeout=_POLL)
        self.port, self.timeout, self.retries, self.settle = port, timeout, retries, settle
        self.stats = LinkStats()
        self.max_payload = 0xFFFF
        self.reply_sizes: dict[int, tuple[int, int, int]] = {}
        self._dirty = False                  # unexpected bytes may still come: drain first

    @staticmethod
    def check_settings(*, timeout, retries, settle) -> None:
        """ValueError unless ``retries`` is an integer >= 0 and ``timeout``, ``settle`` are
        positive seconds."""
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, not {retries!r}")
        if not settle > 0 or not timeout > 0:
            raise ValueError(f"timeout and settle must be positive seconds, not {timeout!r} and {settle!r}")

    def close(self) -> None:
        if hasattr(self.port, "close"):
            self.port.close()

    def _discard_waiting(self) -> int:
        """Throw away the bytes already received; how many (-1 if the port cannot say)."""
        waiting = getattr(self.port, "in_waiting", None)
        if waiting is None:
            self.port.reset_input_buffer()
            return -1
        dropped = len(self.port.read(waiting)) if waiting else 0
        self.stats.stray_bytes += dropped
        return dropped

    def _settle(self) -> int:
        """Read and throw away until the line has been silent for ``settle`` seconds; the
        bytes thrown away. Bounded: a line that never goes quiet raises LinkUnreliable."""
        self.stats.settles += 1
        now = time.monotonic()
        quiet_until, limit = now + self.settle, now + 20 * self.settle + self.timeout
        dropped = 0
        while True:
            chunk = self.port.read(4096)
            now = time.monotonic()
            if chunk:
                dropped += len(chunk)
                quiet_until = now + self.settle
            elif now >= quiet_until:
                break
            if now > limit:
                raise LinkUnreliable("link", 1, [f"{dropped} bytes kept coming for "
                                                 f"{20 * self.settle + self.timeout:.1f} s"], "drains to silence")
        self.stats.stray_bytes += dropped
        self._dirty = False
        return dropped

    def _prepare(self) -> None:
        """Before a request: nothing left over may be read as its reply."""
        if self._dirty or self._discard_waiting() > 0:
            self._settle()

    def _expect(self, command: int) -> tuple[int, int, int]:
        """``(least, most, unit)``: the payload lengths an OK reply to ``command`` can have."""
        if command == Command.INFO:
            return 4 * len(INFO_FIELDS), 4 * len(INFO_FIELDS), 1
        if command == Command.COUNTERS:
            return 4 * len(COUNTER_FIELDS), 4 * len(COUNTER_FIELDS), 1
        if command in (Command.LOAD_WEIGHTS, Command.LOAD_ACT, Command.KV_MODE, Command.KV_QUANT,
                       Command.KV_DEQUANT):
            return 0, 0, 1
        if command == Command.RUN:
            return 4, 4, 1
        return self.reply_sizes.get(command, (0, 0xFFFF, 1))

    def _attempt(self, frame: bytes, expect: tuple[int, int, int]) -> _Outcome:
        """Send ``frame`` once and read its reply: hunt for the reply's sync byte, check its
        status and length against ``expect`` (a sync byte whose header does not fit is
        taken for a stray byte), then its CRC."""
        self.port.write(frame)
        self.stats.frames += 1
        least, most, unit = expect
        buf = bytearray()
        wait = self.timeout                  # before the first byte; then settle between bytes

        def fill(size: int) -> bool:
            nonlocal wait
            deadline = time.monotonic() + wait
            while len(buf) < size:
                chunk = self.port.read(size - len(buf))
                if chunk:
                    buf.extend(chunk)
                    wait = self.settle
                    deadline = time.monotonic() + wait
                elif time.monotonic() > deadline:
                    return False
            return True

        start = 0
        while True:
            at = buf.find(REPLY_SYNC, start)
            while at < 0:
                start = len(buf)
                if not fill(len(buf) + 1):
                    if buf:
                        self.stats.stray_bytes += len(buf)
                        why = "damaged reply (no header fits)" if REPLY_SYNC in buf else "no reply sync byte"
                        return _Outcome("lost", why=why)
                    return _Outcome("silent", why="no reply")
                at = buf.find(REPLY_SYNC, start)
            if not fill(at + 1 + HEADER_BYTES):
                self.stats.stray_bytes += len(buf)
                return _Outcome("lost", why="reply cut short")
            status, length = buf[at + 1], int.from_bytes(buf[at + 2:at + 4], "little")
            fits = (length == 0 if status != Status.OK else least <= length <= most and length % unit == 0)
            if status in STATUS_TEXT and fits:
                break
            start = at + 1                   # a stray sync byte (or a damaged header): hunt on
        end = at + 1 + HEADER_BYTES + length + 2
        if not fill(end):
            self.stats.stray_bytes += len(buf)
            return _Outcome("lost", why="reply cut short")
        body = bytes(buf[at + 1:end - 2])
        if crc16(body) != int.from_bytes(buf[end - 2:end], "little"):
            self.stats.stray_bytes += len(buf)
            return _Outcome("lost", why="reply CRC mismatch")
        self.stats.stray_bytes += at
        return _Outcome("reply", status, body[HEADER_BYTES:], stray=at > 0)

    def _transact(self, command: int, payload: bytes, expect=None) -> tuple[int, bytes, bool]:
        """One request, sent again as its :data:`RETRY_POLICY` allows: ``(status, payload,
        uncertain)`` of the first reply that is not a transient rejection; ``uncertain``:
        an earlier attempt's reply was lost (it may have executed). Raises _Uncertain when
        a lost reply leaves a request of policy ``count``, ``restart`` (or none) unsettled."""
        policy = RETRY_POLICY.get(command, "once")
        frame = encode_request(command, payload)
        expect = expect or self._expect(command)
        self.stats.requests += 1
        failures: list[str] = []
        uncertain = False
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.resent += 1
                self.stats.retried += attempt == 1
            self._prepare()
            outcome = self._attempt(frame, expect)
            if outcome.kind == "reply" and outcome.status not in _TRANSIENT:
                self._dirty = outcome.stray
                return outcome.status, outcome.payload, uncertain
            # A failed attempt: drain to silence, so that whatever the accelerator still
            # sends about it is not read as the next reply. Bytes during the drain mean
            # it did more than the outcome says: its fate is not known.
            late = self._settle()
            if outcome.kind == "reply":
                self.stats.rejected += 1
                failures.append(f"request rejected ({STATUS_TEXT[outcome.status]})")
            elif outcome.kind == "silent":
                self.stats.silent += 1
                failures.append("no reply")
            else:
                self.stats.lost += 1
                failures.append(outcome.why)
            if outcome.kind != "lost" and not late:
                continue                     # the accelerator did nothing: send it again
            uncertain = True
            if policy not in ("repeat", "order"):
                raise _Uncertain(command, failures)
        name = _command_name(command)
        self._dirty = True                   # a reply may still come: drain before the next request
        if all(f == "no reply" for f in failures):
            raise LinkTimeout(f"{name}: no complete reply within {self.timeout} s ({len(failures)} attempts)")
        if len(set(failures)) == 1 and failures[0].startswith("request rejected"):
            status = next(s for s in _TRANSIENT if STATUS_TEXT[s] in failures[0])
            raise LinkError(name, status, f"{name}: the accelerator replied {STATUS_TEXT[status]} to all "
                                          f"{len(failures)} attempts")
        raise LinkUnreliable(name, len(failures), failures)

    def exchange(self, frame: bytes, command: int = -1) -> tuple[int, bytes]:
        """Send raw request bytes once; return the reply's ``(status, payload)`` (for tests
        and tools: no retry). A damaged reply raises FrameError, none LinkTimeout."""
        self._prepare()
        outcome = self._attempt(frame, self._expect(command))
        if outcome.kind == "reply":
            self._dirty = outcome.stray
            return outcome.status, outcome.payload
        self._dirty = True
        if outcome.kind == "silent":
            raise LinkTimeout(f"{_command_name(command)}: no complete reply within {self.timeout} s")
        raise FrameError(f"{_command_name(command)}: {outcome.why}")

    def _request(self, command: int, payload: bytes = b"", expect=None) -> bytes:
        """:meth:`request`, letting _Uncertain through to the KV jobs that resolve it."""
        if len(payload) > self.max_payload:
            raise ValueError(f"payload of {len(payload)} bytes exceeds the build's max_payload "
                             f"{self.max_payload}")
        status, reply, uncertain = self._transact(command, payload, expect)
        if status == Status.OK:
            return reply
        if status == Status.ORDER and uncertain and RETRY_POLICY.get(command) == "order":
            # The lost attempt went in: the state it leaves is what refuses it now.
            self.stats.resolved += 1
            if command == Command.RUN:
                return self.counters()["run_cycles"].to_bytes(4, "little")
            return b""
        raise LinkError(_command_name(command), status)

    def request(self, command: int, payload: bytes = b"", expect: tuple[int, int, int] | None = None) -> bytes:
        """Send one request; return the reply's payload (LinkError on an error status).

        A failed attempt is sent again as :data:`RETRY_POLICY` allows, at most ``retries``
        times; a reply lost for a request that cannot simply be sent again raises
        :class:`LinkUnreliable` here (the GEMM and KV methods recover from it).
        ``expect``: ``(least, most, unit)`` payload bytes of an OK reply, to reject a reply
        that cannot be this request's (default: what the command's replies can be)."""
        try:
            return self._request(command, payload, expect)
        except _Uncertain as lost:
            raise LinkUnreliable(_command_name(command), len(lost.failures), lost.failures) from None

    def counters(self) -> dict[str, int]:
        """The performance counters (arch.link.COUNTER_FIELDS)."""
        return dict(zip(COUNTER_FIELDS, unpack_words(self.request(Command.COUNTERS), 32), strict=True))
