"""KV dequantize engine under Amaranth's simulator: every mode against golden, the b3 unpacker, errors."""

import random

import pytest
import torch
from amaranth import Module, Signal
from amaranth.sim import Simulator

from arch.kv_config import KvConfig
from golden.vidkv_pack import pack_trits
from golden.vidkv_stream import pack_tokens, stream_beats
from hdl.kv_dequant import KvDequantizer, third_scaled
from hdl.kv_units import TritUnpacker
from host.kv_beats import corner_tokens, unpack_output
from sim.kv_amaranth import simulate_kv_dequantizer
from sim.kv_dequant import check_tokens_against_golden


@pytest.mark.parametrize("frac", [0, 4, 8])
def test_scaled_thirds_round_half_up(frac):
    """``(v 2**F + 1) // 3`` for small, random and extreme 17-bit values (2 r of a 16-bit r)."""
    value, out = Signal(17), Signal(26)
    m = Module()
    m.d.comb += out.eq(third_scaled(m, value, frac, "t"))
    rng = random.Random(frac)
    cases = list(range(600)) + [rng.randrange(1 << 17) for _ in range(1500)] + [(1 << 17) - k for k in range(1, 40)]

    async def bench(ctx):
        for v in cases:
            ctx.set(value, v)
            assert ctx.get(out) == ((v << frac) + 1) // 3, v

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("tg", [16, 32, 64])
def test_trit_unpacker_inverts_golden_b3(tg):
    channels = 9
    trits = torch.randint(-1, 2, (tg, channels), generator=torch.Generator().manual_seed(tg))
    data = bytes(pack_trits(trits).tolist())
    data += bytes(-len(data) % 4)
    words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    dut = TritUnpacker(tg)
    got = []

    async def push(ctx):
        for word in words:
            ctx.set(dut.push.valid, 1)
            ctx.set(dut.push.payload, word)
            await ctx.tick().until(dut.push.ready)
        ctx.set(dut.push.valid, 0)

    async def pop(ctx):
        rng = random.Random(tg)
        while len(got) < channels:
            ready = rng.random() < 0.7
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append([(payload >> (2 * i) & 3) - 1 for i in range(tg)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(push)
    sim.add_testbench(pop)
    sim.run()
    assert torch.equal(torch.tensor(got).T, trits)


CONFIGS = [
    KvConfig(d=32, group_tokens=16, lanes=8, ternary_layout="b3"),
    KvConfig(d=32, group_tokens=32, lanes=1, in_bits=8, frac_bits=0),
    KvConfig(d=64, group_tokens=16, lanes=64, ternary_layout="b3", stp=False, frac_bits=8),
    KvConfig(d=32, group_tokens=64, lanes=4, in_bits=12, frac_bits=3),
]
MODES = [("key", "ternary", False, 0.5), ("key", "ternary", False, 0.0), ("key", "ternary", False, 1.0),
         ("value", "ternary", False, 0), ("value", "2bit", False, 0), ("value", "ternary", True, 0)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"d{c.d}-tg{c.group_tokens}-l{c.lanes}-{c.ternary_layout}"
                         f"-F{c.frac_bits}")
@pytest.mark.parametrize("kind,value_format,stp,f", MODES)
def test_engine_matches_golden_dequantization_with_stalls(config, kind, value_format, stp, f):
    if stp and not config.stp:
        pytest.skip("built without the salient path")
    x = corner_tokens(config, 2 * config.group_tokens + 5, seed=config.d + config.lanes)
    salient = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(3)) < 0.4 if stp else None
    packed = pack_tokens(x, kind, f=f, stp=stp, salient=salient, **config.golden_options(value_format))
    tokens, positions, _ = simulate_kv_dequantizer(config, packed, value_format=value_format, stp=stp, stall=0.3,
                                                   seed=config.lanes)
    problem = check_tokens_against_golden(config, packed, tokens, positions)
    assert problem is None, problem
    if not stp:                               # one path: tokens come out in original order
        assert torch.equal(positions, torch.arange(positions.shape[0]))


def test_an_unexpected_tag_sets_error_and_the_engine_goes_on():
    config = KvConfig(d=32, group_tokens=16, lanes=8)
    dut = KvDequantizer(config)
    x = torch.randint(-100, 100, (16, 32), generator=torch.Generator().manual_seed(1))
    packed = pack_tokens(x, "value", **config.golden_options("2bit"))
    beats = [(7, 0)] + stream_beats(packed)              # a beat with an undefined tag, then a good group
    out = []

    async def send(ctx):
        ctx.set(dut.value_2bit, 1)
        for tag, data in beats:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), data | tag << 32)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def receive(ctx):
        ctx.set(dut.o.ready, 1)
        while len(out) < 16 * config.blocks:
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            if valid:
                out.append(payload)
        assert ctx.get(dut.error) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    tokens, positions = unpack_output(config, out)
    assert check_tokens_against_golden(config, packed, tokens, positions) is None


FFT_CONFIGS = [
    KvConfig(d=32, group_tokens=16, lanes=8, f=0.5, fft=True, fft_butterflies=2, stp=False),
    KvConfig(d=32, group_tokens=16, lanes=4, f=0.0, fft=True, fft_butterflies=4, in_bits=12, frac_bits=3, stp=False),
    KvConfig(d=32, group_tokens=16, lanes=32, f=0.75, fft=True, fft_butterflies=4, frac_bits=8),
    KvConfig(d=32, group_tokens=32, lanes=1, f=0.5, fft=True, fft_butterflies=1, in_bits=8, frac_bits=0, stp=False),
]


# Keys on every build; values pass the FFT stages untransformed: one build checks that.
FFT_CASES = [(config, "key") for config in FFT_CONFIGS] + [(FFT_CONFIGS[0], "value")]


@pytest.mark.parametrize("config,kind", FFT_CASES, ids=lambda case: case if isinstance(case, str) else
                         f"d{case.d}-tg{case.group_tokens}-l{case.lanes}-f{case.f}-p{case.fft_butterflies}")
def test_fft_engine_matches_golden_dequantization_with_stalls(config, kind):
    x = corner_tokens(config, 3 * config.group_tokens + 5, seed=config.d + config.lanes + 2)
    packed = pack_tokens(x, kind, f=config.f, **config.golden_options())
    tokens, positions, _ = simulate_kv_dequantizer(config, packed, stall=0.3, seed=config.lanes)
    problem = check_tokens_against_golden(config, packed, tokens, positions)
    assert problem is None, problem
    assert torch.equal(positions, torch.arange(positions.shape[0]))
