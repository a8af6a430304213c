"""VidKV golden model: element formats, ranking, FFT, key/value groups, streaming cache."""

from fractions import Fraction

import pytest
import torch

from golden import vidkv
from golden.vidkv import (
    decode_1bit,
    decode_2bit,
    decode_ternary,
    encode_1bit,
    encode_2bit,
    encode_ternary,
    rank_channels,
)
from golden.vidkv_cache import QuantizedKVCache
from golden.vidkv_fft import irfft_lanes, rfft_lanes
from golden.vidkv_groups import dequantize_keys, dequantize_values, quantize_keys, quantize_values


def rand_group(tg=32, d=32, bits=16, seed=0):
    return torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (tg, d), generator=torch.Generator().manual_seed(seed))


def test_2bit_rounds_half_up_and_handles_r_zero():
    x = torch.zeros(16, 32, dtype=torch.int64)
    x[:, 0] = torch.tensor([0, 1, 2, 3] * 4)          # r = 3: q = x exactly
    x[:4, 1] = torch.tensor([0, 1, 2, 0])             # r = 2: 3x/2 = 0, 1.5 -> 2, 3
    x[:, 2] = -7                                      # r = 0: q = 0
    x[0, 3], x[1, 3] = -32768, 32767                  # extremes
    q, mn, r = encode_2bit(x)
    assert q[:4, 0].tolist() == [0, 1, 2, 3] and (mn[0].item(), r[0].item()) == (0, 3)
    assert q[:4, 1].tolist() == [0, 2, 3, 0]
    assert q[:, 2].eq(0).all() and (mn[2].item(), r[2].item()) == (-7, 0)
    assert (q[0, 3].item(), q[1, 3].item(), r[3].item()) == (0, 3, 65535)


