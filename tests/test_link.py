"""The host link's blocks under Amaranth's simulator: UART, frame receiver and sender, Widen / Narrow,
each against arch/link.py's reference encoder."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from arch.link import (
    REQUEST_SYNC,
    FrameError,
    Status,
    crc16,
    decode_reply,
    encode_reply,
    encode_request,
    pack_words,
    unpack_words,
)
from hdl.frames import FrameReceiver, FrameSender, Narrow, Widen
from hdl.uart import UartRx, UartTx, check_divisor


def test_crc_check_value_and_round_trip():
    assert crc16(b"123456789") == 0x29B1          # CRC-16/CCITT-FALSE's check value
    frame = encode_reply(Status.ORDER, b"\x01\x02")
    assert decode_reply(frame) == (Status.ORDER, b"\x01\x02")
    with pytest.raises(FrameError, match="CRC"):
        decode_reply(frame[:-1] + bytes([frame[-1] ^ 1]))
    with pytest.raises(FrameError, match="header says"):
        decode_reply(frame[:-3] + frame[-2:])
    assert unpack_words(pack_words([5, (1 << 35) - 1], 35), 35) == [5, (1 << 35) - 1]
    with pytest.raises(ValueError, match="35-bit word"):
        pack_words([1 << 35], 35)


def test_divisor_is_checked():
    with pytest.raises(ValueError, match=r"divisor .* not 3"):
        check_divisor(3)


async def _feed(ctx, port, items):
    """Offer each item on stream ``port`` until it is taken; valid falls after the last."""
    for item in items:
        ctx.set(port.valid, 1)
        ctx.set(port.payload, item)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


def _run(dut, *benches, deadline=200_000):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run_until(deadline * 1e-8)


@pytest.mark.parametrize("divisor", [4, 5, 13])
def test_uart_loopback(divisor):
    """Random bytes through UartTx -> line -> UartRx with a slow consumer: all arrive, in order."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(divisor)
    sent = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]
    got, errors = [], []

    async def producer(ctx):
        for byte in sent:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
            for _ in range(rng.randrange(3) * divisor):
                await ctx.tick()

    async def consumer(ctx):
        while len(got) < len(sent):
            ready = rng.random() < 0.3           # a byte waits a few cycles, never a whole byte time
            ctx.set(rx.o.ready, ready)
            *_, valid, payload, framing, overrun = await ctx.tick().sample(
                rx.o.valid, rx.o.payload, rx.framing_error, rx.overrun)
            if valid and ready:
                got.append(payload)
            if framing or overrun:
                errors.append((framing, overrun))

    _run(m, producer, consumer)
    assert got == sent and not errors


def test_uart_rejects_a_low_stop_bit():
    divisor = 4
    rx = UartRx(divisor)
    flags = []

    async def line(ctx):
        ctx.set(rx.o.ready, 1)
        for bit in [1] * 4 + [0] + [1, 0] * 4 + [0] + [1] * 20:     # start, 0x55, stop bit LOW
            ctx.set(rx.rx, bit)
            for _ in range(divisor):
                await ctx.tick()

    async def watch(ctx):
        async for *_, framing, valid in ctx.tick().sample(rx.framing_error, rx.o.valid):
            flags.append((framing, valid))

    _run(rx, line, watch, deadline=200)
    assert any(f for f, _ in flags) and not any(v for _, v in flags)


