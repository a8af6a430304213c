"""Float paper mode of VidKV and KIVI."""

import torch

from golden import vidkv_paper as paper


def test_one_bit_fft_is_exact_when_every_lane_keeps_its_magnitude():
    u = torch.randn(16, generator=torch.Generator().manual_seed(0)).double()
    signs = torch.tensor([(-1.0) ** t for t in range(32)]).double()
    x = torch.cat([signs[:, None] * u[None, :], torch.randn(32, 16).double() * 100], dim=1)   # 16 wide channels
    out = paper.keys(x, f=0.5, fft=True)
    assert torch.allclose(out[:, :16], x[:, :16], atol=1e-9)


def test_released_defects():
    x = torch.tensor([[-2.0], [2.0], [4.0], [-4.0]])
    assert paper.quant_1bit(x, 0).flatten().tolist() == [-3.0, 3.0, 3.0, -3.0]
    assert paper.quant_1bit(x, 0, released=True).flatten().tolist() == [0.0, 3.0, 3.0, 0.0]
    assert paper.quant_ternary(x, 0).flatten().tolist() == [-3.0, 3.0, 3.0, -3.0]
    assert paper.quant_ternary(x, 0, released=True).flatten().tolist() == [-1.0, 1.0, 1.0, -1.0]


def test_residual_window_is_exact_and_stp_splits_tokens():
    v = torch.randn(70, 32, generator=torch.Generator().manual_seed(1))
    out = paper.values(v, group_tokens=32)
    assert torch.equal(out[64:], v[64:]) and not torch.equal(out[:64], v[:64])
    all_salient = paper.values(v, salient=torch.ones(70, dtype=torch.bool), group_tokens=32)
    assert torch.allclose(all_salient[:64], paper.quant_2bit(v[:64].reshape(2, 32, 32), 1).reshape(64, 32))
    none_salient = paper.values(v, salient=torch.zeros(70, dtype=torch.bool), group_tokens=32)
    assert torch.equal(none_salient, out)


def test_kivi_shapes_and_error():
    k, v = torch.randn(64, 64), torch.randn(64, 64)
    k_hat, v_hat = paper.kivi(k, v)
    assert k_hat.shape == k.shape and v_hat.shape == v.shape
    assert (k_hat - k).norm() / k.norm() < 0.5 and (v_hat - v).norm() / v.norm() < 0.5