def test_2bit_is_the_spec_formula_on_random_and_all_negative_groups():
    for x in (rand_group(seed=1), -torch.randint(1, 1000, (32, 64), generator=torch.Generator().manual_seed(2))):
        q, mn, r = encode_2bit(x)
        for c in range(x.shape[1]):
            lo, rng = int(x[:, c].min()), int(x[:, c].max() - x[:, c].min())
            want = [0 if rng == 0 else min(max((6 * (int(v) - lo) + rng) // (2 * rng), 0), 3) for v in x[:, c]]
            assert q[:, c].tolist() == want and (mn[c].item(), r[c].item()) == (lo, rng)


def test_1bit_and_ternary():
    x = torch.zeros(16, 32, dtype=torch.int64)
    x[:, 0] = torch.tensor([-3, 0, 5, 1] * 4)
    b, s = encode_1bit(x)
    assert b[:4, 0].tolist() == [0, 1, 1, 1] and s[0].item() == 36
    # Ternary threshold: 2 * Tg * |x| > S, strict. S = 16 * 2 = 32 for |x| = 2 everywhere except a tie.
    x[:, 1] = 2
    x[0, 1] = 1                                       # S = 31: 2*16*1 = 32 > 31 -> kept
    t, s = encode_ternary(x)
    assert s[1].item() == 31 and t[0, 1].item() == 1
    x[:, 2] = torch.tensor([4] + [0] * 14 + [-4])     # S = 8: 2*16*4 = 128 > 8
    x[:, 3] = torch.tensor([1] * 16)                  # S = 16: 32 > 16
    t, s = encode_ternary(x)
    assert t[:, 2].tolist() == [1] + [0] * 14 + [-1] and t[:, 3].eq(1).all()
    y = torch.zeros(16, 32, dtype=torch.int64)
    y[0, 0], y[1, 0] = 16, 16                         # S = 32, tie: 2*16*16 = 512 > 32 kept; zeros: 0 > 32 no
    assert encode_ternary(y)[0][:2, 0].tolist() == [1, 1]
    z = torch.full((16, 32), 3, dtype=torch.int64)
    z[0, 0] = 0                                       # S = 45; 2*16*0 = 0, not > 45
    assert encode_ternary(z)[0][0, 0].item() == 0


def test_ternary_tie_at_exactly_half_the_mean_is_dropped():
    x = torch.zeros(16, 32, dtype=torch.int64)
    x[:2, 0] = torch.tensor([32, 1])                  # S = 33: 32*1 = 32 > 33? no -> 0; 32*32 > 33 -> 1
    x[:, 1] = torch.tensor([1] * 8 + [3] * 8)        # S = 32: |x| = 1 -> 32 > 32? no (strict)
    t, _ = encode_ternary(x)
    assert t[:2, 0].tolist() == [1, 0]
    assert t[:8, 1].eq(0).all() and t[8:, 1].eq(1).all()


def test_rank_channels_by_range_lower_index_wins_ties():
    x = torch.zeros(16, 32, dtype=torch.int64)
    x[0, :] = torch.arange(32) % 4                    # ranges 0,1,2,3,0,1,2,3,...
    mask = rank_channels(x, 0.25)                     # 8 channels: the eight with range 3 (3,7,...,31)
    assert mask.nonzero().flatten().tolist() == list(range(3, 32, 4))
    mask = rank_channels(x, 0.5)                      # 16: eight of range 3, then range 2 by index
    assert mask.nonzero().flatten().tolist() == sorted(list(range(3, 32, 4)) + list(range(2, 32, 4)))
    assert rank_channels(x, 0.0).sum() == 0 and rank_channels(x, 1.0).all()


@pytest.mark.parametrize("frac_bits", [0, 2, 4, 8])
def test_decoding_is_within_half_an_lsb(frac_bits):
    x = rand_group(tg=16, d=32, seed=frac_bits)
    lsb = Fraction(1, 2 ** frac_bits)
    q, mn, r = encode_2bit(x)
    b, s1 = encode_1bit(x)
    t, s3 = encode_ternary(x)
    out2, out1, out3 = decode_2bit(q, mn, r, frac_bits), decode_1bit(b, s1, 16, frac_bits), decode_ternary(t, s3, 16, frac_bits)
    for i in range(16):
        for c in range(32):
            real2 = int(mn[c]) + Fraction(int(q[i, c]) * int(r[c]), 3)
            real1 = (2 * int(b[i, c]) - 1) * Fraction(int(s1[c]), 16)
            real3 = int(t[i, c]) * Fraction(int(s3[c]), 16)
            for out, real in ((out2, real2), (out1, real1), (out3, real3)):
                assert abs(Fraction(int(out[i, c])) * lsb - real) <= lsb / 2


def test_fft_matches_a_float_fft_and_round_trips():
    x = rand_group(tg=64, d=64, seed=3)
    lanes = rfft_lanes(x)
    spectrum = torch.fft.rfft(x.double())
    assert torch.allclose(lanes[:, 0].double(), spectrum[:, 0].real, atol=8)
    assert torch.allclose(lanes[:, 2::2].double(), spectrum[:, 1:32].real, atol=16)
    assert torch.allclose(lanes[:, 3::2].double(), spectrum[:, 1:32].imag, atol=16)
    assert (irfft_lanes(lanes) - x).abs().max() <= 4
    impulse = torch.zeros(1, 16, dtype=torch.int64)
    impulse[0, 0] = 1000
    assert rfft_lanes(impulse).tolist() == [[1000, 1000] + [1000, 0] * 7]


def test_keys_mixed_precision_and_fft():
    x = rand_group(tg=32, d=64, seed=4)
    x[:, 5] *= 0                                      # channels with tiny ranges stay 1-bit
    plain = quantize_keys(x[None], 0.5, fft=False)
    assert torch.equal(plain.mask[0], rank_channels(x, 0.5))
    hi = plain.mask[0].nonzero().flatten()
    q, mn, r = encode_2bit(x)
    assert torch.equal(plain.q[0], q[:, hi]) and torch.equal(plain.mn[0], mn[hi])
    lo = (~plain.mask[0]).nonzero().flatten()
    assert torch.equal(plain.b[0], encode_1bit(x)[0][:, lo])
    out = dequantize_keys(plain)
    assert torch.equal(out[0][:, hi], decode_2bit(q, mn, r)[:, hi])
    assert torch.equal(out[0][:, lo], decode_1bit(*encode_1bit(x), 32)[:, lo])
    spectral = quantize_keys(x[None], 0.5, fft=True)
    assert spectral.b.shape == (1, 32, 32) and torch.equal(spectral.b[0], (rfft_lanes(x[:, lo]) >= 0).long())
    everything = quantize_keys(x[None], 1.0)
    assert everything.b.shape[-1] == 0 and torch.equal(dequantize_keys(everything)[0], decode_2bit(q, mn, r))


def test_values():
    x = rand_group(seed=5)[None]
    v = quantize_values(x)
    assert torch.equal(v.codes[0], encode_ternary(x[0])[0])
    assert torch.equal(dequantize_values(v)[0], decode_ternary(*encode_ternary(x[0]), 32))
    v2 = quantize_values(x, "2bit")
    assert torch.equal(dequantize_values(v2)[0], decode_2bit(*encode_2bit(x[0])))


def test_streaming_keys_equal_the_batch_result():
    x = rand_group(tg=64, d=32, seed=6)
    cache = QuantizedKVCache("key", d=32, group_tokens=16, f=0.5, fft=True)
    for start in range(0, 64, 7):                     # uneven appends
        cache.append(x[start:start + 7])
    whole = dequantize_keys(quantize_keys(x[:64].reshape(4, 16, 32), 0.5, True)).reshape(64, 32)
    assert torch.equal(cache.dequantize(), whole)
    cache.append(x[:5])                               # residual tokens come back exactly
    assert torch.equal(cache.dequantize()[64:], x[:5] << 4)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 1.0])
def test_stp_restores_order(fraction):
    x = rand_group(tg=64, d=32, seed=7)
    salient = torch.rand(64, generator=torch.Generator().manual_seed(8)) < fraction
    cache = QuantizedKVCache("value", d=32, group_tokens=16, stp=True)
    cache.append(x[:40], salient[:40])
    cache.append(x[40:], salient[40:])
    out = cache.dequantize()
    for name, format_, flags in (("salient", "2bit", salient), ("value", "ternary", ~salient)):
        tokens = x[flags]
        full = tokens.shape[0] // 16 * 16
        positions = flags.nonzero().flatten()
        if full:
            expect = dequantize_values(quantize_values(tokens[:full].reshape(-1, 16, 32), format_)).reshape(-1, 32)
            assert torch.equal(out[positions[:full]], expect)
        assert torch.equal(out[positions[full:]], tokens[full:] << 4)
        for group_positions, _ in cache.quantized_groups(name):
            assert (group_positions[:, 1:] > group_positions[:, :-1]).all()


@pytest.mark.parametrize("call,error,message", [
    (lambda: encode_2bit(torch.zeros(32, 32)), ValueError, "x must be an integer tensor"),
    (lambda: encode_1bit(torch.full((32, 32), 40000)), ValueError, r"x\[0, 0\] = 40000 is outside the 16-bit range"),
    (lambda: encode_ternary(torch.full((32, 32), 200), in_bits=8), ValueError, "outside the 8-bit range -128..127"),
    (lambda: encode_2bit(torch.zeros(32, 48, dtype=torch.int64)), ValueError, r"D = 48 .* D must be one of \(32, 64, 128\)"),
    (lambda: encode_2bit(torch.zeros(20, 32, dtype=torch.int64)), ValueError, r"Tg = 20 .* Tg must be one of \(16, 32, 64\)"),
    (lambda: rank_channels(torch.zeros(32, 32, dtype=torch.int64), 0.3), ValueError, "f must be one of"),
    (lambda: QuantizedKVCache("key", d=32, f=0.25, fft=True), ValueError, "N \\(normal channels, D - D\\*f\\) = 24 must be a power of two"),
    (lambda: QuantizedKVCache("query"), ValueError, "kind must be 'key' or 'value', not 'query'"),
    (lambda: QuantizedKVCache("key", d=48), ValueError, r"d must be one of \(32, 64, 128\), not 48"),
    (lambda: QuantizedKVCache("key", group_tokens=8), ValueError, r"group_tokens must be one of \(16, 32, 64\), not 8"),
    (lambda: QuantizedKVCache("key", in_bits=20), ValueError, "in_bits must be an integer in 8..16, not 20"),
    (lambda: QuantizedKVCache("value", value_format="fp8"), ValueError, "value_format must be one of"),
    (lambda: QuantizedKVCache("value", d=32, stp=True).append(torch.zeros(4, 32, dtype=torch.int64), torch.zeros(3, dtype=torch.bool)),
     ValueError, "salient must be a bool tensor of length 4"),
    (lambda: QuantizedKVCache("key", d=32).append(torch.zeros(4, 32, dtype=torch.int64), torch.zeros(4, dtype=torch.bool)),
     ValueError, "salient is only used by a value cache with stp=True"),
    (lambda: QuantizedKVCache("value", d=32).append(torch.zeros(4, 64, dtype=torch.int64)), ValueError, r"tokens must have shape \[T, 32\]"),
    (lambda: vidkv.decode_2bit(torch.zeros(1, 1), torch.zeros(1), torch.zeros(1), frac_bits=9), ValueError, "frac_bits must be an integer in 0..8"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_all_equal_and_all_negative_groups_decode_exactly_where_the_format_allows():
    for c in (5, -5, -32768, 32767):
        x = torch.full((32, 32), c, dtype=torch.int64)
        q, mn, r = encode_2bit(x)
        assert r.eq(0).all() and q.eq(0).all() and torch.equal(decode_2bit(q, mn, r), x << 4)
        assert torch.equal(decode_1bit(*encode_1bit(x), 32), x << 4)          # S = 32 |c|, sign right
        assert torch.equal(decode_ternary(*encode_ternary(x), 32), x << 4)    # 64 |c| > 32 |c|
    negative = -torch.randint(1, 30000, (32, 32), generator=torch.Generator().manual_seed(9))
    b, s = encode_1bit(negative)
    assert b.eq(0).all() and torch.equal(s, negative.abs().sum(0))
    t, _ = encode_ternary(negative)
    assert t.le(0).all() and t.eq(-1).any()
