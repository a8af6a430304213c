"""The PE array's FP16 activations (activations=fp16 or both) under Amaranth's simulator,
bit for bit against golden.bitmod.matmul_fp16_int, with random stalls on every stream."""

import pytest
import torch
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from arch.bitmod import FAMILIES
from arch.fp16 import DEFAULT_ALIGN_BITS
from arch.pe_array_config import PeArrayConfig
from golden.bitmod import fp16_output, matmul_fp16, matmul_fp16_int, matmul_int, quantize
from golden.fp16 import align_tokens
from hdl.fp16_align import aligned_lane, staged_lane_value
from hdl.pe_array import PeArray
from host.pe_array_jobs import assemble, assemble_tags, first_mismatch, plan_jobs, random_case, random_fp16
from sim.pe_array_amaranth import simulate_jobs


class _Aligner(Elaboratable):
    """``lanes`` of the aligner's two stages, combinational, each lane with its own ``er``."""

    def __init__(self, lanes, align_bits):
        self.lanes, self.align_bits, self.width = lanes, align_bits, 12 + align_bits
        self.value, self.er, self.int8 = Signal(16 * lanes), Signal(5 * lanes), Signal()
        self.aligned = Signal(self.width * lanes)

    def elaborate(self, platform):
        m = Module()
        staged = [staged_lane_value(self.value[16 * i:16 * (i + 1)], self.er[5 * i:5 * (i + 1)], self.align_bits,
                                    self.int8) for i in range(self.lanes)]
        m.d.comb += self.aligned.eq(Cat(aligned_lane(lane, self.align_bits) for lane in staged))
        return m


SMALL = {"rows": 2, "cols": 2, "lanes": 4, "group_size": 32, "scale_bits": 4, "max_k": 128}


def _weights(config, name, n, k, generator):
    w = torch.randn((n, k), generator=generator, dtype=torch.float64)
    w = w * torch.rand((n, k), generator=generator, dtype=torch.float64) ** -0.5
    return quantize(w.to(torch.float32), name, config.group_size, config.scale_bits)


def run(config, a, bw, *, stall=0.3, seed=1, jobs=None):
    jobs = plan_jobs(config, a, bw) if jobs is None else jobs
    result = simulate_jobs(PeArray(config), jobs, stall=stall, seed=seed)
    acc = assemble(config, a.shape[0], bw.shape[0], jobs, result.beats)
    er, invalid = assemble_tags(config, a.shape[0], jobs, result.beats)
    return acc, er, invalid


def check_fp16(config, a, bw, seed):
    acc, er, invalid = run(config, a, bw, seed=seed)
    want_acc, want_er = matmul_fp16_int(a, bw, config.align_bits)
    mismatch = first_mismatch(acc, want_acc, a, bw)
    assert mismatch is None, f"{mismatch} (seed {seed})"
    assert torch.equal(er, want_er) and not invalid.any()
    y = fp16_output(acc, er, bw.cs, config.align_bits)
    assert torch.equal(y.view(torch.int32), matmul_fp16(a, bw, config.align_bits).view(torch.int32))


@pytest.mark.parametrize("name", FAMILIES)
def test_fp16_every_family_with_stalls(name, seed):
    config = PeArrayConfig(**SMALL, activations="fp16")
    gen = torch.Generator().manual_seed(seed)
    m, k = 5, 3 * config.group_size
    check_fp16(config, random_fp16(m, k, gen), _weights(config, name, 5, k, gen), seed)


@pytest.mark.parametrize("kind", ["subnormal", "spread", "heavy"])
@pytest.mark.parametrize("align_bits", [0, 8])
def test_fp16_delicate_inputs_and_align_bits(kind, align_bits, seed):
    config = PeArrayConfig(**SMALL, activations="fp16", align_bits=align_bits)
    gen = torch.Generator().manual_seed(seed)
    a = random_fp16(3, 2 * config.group_size, gen, kind)
    a[0, :3] = torch.tensor([65504.0, -65504.0, -0.0])             # the largest normals, a signed zero
    check_fp16(config, a, _weights(config, "fp4", 3, 2 * config.group_size, gen), seed)


def test_fp16_tall_array_row_groups(seed):
    config = PeArrayConfig(**{**SMALL, "rows": 3}, activations="fp16")
    gen = torch.Generator().manual_seed(seed)
    check_fp16(config, random_fp16(7, 64, gen), _weights(config, "int8", 3, 64, gen), seed)


def test_both_runs_int8_and_fp16_jobs_back_to_back(seed):
    config = PeArrayConfig(**SMALL, activations="both")
    gen = torch.Generator().manual_seed(seed)
    a_q, bw = random_case(config, "fp4", gen)
    a = random_fp16(a_q.shape[0], a_q.shape[1], gen)
    jobs_int8, jobs_fp16 = plan_jobs(config, a_q, bw), plan_jobs(config, a, bw)
    result = simulate_jobs(PeArray(config), jobs_int8 + jobs_fp16 + jobs_int8, stall=0.3, seed=seed)
    split = len(jobs_int8)
    for part in (result.beats[:split], result.beats[2 * split:]):
        acc = assemble(config, a_q.shape[0], bw.shape[0], jobs_int8, part)
        assert first_mismatch(acc, matmul_int(a_q, bw), a_q, bw) is None
        er, invalid = assemble_tags(config, a_q.shape[0], jobs_int8, part)
        assert not er.any() and not invalid.any()             # an int8 job's beats carry zeros
    fp16_beats = result.beats[split:2 * split]
    acc = assemble(config, a.shape[0], bw.shape[0], jobs_fp16, fp16_beats)
    want_acc, want_er = matmul_fp16_int(a, bw, DEFAULT_ALIGN_BITS)
    assert first_mismatch(acc, want_acc, a, bw) is None
    assert torch.equal(assemble_tags(config, a.shape[0], jobs_fp16, fp16_beats)[0], want_er)


