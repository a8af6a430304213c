"""Float paper mode of VidKV and KIVI."""

import numpy as np
import pytest
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


def numpy_released_fft_keys(k, f: float, group_tokens: int = 32):
    """The released code's key path written directly in numpy: the widest D f channels of
    each group 2-bit, the rest through the full complex FFT with each Re/Im lane 1-bit
    ``{0, mean|lane|}`` and the real part of the inverse FFT."""
    k = np.asarray(k, dtype=np.float64)
    out = k.copy()
    d = k.shape[1]
    n_hi = int(d * f)
    for start in range(0, k.shape[0] // group_tokens * group_tokens, group_tokens):
        g = k[start:start + group_tokens]
        spread = g.max(axis=0) - g.min(axis=0)
        order = sorted(range(d), key=lambda c: -spread[c])          # stable: ties keep channel order
        hi, lo = sorted(order[:n_hi]), sorted(order[n_hi:])
        for c in hi:
            mn, s = g[:, c].min(), (g[:, c].max() - g[:, c].min()) / 3
            out[start:start + group_tokens, c] = mn + np.clip(np.round((g[:, c] - mn) / s), 0, 3) * s if s else g[:, c]
        if lo:
            spectrum = np.fft.fft(g[:, lo], axis=1)                 # all N bins
            q = np.zeros_like(spectrum)
            for b in range(len(lo)):
                re, im = spectrum[:, b].real, spectrum[:, b].imag
                q[:, b] = (re >= 0) * np.abs(re).mean() + 1j * (im >= 0) * np.abs(im).mean()
            out[start:start + group_tokens, lo] = np.fft.ifft(q, axis=1).real
    return out


@pytest.mark.parametrize("f", [0.0, 0.5])
@pytest.mark.parametrize("d", [16, 64])
def test_released_fft_keys_are_the_full_spectrum_path(f, d, seed):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(80, d, generator=gen, dtype=torch.float64) * torch.rand(d, generator=gen, dtype=torch.float64) * 4
    got = paper.keys(k, f=f, fft=True, released=True)
    want = numpy_released_fft_keys(k.numpy(), f)
    assert np.allclose(got.numpy(), want, rtol=0, atol=1e-12), np.abs(got.numpy() - want).max()
    assert torch.equal(got[64:], k[64:])                            # the residual tail stays


def test_released_fft_decodes_im_as_half_scale_signs(seed):
    """Why the full spectrum differs from the half one: bins b and N-b carry conjugate Im
    parts, so ``{0, s}`` on both and the IFFT's real part leave ``+-s/2`` for every Im of
    bins 1..N/2-1 (Re stays ``{0, s}``): the Hermitian spectrum the released path really uses."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 32, 16, generator=gen, dtype=torch.float64)
    spectrum = torch.fft.rfft(x, dim=-1)
    re = (spectrum.real >= 0) * spectrum.real.abs().mean(dim=1, keepdim=True)
    im_s = spectrum.imag.abs().mean(dim=1, keepdim=True)
    im = torch.where(spectrum.imag >= 0, im_s, -im_s) / 2
    im[..., 0] = im[..., -1] = 0
    hermitian = torch.fft.irfft(torch.complex(re, im), n=16, dim=-1)
    assert torch.allclose(paper.keys(x[0], f=0.0, fft=True, released=True), hermitian[0], atol=1e-12)
