"""KV quantize engine under Amaranth's simulator: ranking, b3 packing, every mode against golden."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from arch.kv_config import KvConfig
from golden.vidkv import _rank
from golden.vidkv_pack import pack_trits
from golden.vidkv_stream import pack_tokens
from hdl.kv_units import ChannelRanker, TritPacker
from host.kv_beats import corner_tokens
from sim.kv_amaranth import simulate_kv_quantizer
from sim.kv_quant import first_difference


def run_ranker(d, lanes, bits, n_hi, ranges):
    dut = ChannelRanker(d, lanes, bits, n_hi)
    out = {}

    async def bench(ctx):
        for b in range(d // lanes):
            ctx.set(dut.load, 1)
            for i in range(lanes):
                ctx.set(dut.ranges[i], ranges[b * lanes + i])
            await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycles = 1
        while ctx.get(dut.busy):
            await ctx.tick()
            cycles += 1
        out["mask"], out["cycles"] = ctx.get(dut.mask), cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("d,lanes,n_hi", [(32, 8, 8), (32, 1, 16), (64, 64, 48), (128, 8, 64), (32, 4, 31), (32, 32, 1)])
@pytest.mark.parametrize("pattern", ["random", "ties", "all_equal", "two_values"])
def test_ranker_marks_the_widest_channels_lower_index_first(d, lanes, n_hi, pattern):
    rng = random.Random(d * n_hi + lanes)
    bits = 8
    ranges = {
        "random": [rng.randrange(256) for _ in range(d)],
        "ties": [rng.choice([0, 17, 200, 255]) for _ in range(d)],
        "all_equal": [9] * d,
        "two_values": [255 if c % 3 else 0 for c in range(d)],
    }[pattern]
    got = run_ranker(d, lanes, bits, n_hi, ranges)
    x = torch.tensor([[0] * d, ranges])                          # a group whose ranges are `ranges`
    want = _rank(x, n_hi)
    mask = [got["mask"] >> c & 1 for c in range(d)]
    assert mask == want.int().tolist(), f"ranges {ranges}"
    assert got["cycles"] == ChannelRanker.cycles(d, bits) + 1


@pytest.mark.parametrize("tg", [16, 32, 64])
def test_trit_packer_matches_golden_b3(tg):
    channels = 7
    gen = torch.Generator().manual_seed(tg)
    trits = torch.randint(-1, 2, (tg, channels), generator=gen)
    dut = TritPacker(tg)
    words = []

    async def push(ctx):
        for c in range(channels):
            value = sum(int(trits[i, c] + 1) << (2 * i) for i in range(tg))
            ctx.set(dut.push.valid, 1)
            ctx.set(dut.push.payload, value)
            await ctx.tick().until(dut.push.ready)
        ctx.set(dut.push.valid, 0)
        ctx.set(dut.flush, 1)

    async def pop(ctx):
        rng = random.Random(tg)
        while len(words) < -(-tg * channels // 20):
            ready = rng.random() < 0.6
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                words.append(payload)
        await ctx.tick()
        assert ctx.get(dut.empty)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(push)
    sim.add_testbench(pop)
    sim.run()
    data = b"".join(w.to_bytes(4, "little") for w in words)
    want = bytes(pack_trits(trits).tolist())
    assert data[:len(want)] == want and not any(data[len(want):])


CONFIGS = [
    KvConfig(d=32, group_tokens=16, lanes=8, f=0.5, ternary_layout="b3"),
    KvConfig(d=32, group_tokens=32, lanes=1, f=0.25, in_bits=8),
    KvConfig(d=64, group_tokens=16, lanes=64, f=0.75, ternary_layout="b3", stp=False),
    KvConfig(d=32, group_tokens=64, lanes=4, f=1.0, in_bits=12),
    KvConfig(d=32, group_tokens=16, lanes=16, f=0.0, ternary_layout="b3"),
]
MODES = [("key", "ternary", False), ("value", "ternary", False), ("value", "2bit", False), ("value", "ternary", True)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"d{c.d}-tg{c.group_tokens}-l{c.lanes}-f{c.f}-{c.ternary_layout}")
@pytest.mark.parametrize("kind,value_format,stp", MODES)
def test_engine_matches_golden_with_stalls(config, kind, value_format, stp):
    if stp and not config.stp:
        pytest.skip("built without the salient path")
    tokens = 2 * config.group_tokens + 5
    x = corner_tokens(config, tokens, seed=config.d + config.lanes)
    salient = torch.rand(tokens, generator=torch.Generator().manual_seed(3)) < 0.4 if stp else None
    got, _, _ = simulate_kv_quantizer(config, x, kind, value_format=value_format, salient=salient, stall=0.3,
                                      seed=config.lanes)
    want = pack_tokens(x, kind, f=config.f, stp=stp, salient=salient, **config.golden_options(value_format))
    assert want, "the case must complete at least one group"
    assert first_difference(got, want, x) is None, first_difference(got, want, x)


@pytest.mark.parametrize("params,message", [
    ({"d": 48}, "d must be one of"),
    ({"lanes": 3}, "lanes must be a power of two that divides d = 128, not 3"),
    ({"lanes": 256}, "lanes must be a power of two"),
    ({"group_tokens": 8}, "group_tokens must be one of"),
    ({"in_bits": 17}, "in_bits must be an integer in 8..16"),
    ({"f": 0.3}, "f must be one of"),
    ({"ternary_layout": "b4"}, "ternary_layout must be one of"),
    ({"fft": True, "f": 0.25}, r"with fft, N \(the normal channels, d - d\*f for d = 128, f = 0.25\) = 96 must be a power"),
    ({"fft": 1}, "fft must be a bool"),
    ({"fft": True, "fft_butterflies": 3}, "fft_butterflies must be a power of two"),
])
def test_bad_configurations_name_the_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        KvConfig(**params)


FFT_CONFIGS = [
    KvConfig(d=32, group_tokens=16, lanes=8, f=0.5, fft=True, fft_butterflies=2, stp=False),
    KvConfig(d=32, group_tokens=16, lanes=4, f=0.0, fft=True, fft_butterflies=4, in_bits=12, stp=False),
    KvConfig(d=32, group_tokens=16, lanes=32, f=0.75, fft=True, fft_butterflies=4, ternary_layout="b3"),
    KvConfig(d=32, group_tokens=32, lanes=1, f=0.5, fft=True, fft_butterflies=1, in_bits=8, stp=False),
    KvConfig(d=32, group_tokens=16, lanes=8, f=1.0, fft=True, stp=False),
]


# Keys on every build; values pass the FFT stages untransformed: one build checks that.
FFT_CASES = [(config, "key") for config in FFT_CONFIGS] + [(FFT_CONFIGS[0], "value")]


@pytest.mark.parametrize("config,kind", FFT_CASES, ids=lambda case: case if isinstance(case, str) else
                         f"d{case.d}-tg{case.group_tokens}-l{case.lanes}-f{case.f}-p{case.fft_butterflies}")
def test_fft_engine_matches_golden_with_stalls(config, kind):
    tokens = 3 * config.group_tokens + 5
    x = corner_tokens(config, tokens, seed=config.d + config.lanes + 1)
    got, _, _ = simulate_kv_quantizer(config, x, kind, stall=0.3, seed=config.lanes)
    want = pack_tokens(x, kind, f=config.f, **config.golden_options())
    assert first_difference(got, want, x) is None, first_difference(got, want, x)


def test_fft_stage_running_ahead_of_a_stalled_encoder():
    """A fast FFT core (P = N/2) and a slow output: the FFT stage finishes groups while the
    encoder still sends earlier ones, so each group must keep its own bank of lane records."""
    config = KvConfig(d=32, group_tokens=16, lanes=8, f=0.5, fft=True, fft_butterflies=8, stp=False)
    x = corner_tokens(config, 10 * config.group_tokens, seed=4)
    got, _, _ = simulate_kv_quantizer(config, x, "key", stall=0.7, in_stall=0.0, seed=2)
    want = pack_tokens(x, "key", f=config.f, **config.golden_options())
    assert first_difference(got, want, x) is None, first_difference(got, want, x)
