"""The weight decoder under Amaranth's simulator: exhaustive, with random stalls."""

import random

import pytest
from amaranth.sim import Simulator

from arch.bitmod import FAMILIES
from hdl.decoder import WeightDecoder, decoder_layouts, decoder_widths, fp_terms
from sim.decoder_check import DecoderVector, decoder_vectors, first_mismatch, terms_value


def rtl_decode(families, vectors, seed, stall=0.3):
    """Run ``vectors`` through the decoder; return the output words and the cycle count."""
    dut = WeightDecoder(families)
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    words = []
    cycles = 0

    async def producer(ctx):
        for family_id, code, dt in vectors:
            while rng_in.random() < stall:
                await ctx.tick()
            ctx.set(dut.family, family_id)
            ctx.set(dut.i.payload, dut.input_layout.const({"code": code, "dt": dt}))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        nonlocal cycles
        while len(words) < len(vectors):
            ready = rng_out.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles += 1
            if valid and ready:
                words.append(payload.as_bits())
            assert cycles <= 64 + 16 * len(vectors), f"{len(words)} of {len(vectors)} outputs came (seed {seed})"
        ctx.set(dut.o.ready, 1)
        for _ in range(8):       # nothing more may come out
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, f"an output beyond the {len(vectors)} expected (seed {seed})"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return words, cycles


@pytest.mark.parametrize("families", [FAMILIES, ("fp3", "int4"), ("fp4",), ("int8",), ("int3", "int6")])
def test_exhaustive_with_stalls(families, seed):
    vectors = decoder_vectors(families, random.Random(seed))
    words, _ = rtl_decode(families, vectors, seed)
    mismatch = first_mismatch(families, vectors, words)
    assert mismatch is None, f"{mismatch} (seed {seed})"


def test_one_code_per_cycle_without_stalls():
    vectors = decoder_vectors(FAMILIES, random.Random(1))
    words, cycles = rtl_decode(FAMILIES, vectors, seed=1, stall=0.0)
    assert first_mismatch(FAMILIES, vectors, words) is None
    assert cycles == len(vectors) + 1        # latency 1, then one result per cycle


def test_check_reports_the_first_wrong_word():
    families = ("fp4",)
    _, output_layout = decoder_layouts(families)
    vectors = [DecoderVector(0, 0b0111, 0), DecoderVector(0, 0b1000, 1)]
    twelve = output_layout.const([{"nonzero": 1, "shift": 2}, {"nonzero": 1, "shift": 1}]).as_bits()
    assert terms_value(output_layout, twelve) == 12              # 4 + 4 * 2
    assert first_mismatch(families, vectors, [twelve, twelve]) == (
        "first mismatch at item 1: family=fp4 (id 0) code=0b1000 dt=1: expected 16, "
        f"got digits [+4, +2] = 12 (output word 0x{twelve:x})"
    )
    assert "expected 2 outputs, got 1" in first_mismatch(families, vectors, [twelve])


def test_check_rejects_digits_beyond_the_family():
    # int3 takes two digits; a third, even if the sum is right, breaks its cycle count.
    _, output_layout = decoder_layouts(FAMILIES)
    minus_two = output_layout.const([{"nonzero": 1, "negative": 1, "shift": 1},
                                     {"nonzero": 1, "negative": 1, "shift": 2},
                                     {"nonzero": 1, "shift": 0}, {}]).as_bits()
    assert terms_value(output_layout, minus_two) == -2 - 16 + 16
    vector = DecoderVector(3, 0b110, 0)       # int3 code 0b110 = -2
    assert "digit 2 is nonzero but the family has 2 digits per weight" in \
        first_mismatch(FAMILIES, [vector], [minus_two])
    eight = output_layout.const([{"nonzero": 1, "shift": 3}, {}, {}, {}]).as_bits()
    assert "digit 0 is +-8, beyond +-4" in first_mismatch(FAMILIES, [DecoderVector(0, 0b0110, 0)], [eight])


def test_widths_follow_the_built_families():
    assert decoder_widths(FAMILIES) == {"code_bits": 8, "terms": 4, "shift_bits": 2, "term_bits": 4,
                                        "family_bits": 3, "output_bits": 16}
    assert decoder_widths(["int4", "int3"]) == {"code_bits": 4, "terms": 2, "shift_bits": 1, "term_bits": 3,
                                                "family_bits": 3, "output_bits": 6}
    input_layout, output_layout = decoder_layouts("int4,fp4")
    assert input_layout.size == 5 and output_layout.size == 2 * 4


def test_fp_terms_are_the_two_digits():
    assert fp_terms(10) == [(1, 0, 1), (1, 0, 1)]           # 2 + 4 * 2
    assert fp_terms(-12) == [(1, 1, 2), (1, 1, 1)]          # -4 + 4 * -2
    assert fp_terms(0) == [(0, 0, 0), (0, 0, 0)]


@pytest.mark.parametrize("families,error,message", [
    ("", ValueError, "families must name at least one family"),
    (["int8", "int16"], ValueError, "'int16' is unknown"),
    (None, TypeError, "families must be an iterable of family names, not None"),
])
def test_bad_parameters(families, error, message):
    with pytest.raises(error, match=message):
        WeightDecoder(families)
