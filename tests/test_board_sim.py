"""End to end on the simulated board: host driver -> pseudo-terminal -> UART pins of the
Verilated accelerator -> engines -> UART -> driver, bit-exact against golden."""

import os
import signal

import pytest
import torch

import golden.bitmod as gb
from arch.accelerator_config import AcceleratorConfig
from arch.bitmod import FAMILY_IDS
from arch.link import INFO_FIELDS, Command, Status, encode_request
from golden.vidkv_stream import pack_tokens
from host.driver import Accelerator, LinkError, LinkTimeout
from host.kv_beats import corner_tokens
from host.pe_array_jobs import first_mismatch, random_fp16
from sim.board_sim import SMALL_BOARD, SimulatedBoard
from sim.kv_dequant import check_tokens_against_golden
from sim.kv_quant import first_difference


@pytest.fixture(scope="module")
def board():
    with SimulatedBoard(SMALL_BOARD) as running:
        yield running


@pytest.fixture(scope="module")
def acc(board):
    with Accelerator(board.path, timeout=60) as connection:
        yield connection


def test_info_describes_the_build(acc, board):
    assert acc.info == AcceleratorConfig.from_params(board.params).info()
    assert set(acc.pe_config.families) == {"int4", "fp4"} and acc.kv_config.d == 32


@pytest.mark.parametrize("family", ["int4", "fp4"])
def test_gemm_and_gemv_are_bit_exact(acc, family):
    gen = torch.Generator().manual_seed(len(family))
    w = torch.randn(3, 96, generator=gen)                    # N = 3, K = 3 groups
    bw = gb.quantize(w, family, group_size=32, scale_bits=8)
    acc.load_weights(bw)
    a_q = torch.randint(-128, 128, (3, 96), generator=gen, dtype=torch.int8)   # 3 jobs of 1 row
    a_q[0] = 127
    a_q[1] = -128
    problem = first_mismatch(acc.gemm(a_q), gb.matmul_int(a_q, bw), a_q, bw)
    assert problem is None, problem
    problem = first_mismatch(acc.gemv(a_q[2])[None], gb.matmul_int(a_q[2:], bw), a_q[2:], bw)
    assert problem is None, problem
    assert acc.run_cycles > 0


def test_fp16_gemm_and_gemv_are_bit_exact(acc):
    gen = torch.Generator().manual_seed(7)
    bw = gb.quantize(torch.randn(3, 96, generator=gen), "fp4", group_size=32, scale_bits=8)
    acc.load_weights(bw)
    a = random_fp16(3, 96, gen)                             # subnormal, spread, heavy and Gaussian tokens
    a[0, :2] = torch.tensor([65504.0, -0.0])
    assert torch.equal(acc.gemm(a).view(torch.int32), gb.matmul_fp16(a, bw).view(torch.int32))
    assert torch.equal(acc.gemv(a[2]).view(torch.int32), gb.matmul_fp16(a[2:], bw)[0].view(torch.int32))


def test_an_inf_activation_that_reaches_the_board_is_an_error(acc, monkeypatch):
    import host.pe_array_jobs

    gen = torch.Generator().manual_seed(8)
    acc.load_weights(gb.quantize(torch.randn(2, 32, generator=gen), "int4", group_size=32, scale_bits=8))
    a = torch.ones((2, 32), dtype=torch.float16)
    a[1, 3] = float("inf")
    monkeypatch.setattr(host.pe_array_jobs, "check_fp16", lambda a: None)    # the host check skipped
    with pytest.raises(ValueError, match="flagged token 1's job invalid"):
        acc.gemm(a)


@pytest.mark.parametrize(("kind", "value_format", "stp"), [("key", "ternary", False), ("value", "ternary", False),
                                                           ("value", "2bit", False), ("value", "ternary", True)])
