"""The PE array and its parts under Amaranth's simulator, against golden.bitmod.matmul_int."""

import dataclasses
import random
import subprocess
import sys

import pytest
import torch
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from arch.bitmod import FAMILIES, FAMILY_IDS, family, pack_layout
from arch.pe_array_config import ROWS_PER_COPY, PeArrayConfig
from gateware.designs import get_design
from golden.bitmod import BitmodWeights, matmul_int, quantize
from golden.bitmod_pack import pack, weight_beats
from hdl.array_io import array_members
from hdl.parallel_array import MULTIPLIERS, ParallelArray
from hdl.parallel_families import FamilyParallelArray
from hdl.pe import BitSerialPE, DequantUnit, ScaleSerializer
from hdl.pe_array import PeArray
from host.pe_array_jobs import assemble, first_mismatch, plan_jobs, random_case
from sim.pe_array_amaranth import StreamAccountingError, simulate_jobs


def simulate_array(config, a_q, bw, *, stall=0.0, seed=1, build=PeArray, family_id=None):
    """Run the jobs of ``matmul_int(a_q, bw)`` through ``build(config)``; return acc and cycles.

    ``family_id`` replaces the jobs' family input (the streams stay as planned).
    """
    dut = build(config)
    jobs = plan_jobs(config, a_q, bw)
    if family_id is not None:
        jobs = [dataclasses.replace(job, family=family_id) for job in jobs]
    run = simulate_jobs(dut, jobs, stall=stall, seed=seed)
    return assemble(config, a_q.shape[0], bw.shape[0], jobs, run.beats), run.cycles


@pytest.mark.parametrize("name", FAMILIES)
def test_small_array_every_family_with_stalls(name, seed):
    config = PeArrayConfig(rows=2, cols=2, lanes=4, group_size=32, scale_bits=4, max_k=128)
    a_q, bw = random_case(config, name, torch.Generator().manual_seed(seed))
    got, _ = simulate_array(config, a_q, bw, stall=0.3, seed=seed)
    mismatch = first_mismatch(got, matmul_int(a_q, bw), a_q, bw)
    assert mismatch is None, f"{mismatch} (seed {seed})"


def test_family_not_built_reads_the_first_layout_and_gives_zeros():
    # The stream is packed as fp4, the first built family; the family input says int4,
    # which is not built: the array must take the whole stream and return zeros.
    config = PeArrayConfig(rows=2, cols=2, lanes=4, group_size=32, scale_bits=4, families=("fp4", "int8"),
                           max_k=64)
    a_q, bw = random_case(config, "fp4", torch.Generator().manual_seed(5))
    got, _ = simulate_array(config, a_q, bw, stall=0.2, family_id=FAMILY_IDS["int4"])
    assert not got.any(), got


class _EarlyAnswer(wiring.Component):
    """An array with the PE array's ports that answers at once and takes no input beat."""

    def __init__(self, config):
        super().__init__(array_members(config))

    def elaborate(self, platform):
        m = Module()
        answered = Signal(8)                         # the clock domain the driver ticks
        m.d.sync += answered.eq(answered + (self.o.valid & self.o.ready))
        m.d.comb += self.o.valid.eq(1)
        return m


def test_the_driver_counts_beats():
    config = PeArrayConfig(rows=2, cols=2, lanes=4, group_size=32, scale_bits=4, max_k=64)
    a_q, bw = random_case(config, "fp4", torch.Generator().manual_seed(5))
    jobs = plan_jobs(config, a_q, bw)
    with pytest.raises(StreamAccountingError, match=r"job 0: all 6 results came with 0 of 32 activation beats and "
                                                    r"0 of 30 weight beats taken"):
        simulate_jobs(_EarlyAnswer(config), jobs, stall=0.2)
    fewer = [dataclasses.replace(jobs[0], results=jobs[0].results - 1)]
    with pytest.raises(StreamAccountingError, match="a result too many .* after the last job's last result"):
        simulate_jobs(PeArray(config), fewer, stall=0.2)


