"""The FFT core under Amaranth's simulator, bit for bit against golden/vidkv_fft.py."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden.vidkv_fft import irfft_lanes, rfft_lanes
from hdl.kv_fft import FftCore


def run_core(core: FftCore, vectors: list[list[int]], stall: float = 0.0, seed: int = 0):
    """Every vector through ``core``; returns (outputs per vector, cycles from first accept to last beat)."""
    rng = random.Random(seed)
    outputs: list[int] = []
    state = {"start": None, "end": 0, "cycle": 0}

    async def producer(ctx):
        for vector in vectors:
            ctx.set(core.i.valid, 1)
            for k, v in enumerate(vector):
                ctx.set(core.i.payload[k], v)
            await ctx.tick().until(core.i.ready)
            ctx.set(core.i.valid, 0)
            while rng.random() < stall:
                await ctx.tick()

    async def consumer(ctx):
        want = len(vectors) * core.points
        while len(outputs) < want:
            ready = rng.random() >= stall
            ctx.set(core.o.ready, ready)
            *_, i_valid, i_ready, valid, payload = await ctx.tick().sample(
                core.i.valid, core.i.ready, core.o.valid, core.o.payload)
            state["cycle"] += 1
            if i_valid and i_ready and state["start"] is None:
                state["start"] = state["cycle"]
            if valid and ready:
                outputs.extend(int(payload[k]) for k in range(core.out_lanes))
                state["end"] = state["cycle"]

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    n = core.points
    return [outputs[i * n:(i + 1) * n] for i in range(len(vectors))], state["end"] - state["start"]


def corner_vectors(points: int, bits: int, rng: random.Random) -> list[list[int]]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return [[hi] * points, [lo] * points, [0] * points, [lo if k % 2 else hi for k in range(points)],
            [rng.choice((lo, hi)) for _ in range(points)]] + \
           [[rng.randint(lo, hi) for _ in range(points)] for _ in range(4)]


def first_mismatch(got, want, vectors) -> str | None:
    for v, (g, w) in enumerate(zip(got, want, strict=True)):
        for k, (a, b) in enumerate(zip(g, w, strict=True)):
            if a != b:
                return f"vector {v} element {k}: RTL {a}, golden {b}; input {vectors[v]}"
    return None


@pytest.mark.parametrize("points,butterflies,out_lanes", [(2, 1, 1), (8, 1, 2), (8, 4, 8), (16, 2, 4),
                                                          (32, 4, 8), (64, 8, 8), (128, 64, 16)])
def test_forward_core_matches_golden_lanes(points, butterflies, out_lanes):
    rng = random.Random(points * butterflies)
    bits = 16
    vectors = corner_vectors(points, bits, rng)
    core = FftCore(points, bits, butterflies, out_lanes=out_lanes)
    got, _ = run_core(core, vectors, stall=0.3, seed=points)
    want = rfft_lanes(torch.tensor(vectors)).tolist()
    assert first_mismatch(got, want, vectors) is None, first_mismatch(got, want, vectors)


@pytest.mark.parametrize("points,butterflies,out_lanes", [(2, 1, 2), (8, 2, 1), (16, 8, 4), (64, 4, 8)])
def test_inverse_core_matches_golden(points, butterflies, out_lanes):
    rng = random.Random(points + butterflies)
    bits = 16 + (points.bit_length() - 1) + 5          # decoded 1-bit lanes: in_bits + log2 N + F + 1
    vectors = corner_vectors(points, bits, rng)
    core = FftCore(points, bits, butterflies, inverse=True, out_lanes=out_lanes)
    got, _ = run_core(core, vectors, stall=0.3, seed=points + 1)
    want = irfft_lanes(torch.tensor(vectors)).tolist()
    assert first_mismatch(got, want, vectors) is None, first_mismatch(got, want, vectors)


def test_unstalled_core_takes_cycles_per_vector():
    core = FftCore(16, 12, 2, out_lanes=16)
    _, cycles = run_core(core, [[k] * 16 for k in range(5)])
    # Five vectors back to back, the output taken as soon as it is there.
    assert cycles == 5 * core.cycles_per_vector, (cycles, core.cycles_per_vector)


@pytest.mark.parametrize("kwargs,match", [({"butterflies": 3}, "fft_butterflies"), ({"butterflies": 16}, "fft_butterflies"),
                                          ({"points": 12}, "power of two"), ({"out_lanes": 3}, "out_lanes")])
def test_bad_core_parameters_are_errors(kwargs, match):
    args = {"points": 16, "in_width": 16, "butterflies": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        FftCore(args.pop("points"), args.pop("in_width"), args.pop("butterflies"), **args)


def run_spectral(config, groups):
    """Each group [Tg, D] (with its mask) through a SpectralStage fed from a model buffer;
    returns each group's records [(signs, s)] * N read back through the encoder's port."""
    from hdl.kv_spectral import SpectralStage

    blocks, lanes, bits = config.blocks, config.lanes, config.in_bits
    stage = SpectralStage(config, buffer_addr_bits=16)
    points, banks = stage.points, stage.banks
    results = []

    def word(x, token, block):
        return sum((int(x[token, block * lanes + j]) & ((1 << bits) - 1)) << (bits * j) for j in range(lanes))

    async def bench(ctx):
        for x, mask in groups:
            ctx.set(stage.start, 1)
            ctx.set(stage.mask, sum(int(b) << c for c, b in enumerate(mask)))
            await ctx.tick()
            ctx.set(stage.start, 0)
            data = 0
            while True:
                ctx.set(stage.buf_data, data)
                en, addr, busy = ctx.get(stage.buf_en), ctx.get(stage.buf_addr), ctx.get(stage.busy)
                if not busy:
                    break
                await ctx.tick()
                data = word(x, addr >> blocks.bit_length() - 1 if blocks > 1 else addr, addr % blocks) if en else 0
            parity = ctx.get(stage.parity)
            records = []
            for base in range(0, points, banks):
                ctx.set(stage.read_en, 1)
                ctx.set(stage.read_parity, parity)
                ctx.set(stage.read_base, base)
                await ctx.tick()
                ctx.set(stage.read_en, 0)
                records += [(ctx.get(stage.records[k].signs), ctx.get(stage.records[k].s)) for k in range(banks)]
            results.append(records[:points])

    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("d,tg,lanes,f,butterflies", [(32, 16, 8, 0.5, 2), (64, 16, 4, 0.0, 4), (32, 16, 32, 0.75, 1),
                                                      (32, 16, 1, 0.5, 8)])
def test_spectral_stage_records_match_golden(d, tg, lanes, f, butterflies):
    from arch.kv_config import KvConfig
    from golden.vidkv import _encode_1bit, _rank, n_high

    config = KvConfig(d=d, group_tokens=tg, lanes=lanes, f=f, fft=True, fft_butterflies=butterflies, stp=False)
    gen = torch.Generator().manual_seed(d + lanes)
    groups = []
    for pattern in range(3):
        x = torch.randint(-(1 << 15), 1 << 15, (tg, d), generator=gen)
        if pattern == 1:
            x[:, ::3] = (1 << 15) - 1
        mask = _rank(x[None], n_high(d, f))[0]
        groups.append((x, mask.tolist()))
    got = run_spectral(config, groups)
    for (x, mask), records in zip(groups, got, strict=True):
        normal = x[:, [c for c in range(d) if not mask[c]]]
        b, s = _encode_1bit(rfft_lanes(normal))
        want = [(sum(int(b[t, k]) << t for t in range(tg)), int(s[k])) for k in range(normal.shape[1])]
        assert records == want, next((k, r, w) for k, (r, w) in enumerate(zip(records, want, strict=True)) if r != w)