def test_kv_quantize_then_dequantize_is_bit_exact(acc, kind, value_format, stp):
    config = acc.kv_config
    x = corner_tokens(config, 48, seed=len(kind) + len(value_format))
    salient = (torch.arange(48) % 5 == 0) if stp else None
    want = pack_tokens(x, kind, f=config.f, stp=stp, salient=salient, **config.golden_options(value_format))
    got = acc.quantize_kv(x, kind, salient=salient, value_format=value_format)
    assert first_difference(got, want, x) is None, first_difference(got, want, x)
    tokens, positions = acc.dequantize_kv(want)
    problem = check_tokens_against_golden(config, want, tokens, positions)
    assert problem is None, problem


def _bad_crc(command: int, payload: bytes = b"") -> bytes:
    frame = bytearray(encode_request(command, payload))
    frame[-1] ^= 0x40
    return bytes(frame)


def test_bad_requests_get_error_replies_and_the_accelerator_keeps_working(acc):
    info = acc.request(Command.INFO)
    cases = [
        ("corrupted CRC", _bad_crc(Command.INFO), Status.CRC),
        ("unknown command", encode_request(0x7E), Status.COMMAND),
        ("payload on INFO", encode_request(Command.INFO, b"\x00"), Status.LENGTH),
        ("too long for the build", encode_request(Command.KV_QUANT, bytes(acc.info["max_payload"] + 1)),
         Status.LENGTH),
        ("RUN before LOAD_ACT", encode_request(Command.RUN), Status.ORDER),
        ("family not built", encode_request(Command.LOAD_ACT, bytes([FAMILY_IDS["int8"], 0, 1, 0, 1, 0, 0, 0])
                                            + bytes(32)), Status.ARGUMENT),
        ("activations of the wrong length", encode_request(Command.LOAD_ACT, bytes([FAMILY_IDS["int4"], 0, 1, 0,
                                                                                   1, 0, 0, 0]) + bytes(31)),
         Status.LENGTH),
        ("weights not from where the last load ended", encode_request(Command.LOAD_WEIGHTS, (7).to_bytes(4, "little")
                                                                      + bytes(4)), Status.ORDER),
        ("KV_MODE with a byte missing", encode_request(Command.KV_MODE, b"\x00\x00"), Status.LENGTH),
        ("a half-word of KV beats", encode_request(Command.KV_DEQUANT, bytes(7)), Status.LENGTH),
    ]
    for name, frame, status in cases:
        got, _ = acc.exchange(frame)
        assert got == status, f"{name}: status {got}, expected {status}"
        assert acc.request(Command.INFO) == info, f"after {name}"


def test_a_truncated_request_is_answered_after_the_byte_timeout(acc):
    frame = encode_request(Command.LOAD_WEIGHTS, bytes(12))
    status, _ = acc.exchange(frame[:9])
    assert status == Status.TRUNCATED
    counters = acc.counters()
    assert counters["frames_rejected"] >= 1 and counters["frames_ok"] >= 1


def test_a_silent_board_raises_a_host_timeout_and_its_late_reply_is_drained(board, acc):
    os.kill(board.process.pid, signal.SIGSTOP)
    saved = acc.timeout, acc.retries
    try:
        acc.timeout, acc.retries = 0.5, 1
        with pytest.raises(LinkTimeout, match=r"no complete reply within 0.5 s \(2 attempts\)"):
            acc.request(Command.INFO)
    finally:
        acc.timeout, acc.retries = saved
        os.kill(board.process.pid, signal.SIGCONT)
    # The board, running again, still answers an INFO it was sent. The driver drains that
    # late reply before its next request instead of taking it for COUNTERS' reply.
    before = acc.stats.stray_bytes
    counters = acc.counters()
    assert counters["frames_ok"] >= 1
    assert acc.stats.stray_bytes - before >= 4 + 4 * len(INFO_FIELDS) + 2
    assert acc.request(Command.INFO)


def test_driver_refuses_what_the_build_cannot_do(acc):
    bw = gb.quantize(torch.randn(2, 64), "int8", group_size=32, scale_bits=8)
    with pytest.raises(ValueError, match="not built into this array"):
        acc.load_weights(bw)
    big = gb.quantize(torch.randn(2, 256), "int4", group_size=32, scale_bits=8)
    with pytest.raises(ValueError, match="max_k"):
        acc.load_weights(big)
    with pytest.raises(LinkError, match="out of order"):
        acc.request(Command.RUN)