@pytest.mark.parametrize("name", ["fp4", "int8"])
def test_tall_array_row_groups_with_stalls(name, seed):
    # 9 rows: three or more copies of the digit bus and the drain control, the last
    # one for a partial group of rows.
    config = PeArrayConfig(rows=9, cols=2, lanes=4, group_size=32, scale_bits=4, max_k=64)
    assert 9 % ROWS_PER_COPY != 0
    assert config.row_copies == -(-9 // ROWS_PER_COPY) > 2
    a_q, bw = random_case(config, name, torch.Generator().manual_seed(seed))
    got, _ = simulate_array(config, a_q, bw, stall=0.3, seed=seed)
    mismatch = first_mismatch(got, matmul_int(a_q, bw), a_q, bw)
    assert mismatch is None, f"{mismatch} (seed {seed})"


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
def test_parallel_baseline_with_stalls(multiplier, seed):
    config = PeArrayConfig(rows=2, cols=3, lanes=8, group_size=64, scale_bits=6, families=("int4",), max_k=256)
    a_q, bw = random_case(config, "int4", torch.Generator().manual_seed(seed))
    got, _ = simulate_array(config, a_q, bw, stall=0.3, seed=seed, build=lambda c: ParallelArray(c, multiplier))
    mismatch = first_mismatch(got, matmul_int(a_q, bw), a_q, bw)
    assert mismatch is None, f"{mismatch} (seed {seed})"


def test_parallel_baseline_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="families of the bit-parallel baseline must be int4, not fp4"):
        ParallelArray(PeArrayConfig(families=("fp4",)))
    with pytest.raises(ValueError, match="lanes of the bit-parallel int4 baseline must be 8"):
        ParallelArray(PeArrayConfig(families=("int4",), lanes=4))
    with pytest.raises(ValueError, match="too few for the bit-serial dequantization of scale_bits=8"):
        ParallelArray(PeArrayConfig(families=("int4",), group_size=64))
    with pytest.raises(ValueError, match="multiplier must be one of lut, dsp, not 'abacus'"):
        ParallelArray(PeArrayConfig(families=("int4",)), "abacus")


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
def test_family_parallel_baseline_every_family_with_stalls(multiplier, seed):
    # The all-family int8 x int8 array: every family through one build, bit for bit.
    config = PeArrayConfig(rows=2, cols=2, lanes=8, group_size=64, scale_bits=6, max_k=128)
    build = lambda c: FamilyParallelArray(c, multiplier)  # noqa: E731
    for name in FAMILIES:
        family_seed = seed + FAMILY_IDS[name]
        a_q, bw = random_case(config, name, torch.Generator().manual_seed(family_seed))
        got, _ = simulate_array(config, a_q, bw, stall=0.3, seed=family_seed, build=build)
        mismatch = first_mismatch(got, matmul_int(a_q, bw), a_q, bw)
        assert mismatch is None, f"{name}: {mismatch} (seed {family_seed})"


def _corner_weights(name, n, k, group_size, scale_bits):
    """The largest |v| of ``name`` (int: code -2**(bits-1), with sg = 1 it is +2**(bits-1)), every sign, sq max."""
    fam = family(name)
    ng = k // group_size
    big = fam.special_code if fam.kind == "fp" else 1 << (fam.bits - 1)
    codes = torch.full((n, k), big, dtype=torch.uint8)
    codes[:, 1::3] = (1 << fam.bits) - 1
    sg = torch.tensor([[(row + g) % 2 for g in range(ng)] for row in range(n)], dtype=torch.uint8)
    dt = torch.ones((n, ng), dtype=torch.uint8) if fam.kind == "fp" else torch.zeros((n, ng), dtype=torch.uint8)
    sq = torch.full((n, ng), (1 << scale_bits) - 1, dtype=torch.int32)
    return BitmodWeights(codes, dt, sg, sq, torch.ones(n), name, group_size, scale_bits)


@pytest.mark.parametrize("multiplier", MULTIPLIERS)
def test_family_parallel_baseline_corners_and_a_narrow_build(multiplier):
    # |v| = 128 (int8's -128 under a negative group sign) times a = -128, at max_k; then
    # a build of two families at lanes = 4 (other queue positions, 9-bit-less multipliers).
    config = PeArrayConfig(rows=2, cols=1, lanes=8, group_size=64, scale_bits=4, max_k=128)
    a_q = torch.full((3, 128), -128, dtype=torch.int8)
    a_q[1] = 127
    for name in ("int8", "fp4"):
        bw = _corner_weights(name, 2, 128, 64, 4)
        got, _ = simulate_array(config, a_q, bw, build=lambda c: FamilyParallelArray(c, multiplier))
        assert torch.equal(got, matmul_int(a_q, bw)) and got.any()
    narrow = PeArrayConfig(rows=1, cols=3, lanes=4, group_size=32, scale_bits=4, families=("fp3", "int6"),
                           max_k=96)
    assert FamilyParallelArray(narrow).max_abs == 32
    a_q, bw = random_case(narrow, "int6", torch.Generator().manual_seed(7))
    got, _ = simulate_array(narrow, a_q, bw, stall=0.2, seed=7, build=lambda c: FamilyParallelArray(c, multiplier))
    assert first_mismatch(got, matmul_int(a_q, bw), a_q, bw) is None