def receive(frames: list[bytes], *, max_payload=64, timeout=30, gaps_after=(), expect=None):
    """Feed ``frames`` (bytes, with a pause of ``timeout * 2`` cycles after the frames whose
    index is in ``gaps_after``) to a FrameReceiver; return [(command, length, status, payload)]."""
    dut = FrameReceiver(max_payload, timeout)
    out = []
    wanted = len(frames) if expect is None else expect

    async def feed(ctx):
        for k, frame in enumerate(frames):
            await _feed(ctx, dut.i, frame)
            await ctx.tick().repeat(timeout * 2 if k in gaps_after else 3)
            while ctx.get(dut.frame.valid):       # one frame at a time: wait until it is taken
                await ctx.tick()

    async def take(ctx):
        rng = random.Random(1)
        while len(out) < wanted:
            await ctx.tick().until(dut.frame.valid)
            command, length, status = (ctx.get(dut.frame.payload.command), ctx.get(dut.frame.payload.length),
                                       ctx.get(dut.frame.payload.status))
            payload = []
            while status == Status.OK and len(payload) < length:
                ready = rng.random() < 0.6
                ctx.set(dut.payload.ready, ready)
                *_, valid, byte = await ctx.tick().sample(dut.payload.valid, dut.payload.payload)
                if valid and ready:
                    payload.append(byte)
            ctx.set(dut.payload.ready, 0)
            ctx.set(dut.frame.ready, 1)
            await ctx.tick()
            ctx.set(dut.frame.ready, 0)
            out.append((command, length, status, bytes(payload)))

    _run(dut, feed, take)
    return out


def test_receiver_accepts_good_frames_and_ignores_noise():
    frames = [b"\x00\x13" + encode_request(0x21, bytes(range(40))), encode_request(0x01),
              encode_request(0x10, b"\xff" * 64)]
    assert receive(frames) == [(0x21, 40, Status.OK, bytes(range(40))), (0x01, 0, Status.OK, b""),
                               (0x10, 64, Status.OK, b"\xff" * 64)]


def test_receiver_reports_crc_truncation_and_length():
    good = encode_request(0x11, b"abcdef")
    corrupt = good[:6] + bytes([good[6] ^ 0x10]) + good[7:]
    too_long = encode_request(0x11, bytes(65))
    # A too-long frame is swallowed up to a pause: without one the next frame goes too.
    assert [s for _, _, s, _ in receive([too_long, good], expect=1)] == [Status.LENGTH]
    got = receive([corrupt, good[:5], too_long, good], gaps_after=(1, 2))
    assert [(c, s) for c, _, s, _ in got] == [(0x11, Status.CRC), (0x11, Status.TRUNCATED),
                                               (0x11, Status.LENGTH), (0x11, Status.OK)]
    assert got[-1][3] == b"abcdef"


def send(replies: list[tuple[int, bytes]]) -> bytes:
    """Each (status, payload) through FrameSender with a stalling consumer; the bytes out."""
    dut = FrameSender()
    out = bytearray()
    total = sum(len(encode_reply(s, p)) for s, p in replies)

    async def produce(ctx):
        for status, payload in replies:
            ctx.set(dut.header.valid, 1)
            ctx.set(dut.header.payload.status, status)
            ctx.set(dut.header.payload.length, len(payload))
            await ctx.tick().until(dut.header.ready)
            ctx.set(dut.header.valid, 0)
            await _feed(ctx, dut.i, payload)

    async def consume(ctx):
        rng = random.Random(2)
        while len(out) < total:
            ready = rng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            *_, valid, byte = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                out.append(byte)

    _run(dut, produce, consume)
    return bytes(out)


def test_sender_matches_the_reference_encoder():
    replies = [(Status.OK, bytes(range(17))), (Status.CRC, b""), (Status.OK, b"\x00" * 3)]
    assert send(replies) == b"".join(encode_reply(s, p) for s, p in replies)


@pytest.mark.parametrize("bits", [8, 13, 35, 129])
def test_widen_then_narrow_round_trips_words(bits):
    m = Module()
    m.submodules.narrow = narrow = Narrow(bits)
    m.submodules.widen = widen = Widen(bits)
    m.d.comb += [widen.i.valid.eq(narrow.o.valid), widen.i.payload.eq(narrow.o.payload),
                 narrow.o.ready.eq(widen.i.ready)]
    rng = random.Random(bits)
    words = [rng.randrange(1 << bits) for _ in range(20)] + [0, (1 << bits) - 1]
    got = []
    seen_bytes = []

    async def produce(ctx):
        await _feed(ctx, narrow.i, words)

    async def consume(ctx):
        while len(got) < len(words):
            ready = rng.random() < 0.5
            ctx.set(widen.o.ready, ready)
            *_, valid, word, byte_valid, byte_ready, byte = await ctx.tick().sample(
                widen.o.valid, widen.o.payload, narrow.o.valid, narrow.o.ready, narrow.o.payload)
            if byte_valid and byte_ready:
                seen_bytes.append(byte)
            if valid and ready:
                got.append(word)

    _run(m, produce, consume)
    assert got == words
    assert bytes(seen_bytes) == pack_words(words, bits)      # the link's byte order is golden's


