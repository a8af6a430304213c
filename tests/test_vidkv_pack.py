"""VidKV packing: exact round trips, the documented bit layouts, metadata widths at the extremes."""

import itertools

import pytest
import torch

from golden.vidkv_groups import quantize_keys, quantize_values
from golden.vidkv_pack import (
    metadata_widths,
    pack_bits,
    pack_keys,
    pack_trits,
    pack_values,
    unpack,
    unpack_trits,
)


def groups(g=3, tg=32, d=64, seed=0, bits=16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (g, tg, d), generator=gen)


def same(a, b):
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__
               if isinstance(getattr(a, f), torch.Tensor))


@pytest.mark.parametrize("tg,d", [(16, 32), (32, 64), (64, 128)])
@pytest.mark.parametrize("f,fft", [(0.0, False), (0.5, False), (0.5, True), (0.75, True), (1.0, False), (0.0, True)])
def test_key_round_trip(tg, d, f, fft):
    k = quantize_keys(groups(tg=tg, d=d), f, fft)
    packed = pack_keys(k)
    assert same(unpack(packed), k)
    assert packed.words.min() >= 0 and packed.words.max() < 2 ** 32


@pytest.mark.parametrize("value_format,layout", [("ternary", "i2"), ("ternary", "b3"), ("2bit", "i2")])
@pytest.mark.parametrize("tg", [16, 32, 64])
def test_value_round_trip(value_format, layout, tg):
    v = quantize_values(groups(tg=tg), value_format)
    assert same(unpack(pack_values(v, ternary_layout=layout)), v)


def test_bits_are_packed_along_tokens_lsb_first():
    codes = torch.tensor([[1], [2], [3], [0]] * 8)            # Tg = 32, one channel, 2-bit
    words = pack_bits(codes, 2)
    assert words.shape == (1, 2)
    assert words[0, 0].item() == sum(([1, 2, 3, 0][i % 4]) << (2 * i) for i in range(16))


def test_b3_bytes_decode_with_multiply_and_shift():
    for digits in itertools.product(range(3), repeat=5):
        t = torch.tensor(digits)[:, None] - 1                # five tokens, one channel
        byte = pack_trits(t)
        assert byte.shape == (1,)
        assert unpack_trits(byte, 5, 1).flatten().tolist() == [d - 1 for d in digits]
    t = quantize_values(groups(g=1, tg=32, d=32)).codes
    assert pack_trits(t).shape == (1, 205)                    # ceil(32 * 32 / 5): 1.6 bits per trit


def test_metadata_widths_hold_the_extremes():
    x = torch.full((1, 32, 64), -32768)
    x[0, ::2] = 32767
    widths = metadata_widths(16, 32, fft_points=32)
    k = quantize_keys(x, 0.5, fft=True)
    assert k.r.max() < 2 ** widths["r"] and k.r.max() == 2 ** 16 - 1
    assert k.s.max() < 2 ** widths["s_fft"]
    t = quantize_values(torch.full((1, 32, 64), -32768))
    assert t.s.max() < 2 ** widths["s"] and t.s.max() == 32 * 32768
    assert k.mn.min() >= -(2 ** 15)


def test_bits_per_element():
    k = pack_keys(quantize_keys(groups(tg=32, d=128), 0.5))
    # 1.5 code bits + D mask bits + 64 x (mn 16 + r 16) + 64 x s 21, per 32 x 128 elements
    assert k.bits_per_element() == pytest.approx(1.5 + (128 + 64 * 32 + 64 * 21) / (32 * 128))
    v = pack_values(quantize_values(groups(tg=32, d=128)), ternary_layout="b3")
    assert v.bits_per_element() == pytest.approx((8 * 820 + 128 * 21) / (32 * 128))


def test_bad_layout():
    with pytest.raises(ValueError, match="ternary_layout must be one of \\('i2', 'b3'\\), not 'b4'"):
        pack_values(quantize_values(groups()), ternary_layout="b4")


def test_fft_with_no_normal_channels_packs_like_plain_keys():
    packed = pack_keys(quantize_keys(groups(tg=32, d=32), 1.0, fft=True))
    assert "s_fft" not in packed.meta and packed.bits_per_element() > 2
    assert same(unpack(packed), quantize_keys(groups(tg=32, d=32), 1.0, fft=True))