def test_family_parallel_baseline_family_not_built_gives_zeros():
    config = PeArrayConfig(rows=1, cols=2, lanes=8, group_size=64, scale_bits=4, families=("fp3", "int8"), max_k=64)
    a_q, bw = random_case(config, "fp3", torch.Generator().manual_seed(5))
    got, _ = simulate_array(config, a_q, bw, stall=0.2, family_id=FAMILY_IDS["int4"], build=FamilyParallelArray)
    assert not got.any(), got


def test_family_parallel_baseline_takes_a_step_per_cycle_where_the_stream_allows():
    # One job (R = 1, K = 256, four column tiles), unstalled, G = 128: a step (L weights
    # per PE) per cycle for fp3 (14 beats per 16 steps), one beat per cycle (the stream's
    # rate) for fp4 (17 beats), int6 (27) and int8 (33); besides, the 32 activation beats
    # and the pipeline's fill and drain.
    config = PeArrayConfig(rows=1, cols=1, lanes=8, group_size=128, scale_bits=4, max_k=256)
    for name in ("fp3", "fp4", "int6", "int8"):
        generator = torch.Generator().manual_seed(2)
        a_q = torch.randint(-128, 128, (1, 256), generator=generator, dtype=torch.int8)
        bw = quantize(torch.randn((4, 256), generator=generator), name, 128, 4)
        got, cycles = simulate_array(config, a_q, bw, build=FamilyParallelArray)
        assert torch.equal(got, matmul_int(a_q, bw))
        beats, steps = 4 * 2 * pack_layout(name, 128, 4)["words_per_group"], 4 * 2 * 128 // 8
        assert 0 <= cycles - 32 - max(beats, steps) <= 20, (name, cycles, beats, steps)


def test_family_parallel_baseline_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="group_size=64 with lanes=8 gives groups of 8 cycles, too few for the "
                                         "bit-serial dequantization of scale_bits=8"):
        FamilyParallelArray(PeArrayConfig(group_size=64))
    with pytest.raises(ValueError, match="multiplier must be one of lut, dsp, not 'abacus'"):
        FamilyParallelArray(PeArrayConfig(), "abacus")
    design = get_design("pe_array_parallel")
    assert design.resolve({})["families"] == ("int4",)                          # today's int4 array
    assert isinstance(design.build(design.resolve({"families": "fp4,int8"})), FamilyParallelArray)
    assert isinstance(design.build(design.resolve({})), ParallelArray)
    for given, message in [
        ({"families": "fp4,int8", "lanes": 16}, "group_size=128 with lanes=16 gives groups of 8 cycles"),
        ({"families": "int4", "lanes": 16}, "lanes of the bit-parallel int4 baseline must be 8"),
        ({"families": "fp5"}, "parameter families must contain only fp4, fp3, int4, int3, int6, int8; 'fp5' is unknown"),
        ({"families": "int8", "multiplier": "abacus"}, "parameter multiplier must be one of lut, dsp, not 'abacus'"),
    ]:
        with pytest.raises(ValueError, match=message):
            design.resolve(given)