def test_request_sync_is_not_a_reply_sync():
    assert encode_request(1)[0] == REQUEST_SYNC != encode_reply(0)[0]


def test_host_link_doc_matches_the_protocol():
    """docs/host_link.md's status and command tables state arch/link.py's codes."""
    from pathlib import Path

    from arch.link import STATUS_TEXT, Command

    doc = (Path(__file__).parent.parent / "docs" / "host_link.md").read_text()

    def rows(header):
        table = doc[doc.index(header):].split("\n\n")[0].splitlines()[2:]
        return [[cell.strip() for cell in row.strip("|").split("|")] for row in table]

    assert {int(code): name for code, name, _ in rows("| status | name |")} == \
        {code: name for name, code in vars(Status).items() if name.isupper()}
    assert set(STATUS_TEXT) == {int(row[0]) for row in rows("| status | name |")}
    commands = {name: code for name, code in vars(Command).items() if name.isupper() and name != "ALL"}
    assert {row[1]: int(row[0], 16) for row in rows("| code | command |")} == commands
    assert "0x29B1" in doc and "0xA5" in doc and "0x5A" in doc


@pytest.mark.parametrize("name", ["LOAD_WEIGHTS_LAYOUT", "LOAD_ACT_LAYOUT", "KV_MODE_LAYOUT"])
def test_header_table_host_packer_and_rtl_layout_agree(name):
    """One table per request header: the host packer round-trips it, and the RTL's layout
    (gateware.link_layouts) puts every field at the table's bit offset and width."""
    import arch.link
    from gateware.link_layouts import header_layout

    table = getattr(arch.link, name)
    rng = random.Random(name)
    for _ in range(20):
        values = {field: rng.randrange(1 << width) for field, _, width in table.fields}
        packed = table.pack(**values)
        assert len(packed) == table.size and table.unpack(packed) == values
    ones = table.pack(**{field: (1 << width) - 1 for field, _, width in table.fields})
    assert int.from_bytes(ones, "little") == sum(((1 << w) - 1) << o for _, o, w in table.fields)

    layout = header_layout(table)
    assert layout.size == 8 * table.size
    members = {field: (at.offset, at.width) for field, at in layout}
    assert {field: (offset, width) for field, offset, width in table.fields} == \
        {field: at for field, at in members.items() if not field.startswith("reserved_")}
    first = table.fields[0][0]
    with pytest.raises(ValueError, match="holds"):
        table.pack(**{field: 1 << width if field == first else 0 for field, _, width in table.fields})
    with pytest.raises(ValueError, match="needs the fields"):
        table.pack()


def test_load_act_and_kv_mode_headers_keep_their_bytes():
    """The tables give the bytes docs/host_link.md states."""
    from arch.link import KV_MODE_LAYOUT, LOAD_ACT_LAYOUT, LOAD_WEIGHTS_LAYOUT

    assert LOAD_ACT_LAYOUT.pack(family=3, fp16=0, groups=0x0102, col_tiles=0x0304) == bytes([3, 0, 2, 1, 4, 3, 0, 0])
    assert LOAD_ACT_LAYOUT.pack(family=3, fp16=1, groups=0x0102, col_tiles=0x0304) == bytes([3, 1, 2, 1, 4, 3, 0, 0])
    assert KV_MODE_LAYOUT.pack(kind=True, value_2bit=False, stp=True) == bytes([1, 0, 1])
    assert LOAD_WEIGHTS_LAYOUT.pack(first=7) == (7).to_bytes(4, "little")
