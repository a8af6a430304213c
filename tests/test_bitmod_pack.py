"""The packed weight stream: exact round trip and the documented layout."""

import pytest
import torch

from arch.bitmod import FAMILIES, pack_layout
from golden.bitmod import quantize
from golden.bitmod_pack import pack, unpack


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("cols", [1, 3, 4])
@pytest.mark.parametrize("group_size,scale_bits", [(128, 8), (32, 12), (64, 4)])
def test_round_trip_is_exact(name, cols, group_size, scale_bits):
    w = torch.randn(5, 256, generator=torch.Generator().manual_seed(cols))
    w[2, :group_size] = 0
    bw = quantize(w, name, group_size, scale_bits)
    packed = pack(bw, cols)
    back = unpack(packed)
    for field in ("codes", "dt", "sg", "sq", "cs"):
        assert torch.equal(getattr(back, field), getattr(bw, field)), field
    assert (back.family, back.group_size, back.scale_bits) == (name, group_size, scale_bits)
    layout = pack_layout(name, group_size, scale_bits)
    rows = -(-5 // cols) * cols
    assert packed.words.numel() == rows * (256 // group_size) * layout["words_per_group"]
    assert packed.words.min() >= 0 and packed.words.max() < 2 ** 32


def test_layout_of_one_record():
    # One fp3 group of 32: codes 0..7 repeating, dt = 1, sg = 1, sq = 200.
    bw = quantize(torch.randn(1, 32), "fp3", group_size=32)
    bw.codes[:] = torch.arange(32) % 8
    bw.dt[:], bw.sg[:], bw.sq[:] = 1, 1, 200
    words = pack(bw).words.tolist()
    assert words[0] == 1 | 1 << 1 | 200 << 2                # dt, sg, sq
    assert len(words) == 1 + 4                              # ten 3-bit codes per word
    assert words[1] == sum((j % 8) << (3 * j) for j in range(10))
    assert words[4] == sum(((30 + j) % 8) << (3 * j) for j in range(2))


def test_tiles_interleave_rows_per_group():
    bw = quantize(torch.randn(3, 64), "int8", group_size=32)
    wpg = pack_layout("int8", 32, 8)["words_per_group"]
    records = pack(bw, cols=2).words.reshape(-1, wpg)
    # tile 0: (g0, row0) (g0, row1) (g1, row0) (g1, row1); tile 1: (g0, row2) (g0, pad) (g1, row2) (g1, pad)
    single = pack(bw, cols=1).words.reshape(3, 2, wpg)      # [row, group, word]
    order = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), None, (2, 1), None]
    for record, place in zip(records, order, strict=True):
        if place is None:
            assert record.eq(0).all()
        else:
            assert torch.equal(record, single[place])


def test_bits_per_weight_includes_metadata():
    bw = quantize(torch.randn(2, 128), "fp4")
    assert pack(bw).bits_per_weight == 32 * (1 + 16) / 128   # 4.25


@pytest.mark.parametrize("cols", [0, -1, 1.5, True])
def test_bad_cols(cols):
    with pytest.raises(ValueError, match=f"cols must be a positive integer, not {cols!r}"):
        pack(quantize(torch.randn(1, 128), "fp4"), cols)


def test_unpack_rejects_a_stream_of_the_wrong_length():
    packed = pack(quantize(torch.randn(2, 128), "fp4"))
    packed.words = packed.words[:-1]
    with pytest.raises(ValueError, match="words must hold 34 words for this shape, not 33"):
        unpack(packed)