def test_family_parallel_baseline_bad_parameter_is_one_cli_line_with_status_2():
    result = subprocess.run([sys.executable, "-m", "mixbit.cli", "generate", "pe_array_parallel", "-p",
                             "families=fp4,int8", "-p", "lanes=16"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.strip() == ("mixbit: error: group_size=128 with lanes=16 gives groups of 8 cycles, too few "
                                     "for the bit-serial dequantization of scale_bits=8")


def test_int_only_array_and_one_lane():
    config = PeArrayConfig(rows=1, cols=3, lanes=1, group_size=32, scale_bits=12, families=("int4", "int3"),
                           max_k=64)
    a_q, bw = random_case(config, "int3", torch.Generator().manual_seed(5))
    got, _ = simulate_array(config, a_q, bw, stall=0.2, seed=5)
    assert first_mismatch(got, matmul_int(a_q, bw), a_q, bw) is None


def test_pe_accumulates_digits_and_restarts_each_group():
    lanes, max_t = 4, 4
    dut = BitSerialPE(lanes, max_shift=2, max_t=max_t, group_sum_bits=24)
    rng = random.Random(3)
    digit_values = (0, 1, -1, 2, -2, 4, -4)
    groups = [[[(rng.choice(digit_values), rng.randrange(-128, 128)) for _ in range(lanes)]
               for _ in range(max_t)] for _ in range(3)]
    for group in groups:                      # extremes in the last group
        group[-1] = [(-4, -128)] * lanes
    got = []

    async def testbench(ctx):
        for group in groups:
            for step in range(2):                 # two steps per group, same digits
                for t, lanes_in in enumerate(group):
                    for lane, (digit, a) in enumerate(lanes_in):
                        sel = dut.sel[lane]
                        ctx.set(sel.e, 0 if digit == 0 else 1 << (abs(digit).bit_length() - 1))
                        ctx.set(sel.neg, int(digit < 0))
                        ctx.set(dut.a[lane], a)
                    ctx.set(dut.neg_count, sum(digit < 0 for digit, _ in lanes_in))
                    ctx.set(dut.t, t)
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.last, int(step == 1 and t == max_t - 1))
                    await ctx.tick()
        ctx.set(dut.valid, 0)
        for _ in range(dut.latency + 2):
            await ctx.tick()

    async def watcher(ctx):
        async for _, _, done, value in ctx.tick().sample(dut.done, dut.group_sum):
            if done:
                got.append(value)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_process(watcher)
    sim.run_until(1e-8 * (3 * 2 * max_t + dut.latency + 10))
    want = [2 * sum(d * a * 4 ** t for t, lanes_in in enumerate(group) for d, a in lanes_in) for group in groups]
    assert got == want


def test_dequant_unit_multiplies_bit_serially_and_overlaps():
    scale_bits = 8
    serializer = ScaleSerializer(scale_bits)
    unit = DequantUnit(group_sum_bits=24, scaled_bits=32, acc_bits=40)
    rng = random.Random(4)
    groups = [(rng.randrange(-(1 << 23), 1 << 23), rng.randrange(1 << scale_bits)) for _ in range(6)]
    groups += [(-(1 << 23), (1 << scale_bits) - 1), ((1 << 23) - 1, (1 << scale_bits) - 1), (0, 255), (5, 0)]
    from amaranth import Module, Signal

    m = Module()
    m.submodules.serializer, m.submodules.unit = serializer, unit
    load_next = Signal()                  # `load` is registered, as a PE's `done`
    m.d.sync += [unit.load.eq(load_next), serializer.load.eq(load_next)]
    m.d.comb += [serializer.load_next.eq(load_next), unit.add.eq(serializer.add), unit.busy.eq(serializer.busy)]
    seen = []

    async def testbench(ctx):
        ctx.set(load_next, 1)
        await ctx.tick()
        for index, (value, sq) in enumerate(groups):
            ctx.set(load_next, 0)
            ctx.set(unit.group_sum, value)
            ctx.set(serializer.sq, sq)
            await ctx.tick()                  # loaded
            for _ in range(scale_bits - 1):
                await ctx.tick()
            ctx.set(load_next, int(index + 1 < len(groups)))     # the next group loads right after
            await ctx.tick()
            seen.append(ctx.get(unit.acc))
        ctx.set(unit.clear, 1)
        await ctx.tick()
        seen.append(ctx.get(unit.acc))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    running, want = 0, []
    for value, sq in groups:
        running += value * sq
        want.append(running)
    assert seen == want + [0]


def test_weight_beats_are_the_packed_words_column_by_column():
    w = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    bw = quantize(w, "int3", group_size=32)
    packed = pack(bw, cols=2)
    beats = weight_beats(packed)
    words = pack_layout("int3", 32, 8)["words_per_group"]      # 1 metadata + 4 code words
    assert beats.shape == (3 * 2 * words, 2)                    # tiles x groups x words, cols
    assert sorted(beats.flatten().tolist()) == sorted(packed.words.tolist())
    # Column 1 of tile 0 is row 1: its two records (metadata, then codes) come beat by beat.
    row1 = pack(BitmodWeights(bw.codes[1:2], bw.dt[1:2], bw.sg[1:2], bw.sq[1:2], bw.cs[1:2], "int3", 32, 8)).words
    assert beats[:2 * words, 1].tolist() == row1.tolist()


@pytest.mark.parametrize("params,message", [
    ({"lanes": 3}, "lanes must be a power of two in 1..group_size"),
    ({"lanes": 256}, "lanes must be a power of two in 1..group_size"),
    ({"lanes": 32, "group_size": 64}, "gives groups of 4 cycles, but the bit-serial dequantization"),
    ({"max_k": 100}, "max_k must be a multiple of group_size 128"),
    ({"rows": 0}, r"rows must be an integer in 1..256, not 0"),
    ({"cols": 65}, r"cols must be an integer in 1..64, not 65"),
    ({"group_size": 48}, r"group_size must be one of \(32, 64, 128\), not 48"),
    ({"scale_bits": 13}, r"scale_bits must be an integer in 4..12, not 13"),
    ({"families": "fp5"}, "'fp5' is unknown"),
])
def test_bad_configurations(params, message):
    with pytest.raises(ValueError, match=message):
        PeArrayConfig(**params)


def test_widths_come_from_golden():
    from arch.bitmod import accumulator_widths

    config = PeArrayConfig()
    widths = accumulator_widths(config.max_k, config.group_size, config.scale_bits, config.families)
    assert config.acc_bits == widths["acc_bits"] == 35
    assert config.group_sum_bits == widths["group_sum_bits"]
    assert config.result_beat_bits == config.cols * 35