def test_an_inf_or_nan_lane_sets_the_jobs_sticky_invalid_flag():
    config = PeArrayConfig(**SMALL, activations="fp16")
    gen = torch.Generator().manual_seed(3)
    a = random_fp16(4, 32, gen, "gaussian")
    bw = _weights(config, "int4", 2, 32, gen)
    jobs = plan_jobs(config, a, bw)                           # two jobs of two tokens
    bad = jobs[0].act[3] & ~0xFFFF | 0x7E00                   # token 0's channel 12 (beat 3, lane 0): NaN
    jobs[0].act[3] = bad
    result = simulate_jobs(PeArray(config), jobs, stall=0.2, seed=3)
    _, invalid = assemble_tags(config, 4, jobs, result.beats)
    assert invalid.tolist() == [True, True, False, False]     # the whole first job; the next one clean


@pytest.mark.parametrize("params, match", [
    ({"activations": "fp8"}, "activations must be one of int8, fp16, both, not 'fp8'"),
    ({"activations": "fp16", "align_bits": 9}, "align_bits must be an integer in 0..8, not 9"),
    ({"activations": "fp16", "align_bits": 8, "scale_bits": 12, "group_size": 32, "max_k": 1 << 16},
     "beyond float64's exact integers"),
])
def test_bad_fp16_parameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        PeArrayConfig(**{**SMALL, **params})


def test_activations_must_suit_the_build():
    gen = torch.Generator().manual_seed(0)
    int8_build, fp16_build = PeArrayConfig(**SMALL), PeArrayConfig(**SMALL, activations="fp16")
    a_q, bw = random_case(int8_build, "int4", gen)
    with pytest.raises(ValueError, match="a is float16 but the array was built with activations=int8"):
        plan_jobs(int8_build, a_q.to(torch.float16), bw)
    with pytest.raises(ValueError, match="a is int8 but the array was built with activations=fp16"):
        plan_jobs(fp16_build, a_q, bw)
    a = a_q.to(torch.float16)
    a[1, 5] = float("inf")
    with pytest.raises(ValueError, match=r"a\[1, 5\] = inf \(token 1, channel 5\)"):
        plan_jobs(fp16_build, a, bw)


@pytest.mark.parametrize("align_bits", [0, DEFAULT_ALIGN_BITS, 8])
def test_the_aligner_on_every_binary16_value(align_bits, seed):
    # Every finite binary16 value at its own exponent and at er - e = 1..29 for a random
    # eighth of them (every coarse/fine split of the shift, past the width), against
    # golden.fp16.align_tokens on the token [value, 2^(er - 15)]; and an int8 job's byte.
    lanes = 256
    bits = torch.cat([torch.arange(0, 0x7C00), torch.arange(0x8000, 0xFC00)])
    values = bits.to(torch.int16).view(torch.float16)
    e = (bits >> 10 & 31).clamp(min=1)
    gen = torch.Generator().manual_seed(seed)
    pairs = [(bits, e)]
    for shift in range(1, 30):
        pick = (torch.rand(len(bits), generator=gen) < 1 / 8) & (e + shift <= 30)
        pairs.append((bits[pick], e[pick] + shift))
    bits, er = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    anchor = ((er - 15).to(torch.float64).exp2()).to(torch.float16)
    values = bits.to(torch.int16).view(torch.float16)
    want, _ = align_tokens(torch.stack([values, anchor], dim=1), align_bits)
    want = want[:, 0]
    dut = _Aligner(lanes, align_bits)
    sim = Simulator(dut)
    failures = []

    def lanes_of(word, width):
        return [(word >> (width * i)) & ((1 << width) - 1) for i in range(lanes)]

    async def bench(ctx):
        for first in range(0, len(bits), lanes):
            chunk = range(first, min(first + lanes, len(bits)))
            ctx.set(dut.value, sum(int(bits[j]) << (16 * i) for i, j in enumerate(chunk)))
            ctx.set(dut.er, sum(int(er[j]) << (5 * i) for i, j in enumerate(chunk)))
            for int8 in (0, 1) if first % (8 * lanes) == 0 else (0,):
                ctx.set(dut.int8, int8)
                got = lanes_of(ctx.get(dut.aligned), dut.width)
                for i, j in enumerate(chunk):
                    value = got[i] - (got[i] >> (dut.width - 1) << dut.width)
                    expected = (int(bits[j]) & 0xFF) - (int(bits[j]) & 0x80) * 2 if int8 else int(want[j])
                    if value != expected and not failures:
                        failures.append(f"{'int8 ' if int8 else ''}bits {int(bits[j]):#06x}, er {int(er[j])}: "
                                        f"got {value}, expected {expected}")

    sim.add_testbench(bench)
    sim.run()
    assert not failures, failures[0]
