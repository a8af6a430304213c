"""RTN and MX-FP4 baselines."""

import pytest
import torch

from golden.baselines import mxfp4_quantize, rtn_quantize


@pytest.mark.parametrize("bits", [3, 4])
def test_rtn_symmetric(bits):
    qmax = 2 ** (bits - 1) - 1
    w = torch.tensor([[qmax * 1.0, 0.5, -0.5, 1.5] + [0.0] * 28])
    r = rtn_quantize(w, bits, group_size=32)
    assert r.q[0, :4].tolist() == [qmax, 0, 0, 2]            # half to even
    assert r.scale.item() == 1.0 and r.zero.item() == 0
    assert torch.equal(r.dequantize()[0, :4], torch.tensor([qmax, 0.0, 0.0, 2.0]))


def test_rtn_asymmetric_uses_the_whole_range():
    w = torch.linspace(-1, 2, 32)[None, :]
    r = rtn_quantize(w, 4, group_size=32, symmetric=False)
    assert r.q.min().item() == 0 and r.q.max().item() == 15
    assert (r.dequantize() - w).abs().max() <= r.scale.item() / 2 + 1e-6


def test_rtn_constant_and_zero_groups():
    w = torch.zeros(2, 32)
    w[1] = 3.0
    for symmetric in (True, False):
        r = rtn_quantize(w, 4, 32, symmetric)
        assert torch.isfinite(r.dequantize()).all()
        assert r.dequantize()[0].eq(0).all()


def test_mxfp4_ties_go_to_even_and_values_saturate():
    w = torch.tensor([[0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, -5.0, -0.25] + [0.0] * 22])
    mx = mxfp4_quantize(w)
    assert mx.exponent.item() == 0                          # floor(log2 6) - 2
    assert mx.dequantize()[0, :10].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, -4.0, 0.0]


def test_mxfp4_scale_is_a_power_of_two_per_block():
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 10
    mx = mxfp4_quantize(w)
    assert mx.exponent.shape == (4, 2)
    blocks = w.reshape(4, 2, 32).abs().amax(-1)
    assert torch.equal(mx.exponent.to(torch.float64), torch.floor(torch.log2(blocks.double())) - 2)
    assert (mx.dequantize() - w).abs().max() <= (2.0 ** mx.exponent.max().item()) * 1.0 + 1e-5


@pytest.mark.parametrize("call,message", [
    (lambda: rtn_quantize(torch.randn(1, 128), bits=5), "bits must be 3 or 4, not 5"),
    (lambda: rtn_quantize(torch.randn(1, 100)), "K = 100 .* must be a multiple of group_size 128"),
    (lambda: mxfp4_quantize(torch.randn(1, 40)), "must be a multiple of the MX block 32"),
    (lambda: mxfp4_quantize(torch.tensor([[float("nan")] * 32])), r"w must be finite"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_rtn_asymmetric_groups_of_one_sign():
    for w in (torch.linspace(10, 11, 32)[None, :], -torch.linspace(10, 11, 32)[None, :]):
        r = rtn_quantize(w, 4, group_size=32, symmetric=False)
        assert (r.dequantize() - w).abs().max() <= r.scale.item() / 2 + 1e-5


def test_mxfp4_exponent_stays_in_e8m0_range():
    mx = mxfp4_quantize(torch.full((1, 32), 1e-44))
    assert mx.exponent.item() == -127
