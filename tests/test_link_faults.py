"""A host link that heals (docs/host_link.md, "Faults on the line").

Fast tests drive the driver against :class:`FakeBoard`, a serial-like stand-in that
answers whole request frames like the accelerator and applies a scripted fault to a
chosen frame: stray bytes before a reply, a damaged reply, a rejected request, no reply,
a late reply, an extra reply after one. The last test runs the Verilated accelerator
behind a pty bridge that flips bits and drops bytes at a set rate (sim/uart_bridge.cpp)
through a GEMM and a KV round trip, and checks that everything stays bit-exact.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import golden.bitmod as gb
import host.driver
import host.link
from arch.accelerator_config import AcceleratorConfig
from arch.link import (
    COUNTER_FIELDS,
    INFO_FIELDS,
    REQUEST_SYNC,
    Command,
    Status,
    crc16,
    encode_reply,
    pack_words,
)
from gateware.designs import get_design
from golden.vidkv_stream import pack_tokens, stream_beats
from host.driver import RETRY_POLICY, Accelerator, LinkError, LinkTimeout, LinkUnreliable
from host.kv_beats import corner_tokens
from host.pe_array_jobs import first_mismatch
from sim.board_sim import FAULT_BOARD, SMALL_BOARD, LineFaults, SimulatedBoard
from sim.kv_dequant import check_tokens_against_golden
from sim.kv_quant import first_difference

CONFIG = AcceleratorConfig.from_params(get_design("accelerator").resolve(SMALL_BOARD))
#: Junk before a reply: a stray reply sync byte whose "header" cannot be a reply to INFO or
#: COUNTERS (an OK status with a 0x4000-byte payload).
STRAY = bytes([0x00, 0x5A, 0x00, 0x00, 0x40, 0x13, 0xA5])
FAST = {"timeout": 0.2, "settle": 0.03}
#: Seconds of :class:`FakeClock` a read of :class:`FakeBoard` that finds nothing waits.
POLL = 0.002


class FakeClock:
    """Time for the driver and :class:`FakeBoard`, in place of the ``time`` module of
    host/link.py and host/driver.py (the ``clock`` fixture): it stands still except where
    the board waits (a read that finds nothing, a late reply) or a test sleeps, so the
    driver's timeouts and drains race nothing, on a busy machine too, and cost no real
    time. ``monotonic`` is the only function of ``time`` the driver calls."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """A :class:`FakeClock` the driver reads instead of the real one (for the test's length)."""
    fake = FakeClock()
    # raising=True (the default): a driver module that no longer imports ``time`` fails
    # here instead of silently running on the real clock.
    monkeypatch.setattr(host.link, "time", fake)
    monkeypatch.setattr(host.driver, "time", fake)
    return fake


class FakeBoard:
    """A serial-like object that answers like the accelerator built with SMALL_BOARD.

    It takes whole request frames (the driver writes one frame a ``write``) and answers
    INFO, COUNTERS, LOAD_ACT / RUN / READ_RESULTS (ORDER rules as the RTL's), KV_MODE and
    KV_QUANT / KV_QUANT_READ, its quantizer golden's (key groups, no STP). ``script`` maps
    ``(command, k)`` (the k-th frame of that command, from 0) to a fault (``executed`` lists
    the commands it carried out with an OK reply):

    ``reject``: answered CRC, not executed (the request was damaged on the way);
    ``silent``: not executed, no reply (its sync byte was lost);
    ``lost``: executed, its reply damaged on the way back (a flipped CRC byte);
    ``reject_lost``: not executed, its CRC reply damaged on the way back;
    ``stray``: executed, junk (:data:`STRAY`) before its reply;
    ``trailer``: executed, its reply followed by another (CRC) reply, as when stray bytes
    made a frame of their own;
    ``late``: executed, its reply held back for ``late`` seconds.

    Its time is ``clock``'s (a :class:`FakeClock`, the driver's too); ``writes`` lists
    ``(command, time)`` of every request frame, in order.
    """

    def __init__(self, script=None, late: float = 0.5, *, clock: FakeClock):
        self.script = dict(script or {})
        self.late = late
        self.clock = clock
        self.writes: list[tuple[int, float]] = []
        self.seen: dict[int, int] = {}
        self.executed: list[int] = []            # commands, in the order they were executed
        self.outgoing: deque[tuple[float, bytes]] = deque()
        self.incoming = bytearray()
        kv = CONFIG.kv
        self.kv = kv
        self.counters = dict.fromkeys(COUNTER_FIELDS, 0)
        self.job_pending = self.results_valid = False
        self.tokens: list[int] = []
        self.fifo: deque[int] = deque()

    # ---- serial-like
    def write(self, data: bytes) -> None:
        assert data[0] == REQUEST_SYNC and crc16(data[1:-2]) == int.from_bytes(data[-2:], "little"), data.hex()
        command, payload = data[1], data[4:-2]
        self.writes.append((command, self.clock.monotonic()))
        k = self.seen.get(command, 0)
        self.seen[command] = k + 1
        fault = self.script.get((command, k), "ok")
        if fault == "silent":
            return
        if fault in ("reject", "reject_lost"):
            status, reply = Status.CRC, b""
        else:
            status, reply = self._execute(command, payload)
            if status == Status.OK:
                self.executed.append(command)
        frame = encode_reply(status, reply)
        if fault in ("lost", "reject_lost"):
            frame = frame[:-1] + bytes([frame[-1] ^ 0x20])
        if fault == "stray":
            frame = STRAY + frame
        if fault == "trailer":
            frame += encode_reply(Status.CRC)
        self.outgoing.append((self.clock.monotonic() + (self.late if fault == "late" else 0.0), frame))

    def _release(self) -> None:
        while self.outgoing and self.outgoing[0][0] <= self.clock.monotonic():
            self.incoming += self.outgoing.popleft()[1]

    @property
    def in_waiting(self) -> int:
        self._release()
        return len(self.incoming)

    def read(self, n: int) -> bytes:
        self._release()
        if not self.incoming:
            self.clock.sleep(POLL)           # a serial read's timeout: nothing came meanwhile
            self._release()
        data = bytes(self.incoming[:n])
        del self.incoming[:n]
        return data

    def reset_input_buffer(self) -> None:
        self.incoming.clear()

    # ---- the accelerator
    def _execute(self, command: int, payload: bytes) -> tuple[int, bytes]:
        kv = self.kv
        counters = self.counters
        if command == Command.INFO:
            info = CONFIG.info()
            return Status.OK, pack_words([info[name] for name in INFO_FIELDS], 32)
        if command == Command.COUNTERS:
            return Status.OK, pack_words([counters[name] for name in COUNTER_FIELDS], 32)
        if command == Command.LOAD_ACT:
            if self.job_pending:
                return Status.ORDER, b""
            self.job_pending, self.results_valid = True, False
            return Status.OK, b""
        if command == Command.RUN:
            if not self.job_pending:
                return Status.ORDER, b""
            self.job_pending, self.results_valid = False, True
            counters["run_cycles"] = 77
            return Status.OK, (77).to_bytes(4, "little")
        if command == Command.READ_RESULTS:
            return (Status.OK, bytes(range(CONFIG.result_bytes))) if self.results_valid else (Status.ORDER, b"")
        if command == Command.KV_MODE:
            self.tokens, self.fifo = [], deque()
            for name in COUNTER_FIELDS:
                if name.startswith("kv_"):
                    counters[name] = 0
            return Status.OK, b""
        if command == Command.KV_QUANT:
            size = CONFIG.kv_in_bytes
            beats = [int.from_bytes(payload[i:i + size], "little") for i in range(0, len(payload), size)]
            counters["kv_quant_beats_in"] += len(beats)
            self.tokens += beats
            group = kv.group_tokens * kv.blocks
            while len(self.tokens) >= group:
                x = self._tokens(self.tokens[:group])
                del self.tokens[:group]
                packed = pack_tokens(x, "key", f=kv.f, **kv.golden_options("ternary"))
                self.fifo.extend(data | tag << 32 for tag, data in stream_beats(packed))
            return Status.OK, b""
        if command == Command.KV_QUANT_READ:
            size = CONFIG.kv_beat_bytes
            out = [self.fifo.popleft() for _ in range(min(len(self.fifo), CONFIG.max_payload // size))]
            return Status.OK, pack_words(out, 8 * size)
        return Status.COMMAND, b""

    def _tokens(self, beats: list[int]) -> torch.Tensor:
        """Token beats (host.kv_beats.token_beats) back into int tokens [Tg, D]."""
        kv = self.kv
        bits, mask = kv.in_bits, (1 << kv.in_bits) - 1
        values = []
        for beat in beats:
            for i in range(kv.lanes):
                v = beat >> (i * bits) & mask
                values.append(v - (1 << bits) if v >> (bits - 1) else v)
        return torch.tensor(values, dtype=torch.int64).reshape(-1, kv.d)

    def count(self, command: int) -> int:
        """How many times ``command`` was executed."""
        return self.executed.count(command)


def _counters(board: FakeBoard) -> dict[str, int]:
    return dict(board.counters)


def test_every_command_has_a_retry_policy_and_none_that_changes_state_is_simply_repeated():
    assert set(RETRY_POLICY) == set(Command.ALL)
    assert {c for c, p in RETRY_POLICY.items() if p == "repeat"} == {
        Command.INFO, Command.COUNTERS, Command.READ_RESULTS, Command.KV_MODE}
    assert {c for c, p in RETRY_POLICY.items() if p == "order"} == {Command.LOAD_WEIGHTS, Command.LOAD_ACT,
                                                                     Command.RUN}
    assert RETRY_POLICY[Command.KV_QUANT] == RETRY_POLICY[Command.KV_DEQUANT] == "count"
    assert RETRY_POLICY[Command.KV_QUANT_READ] == RETRY_POLICY[Command.KV_DEQUANT_READ] == "restart"


def test_the_retry_table_of_docs_host_link_is_the_drivers():
    doc = (Path(__file__).parent.parent / "docs" / "host_link.md").read_text()
    table = doc[doc.index("| command | policy |"):].split("\n\n")[0].splitlines()[2:]
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in table]
    assert {getattr(Command, name): policy for name, policy, *_ in rows} == RETRY_POLICY


def test_stray_bytes_before_a_reply_are_skipped(clock):
    board = FakeBoard({(Command.COUNTERS, 0): "stray"}, clock=clock)
    acc = Accelerator(board, **FAST)
    assert acc.info == CONFIG.info()
    assert acc.counters() == _counters(board)
    assert acc.stats.stray_bytes == len(STRAY) and acc.stats.retried == 0 and board.count(Command.COUNTERS) == 1


@pytest.mark.parametrize("fault", ["lost", "reject", "silent", "reject_lost"])
def test_a_read_only_request_is_sent_again_after_any_fault(clock, fault):
    board = FakeBoard({(Command.INFO, 0): fault}, clock=clock)
    acc = Accelerator(board, **FAST)
    assert acc.info == CONFIG.info()
    assert acc.stats.retried == 1 and acc.stats.frames == 2
    assert board.count(Command.INFO) == (2 if fault == "lost" else 1)


def test_a_lost_reply_is_not_resent_blindly_for_a_request_that_consumes_output(clock):
    board = FakeBoard({(Command.KV_QUANT_READ, 0): "lost"}, clock=clock)
    acc = Accelerator(board, **FAST)
    with pytest.raises(LinkUnreliable, match="KV_QUANT_READ: .*reply CRC mismatch"):
        acc.request(Command.KV_QUANT_READ)
    assert board.seen[Command.KV_QUANT_READ] == 1
    # ... while one the accelerator rejected (so did nothing) is sent again.
    board = FakeBoard({(Command.KV_QUANT_READ, 0): "reject"}, clock=clock)
    acc = Accelerator(board, **FAST)
    assert acc.request(Command.KV_QUANT_READ) == b""
    assert board.seen[Command.KV_QUANT_READ] == 2 and board.count(Command.KV_QUANT_READ) == 1


def test_a_lost_run_reply_is_resolved_by_the_order_reply_of_the_repeat(clock):
    board = FakeBoard({(Command.RUN, 0): "lost"}, clock=clock)
    acc = Accelerator(board, **FAST)
    acc.request(Command.LOAD_ACT, bytes(8 + 32))
    assert int.from_bytes(acc.request(Command.RUN), "little") == 77      # from COUNTERS' run_cycles
    assert board.count(Command.RUN) == 1 and board.seen[Command.RUN] == 2
    assert acc.stats.resolved == 1
    # A LOAD_ACT whose reply was lost: the repeat's ORDER says it went in.
    board.script[(Command.LOAD_ACT, 1)] = "lost"
    acc.request(Command.LOAD_ACT, bytes(8 + 32))
    assert board.count(Command.LOAD_ACT) == 2 and board.job_pending
    # An ORDER without a lost reply before it is the accelerator's answer, not a retry's.
    with pytest.raises(LinkError, match="LOAD_ACT: the accelerator replied command out of order"):
        acc.request(Command.LOAD_ACT, bytes(8 + 32))


def _quantize(board: FakeBoard, **options) -> tuple[Accelerator, bool]:
    acc = Accelerator(board, **FAST, **options)
    kv = acc.kv_config
    x = corner_tokens(kv, 2 * kv.group_tokens, seed=5)
    want = pack_tokens(x, "key", f=kv.f, **kv.golden_options("ternary"))
    got = acc.quantize_kv(x, "key")
    return acc, first_difference(got, want, x) is None


@pytest.mark.parametrize("fault", ["lost", "reject_lost"])
def test_a_kv_frame_whose_reply_was_lost_is_resolved_with_counters_and_never_doubled(clock, fault):
    board = FakeBoard({(Command.KV_QUANT, 3): fault, (Command.KV_QUANT, 5): fault}, clock=clock)
    acc, exact = _quantize(board, max_frame=200)
    assert exact
    frames = board.count(Command.KV_QUANT)
    assert board.seen[Command.KV_QUANT] == frames + (2 if fault == "reject_lost" else 0)
    assert acc.stats.resolved == 2 and acc.stats.job_restarts == 0 and board.count(Command.COUNTERS) == 2


def test_a_lost_kv_output_reply_starts_the_kv_job_over(clock):
    board = FakeBoard({(Command.KV_QUANT_READ, 1): "lost"}, clock=clock)
    acc, exact = _quantize(board, max_frame=200)
    assert exact
    assert acc.stats.job_restarts == 1 and board.count(Command.KV_MODE) == 2


def test_the_previous_frames_leftover_reply_is_not_taken_for_the_next_commands(clock):
    # An extra reply behind COUNTERS' (a frame the accelerator made of stray bytes): the
    # old driver read its CRC status as the next command's.
    board = FakeBoard({(Command.COUNTERS, 0): "trailer"}, clock=clock)
    acc = Accelerator(board, **FAST)
    assert acc.counters() == _counters(board)
    assert acc.request(Command.INFO) and acc.stats.rejected == 0
    assert acc.stats.stray_bytes == 6 and board.count(Command.INFO) == 2
    # A reply that comes after the driver gave up: the next request drains it first, or,
    # when it comes in the middle, hunts past it (it cannot be COUNTERS' reply: wrong length).
    # The driver gives up 0.23 s after sending (the timeout, then a drain to silence); on
    # the fake clock the reply comes 0.3 s and 0.35 s after, however busy the machine.
    for late, wait, drained in ((0.3, 0.15, True), (0.35, 0.0, False)):
        board = FakeBoard({(Command.INFO, 1): "late"}, late=late, clock=clock)
        acc = Accelerator(board, **FAST, retries=0)
        with pytest.raises(LinkTimeout, match=r"INFO: no complete reply within 0.2 s \(1 attempts\)"):
            acc.request(Command.INFO)
        (command, sent) = board.writes[-1]
        assert command == Command.INFO and clock.monotonic() - sent == pytest.approx(0.23, abs=0.01)
        clock.sleep(wait)
        assert acc.counters() == _counters(board)
        assert acc.stats.stray_bytes == 4 + 4 * len(INFO_FIELDS) + 2
        # Each case is the one it says: the reply came before COUNTERS went out, or after.
        (command, counters_sent) = board.writes[-1]
        assert command == Command.COUNTERS and (counters_sent > sent + late) == drained


def test_a_hopeless_line_ends_in_a_clear_error_in_bounded_time(clock):
    start = clock.monotonic()
    board = FakeBoard({(Command.COUNTERS, k): "lost" for k in range(10)}, clock=clock)
    acc = Accelerator(board, **FAST, retries=3)
    with pytest.raises(LinkUnreliable, match=r"COUNTERS: no good exchange in 4 attempts \(reply CRC mismatch x4\)"):
        acc.counters()
    board.script = {(Command.COUNTERS, k): "silent" for k in range(10)}
    board.seen = {}
    with pytest.raises(LinkTimeout, match=r"COUNTERS: no complete reply within 0.2 s \(4 attempts\)"):
        acc.counters()
    board.script = {(Command.COUNTERS, k): "reject" for k in range(10)}
    board.seen = {}
    with pytest.raises(LinkError, match="COUNTERS: the accelerator replied CRC mismatch in the request to all 4"):
        acc.counters()
    board.script = {(Command.KV_QUANT_READ, k): "lost" for k in range(10)}
    with pytest.raises(LinkUnreliable, match=r"quantize_kv: no good exchange in 4 runs of the job"):
        _quantize(board, retries=3)
    assert clock.monotonic() - start < 10           # the driver's own waiting (1.4 s of it here)


# ---- the simulated board on a noisy line

#: The line's faults: to the board each data bit flipped with probability 0.4 % and each
#: byte dropped with 0.6 % (3.7 % of the bytes damaged: a 30-byte frame gets through 32 %
#: of the time, a 6-byte one 80 %); back to the host about 90 times less often (0.04 % of
#: the bytes), so that a 1 KB KV output reply (which cannot be read again) still gets
#: through 65 % of the time.
NOISE = LineFaults(ber=0.004, drop=0.006, host_ber=0.00005, host_drop=0.00002, seed=2)
#: The driver on that line: payloads of 24 bytes at most, bounded retries (a job's 40 bytes
#: of activations are one frame, which gets through 17 % of the time), timings for the
#: simulation (about 16 times slower than a 12 MHz board: the 2 ms byte timeout takes 35 ms)
#: with room for a busy machine: the line's faults are drawn per byte from a seed, so a run
#: is the same every time unless a wait of the driver runs out where it should not (a
#: reply slower than ``timeout``, a pause of ``settle`` inside a reply, a byte timeout
#: longer than ``settle``), which changes the bytes that follow and so every later fault.
#: So ``settle`` is 7 of those 35 ms byte timeouts and ``timeout`` 4 settles: margins for a
#: simulation slowed down several times by other work on the machine.
DRIVER = {"timeout": 1.0, "settle": 0.25, "retries": 30, "max_frame": 24}


def _session(path: str) -> tuple[list[str], dict]:
    problems = []
    with Accelerator(path, **DRIVER) as acc:
        gen = torch.Generator().manual_seed(11)
        bw = gb.quantize(torch.randn(3, 32, generator=gen), "int4", group_size=32, scale_bits=8)
        acc.load_weights(bw)
        a_q = torch.randint(-128, 128, (2, 32), generator=gen, dtype=torch.int8)
        if (problem := first_mismatch(acc.gemm(a_q), gb.matmul_int(a_q, bw), a_q, bw)) is not None:
            problems.append(f"gemm: {problem}")
        kv = acc.kv_config
        x = corner_tokens(kv, kv.group_tokens, seed=3)
        want = pack_tokens(x, "key", f=kv.f, **kv.golden_options("ternary"))
        if (problem := first_difference(acc.quantize_kv(x, "key"), want, x)) is not None:
            problems.append(f"quantize_kv: {problem}")
        tokens, positions = acc.dequantize_kv(want)
        if (problem := check_tokens_against_golden(kv, want, tokens, positions)) is not None:
            problems.append(f"dequantize_kv: {problem}")
        return problems, acc.stats.as_dict()


def test_gemm_and_kv_round_trip_stay_bit_exact_on_a_noisy_line(record_property):
    limit = 600.0                    # only a hang takes this long (the session: 1-2 minutes)
    # The session runs in a thread so that a hang fails the test: leaving the board's
    # block stops the bridge, which ends any read the driver is in.
    with ThreadPoolExecutor(1) as pool, SimulatedBoard(FAULT_BOARD, faults=NOISE) as board:
        start = time.monotonic()
        try:
            problems, stats = pool.submit(_session, board.path).result(timeout=limit)
        except LinkUnreliable as error:
            pytest.fail(f"the driver gave up (a clear error, but this rate should heal): {error}")
        elapsed = time.monotonic() - start
    counts = board.fault_counts
    share = stats["retried"] / stats["requests"]
    summary = (f"{stats['requests']} requests in {stats['frames']} frames, {stats['retried']} retried "
               f"({share:.0%}), {stats['rejected']} rejected, {stats['lost']} replies lost, {stats['silent']} "
               f"silent, {stats['resolved']} resolved, {stats['job_restarts']} KV job restarts, "
               f"{elapsed:.1f} s; line: {counts}")
    print(summary)
    record_property("link_faults", summary)
    assert not problems, problems
    assert counts["to_board"]["corrupted"] + counts["to_board"]["dropped"] > 0
    assert stats["retried"] > 0 and share > 0.5, summary


def test_a_hopeless_line_on_the_simulated_board_ends_in_a_clear_error():
    with SimulatedBoard(FAULT_BOARD, faults=LineFaults(ber=0.05, drop=0.05, seed=1)) as board:
        start = time.monotonic()     # the driver's time, not the board's start on a busy machine
        with pytest.raises((LinkUnreliable, LinkTimeout, LinkError), match="INFO: ") as error:
            Accelerator(board.path, **{**DRIVER, "retries": 3})
        elapsed = time.monotonic() - start
    print(error.value, f"({elapsed:.1f} s)")
    assert elapsed < 20
    assert board.fault_counts["to_board"]["bytes"] == 4 * 6          # 4 attempts of a 6-byte frame
