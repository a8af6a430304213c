"""Fixed-point radix-2 FFT for VidKV's "1-bit + FFT" keys (docs/vidkv_contract.md section 3).

Integer-exact, so the RTL can match it bit for bit (docs/formats.md):

* Twiddles ``W_N^k = exp(-2 pi i k / N)`` are ``round(cos * 2**14)`` and
  ``round(-sin * 2**14)`` (:data:`TWIDDLE_FRAC` = 14 fraction bits, 16-bit signed).
* Decimation in time: inputs in bit-reversed order, ``log2 N`` stages. A butterfly
  computes ``t = (w * b + 2**13) >> 14`` per real component (complex product first,
  one rounding, half up), then ``a + t`` and ``a - t``. No scaling: each stage may add
  one bit, so a 16-bit input grows to at most 16 + log2 N + 1 bits.
* A real vector of length N is kept as N real lanes of its half spectrum:
  ``Re X0, Re X(N/2), Re X1, Im X1, ..., Re X(N/2-1), Im X(N/2-1)``.
* The inverse rebuilds the Hermitian spectrum, runs the same forward FFT on its
  conjugate, keeps the real part and divides by N rounding half up.
"""

from __future__ import annotations

import torch

from arch.vidkv import TWIDDLE_FRAC, bit_reverse, check_length, twiddle_list

from .vidkv import round_div

__all__ = ["TWIDDLE_FRAC", "twiddles", "fft", "rfft_lanes", "irfft_lanes", "check_length"]

def twiddles(n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point ``W_n^k`` for ``k < n/2``: (real, imaginary), int64 with 14 fraction bits."""
    real, imag = twiddle_list(n)
    return (torch.tensor(real, dtype=torch.int64, device=device),
            torch.tensor(imag, dtype=torch.int64, device=device))


def fft(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point forward FFT along the last dimension of integer tensors."""
    n = real.shape[-1]
    stages = check_length(n)
    order = torch.tensor(bit_reverse(n), device=real.device)
    re, im = real.to(torch.int64)[..., order], imag.to(torch.int64)[..., order]
    w_re, w_im = twiddles(n, real.device)
    half_round = 1 << (TWIDDLE_FRAC - 1)
    for stage in range(1, stages + 1):
        span = 1 << stage
        half = span // 2
        wr, wi = w_re[:: n // span][:half], w_im[:: n // span][:half]
        shape = (*re.shape[:-1], n // span, span)
        re, im = re.reshape(shape), im.reshape(shape)
        a_re, a_im, b_re, b_im = re[..., :half], im[..., :half], re[..., half:], im[..., half:]
        t_re = (wr * b_re - wi * b_im + half_round) >> TWIDDLE_FRAC
        t_im = (wr * b_im + wi * b_re + half_round) >> TWIDDLE_FRAC
        re = torch.cat([a_re + t_re, a_re - t_re], dim=-1).reshape(*shape[:-2], n)
        im = torch.cat([a_im + t_im, a_im - t_im], dim=-1).reshape(*shape[:-2], n)
    return re, im


def rfft_lanes(x: torch.Tensor) -> torch.Tensor:
    """The N half-spectrum lanes of the FFT of real integer vectors ``x`` [..., N]."""
    n = x.shape[-1]
    re, im = fft(x, torch.zeros_like(x))
    lanes = torch.empty_like(re)
    lanes[..., 0], lanes[..., 1] = re[..., 0], re[..., n // 2]
    lanes[..., 2::2], lanes[..., 3::2] = re[..., 1:n // 2], im[..., 1:n // 2]
    return lanes


def irfft_lanes(lanes: torch.Tensor) -> torch.Tensor:
    """The real vectors [..., N] whose half-spectrum lanes are ``lanes``, rounded half up."""
    n = lanes.shape[-1]
    check_length(n)
    lanes = lanes.to(torch.int64)
    re = torch.zeros_like(lanes)
    im = torch.zeros_like(lanes)
    re[..., 0], re[..., n // 2] = lanes[..., 0], lanes[..., 1]
    re[..., 1:n // 2], im[..., 1:n // 2] = lanes[..., 2::2], lanes[..., 3::2]
    re[..., n // 2 + 1:] = re[..., 1:n // 2].flip(-1)
    im[..., n // 2 + 1:] = -im[..., 1:n // 2].flip(-1)
    out_re, _ = fft(re, -im)            # x = conj(FFT(conj X)) / N; x is real
    return round_div(out_re, n)
