"""Float "paper mode": the published KV-cache methods in floating point, for accuracy comparisons.

Inputs are float tensors [T, D] (one head). Groups are Tg tokens per channel (KIVI
style); the T % Tg newest tokens stay unquantized (the residual window). Scales are
float: 2-bit ``mn + round((x - mn) / s) s`` with ``s = r / 3``; 1-bit and ternary use
``s = mean |x|`` over the group. Ranking for mixed-precision keys is per group by
range, as in the integer model.

``released=True`` reproduces three defects of the authors' released code, for
comparison only (see docs/formats.md): 1-bit decodes to ``{0, s}`` instead of
``{-s, +s}``; ternary values are never multiplied by their scale; the FFT option takes
the full complex FFT over the N channels and quantizes Re and Im of all N bins (2N
one-bit lanes, 2 bits per "1-bit" channel, each lane decoded as ``{0, s}``) and keeps
the real part of the inverse FFT.
"""

from __future__ import annotations

import torch

__all__ = ["quant_2bit", "quant_1bit", "quant_ternary", "kivi", "keys", "values"]


def _grouped(x: torch.Tensor, group_tokens: int, fn) -> torch.Tensor:
    """Apply ``fn`` to the complete groups [G, Tg, D] of ``x`` [T, D]; the tail stays as it is."""
    full = x.shape[0] // group_tokens * group_tokens
    out = x.clone()
    if full:
        out[:full] = fn(x[:full].reshape(-1, group_tokens, x.shape[1])).reshape(full, x.shape[1])
    return out


def quant_2bit(x: torch.Tensor, dim: int) -> torch.Tensor:
    """2-bit asymmetric along ``dim`` (KIVI's rounding: half to even)."""
    mn, mx = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)
    s = (mx - mn) / 3
    safe = torch.where(s > 0, s, torch.ones_like(s))
    return mn + torch.round((x - mn) / safe).clamp(0, 3) * s


def quant_1bit(x: torch.Tensor, dim: int, released: bool = False) -> torch.Tensor:
    """Sign times ``mean |x|`` along ``dim``; released: ``{0, s}``."""
    s = x.abs().mean(dim=dim, keepdim=True)
    return (x >= 0) * s if released else torch.where(x >= 0, s, -s)


def quant_ternary(x: torch.Tensor, dim: int, released: bool = False) -> torch.Tensor:
    """``sign(x)`` where ``|x| > mean|x| / 2`` else 0, times ``mean |x|``; released: unscaled."""
    s = x.abs().mean(dim=dim, keepdim=True)
    t = torch.where(2 * x.abs() > s, torch.sign(x), torch.zeros_like(x))
    return t if released else t * s


def kivi(k: torch.Tensor, v: torch.Tensor, group_tokens: int = 32, value_group: int = 32):
    """KIVI 2-bit: keys per channel along tokens, values per token in groups of channels."""
    k_hat = _grouped(k, group_tokens, lambda g: quant_2bit(g, dim=1))

    def per_token(g):
        grouped = g.reshape(g.shape[0], g.shape[1], -1, value_group)
        return quant_2bit(grouped, dim=-1).reshape(g.shape)

    return k_hat, _grouped(v, group_tokens, per_token)


def _fft_1bit(x: torch.Tensor) -> torch.Tensor:
    """1-bit quantization of normal channels in the frequency domain; x [G, Tg, N].

    The real FFT's N independent lanes: Re of bins 0 and N/2, Re and Im of bins 1..N/2-1.
    """
    n = x.shape[-1]
    spectrum = torch.fft.rfft(x, dim=-1)
    lanes = torch.cat([spectrum.real[..., :1], spectrum.real[..., -1:],
                       torch.stack([spectrum.real[..., 1:-1], spectrum.imag[..., 1:-1]], dim=-1).flatten(-2)],
                      dim=-1)                                                 # exactly N lanes
    q = quant_1bit(lanes, dim=1)
    re = torch.cat([q[..., :1], q[..., 2::2], q[..., 1:2]], dim=-1)
    im = torch.cat([torch.zeros_like(q[..., :1]), q[..., 3::2], torch.zeros_like(q[..., :1])], dim=-1)
    return torch.fft.irfft(torch.complex(re, im), n=n, dim=-1)


def _fft_1bit_released(x: torch.Tensor) -> torch.Tensor:
    """The released code's FFT path on x [G, Tg, N]: full complex FFT, 2N lanes ``{0, s}``, Re of the IFFT.

    Lanes are ``view_as_real`` order (Re 0, Im 0, Re 1, Im 1, ...); bins N/2+1..N-1 are the
    conjugates of bins N/2-1..1, so every Re and Im of bins 1..N/2-1 is quantized twice.
    """
    lanes = torch.view_as_real(torch.fft.fft(x, dim=-1)).flatten(-2)          # 2N lanes
    q = quant_1bit(lanes, dim=1, released=True)
    return torch.fft.ifft(torch.view_as_complex(q.unflatten(-1, (-1, 2)).contiguous()), dim=-1).real


def keys(k: torch.Tensor, f: float = 0.5, fft: bool = False, released: bool = False,
         group_tokens: int = 32) -> torch.Tensor:
    """VidKV keys: the ``D f`` widest channels of each group 2-bit, the rest 1-bit (or 1-bit + FFT)."""
    d = k.shape[1]
    n_hi = int(d * f)

    def quantize(g):
        spread = g.amax(dim=1) - g.amin(dim=1)
        order = torch.sort(spread, dim=-1, descending=True, stable=True).indices
        hi, lo = torch.sort(order[:, :n_hi], dim=-1).values, torch.sort(order[:, n_hi:], dim=-1).values
        out = torch.empty_like(g)
        if n_hi:
            idx = hi[:, None, :].expand(-1, g.shape[1], -1)
            out.scatter_(2, idx, quant_2bit(torch.gather(g, 2, idx), dim=1))
        if d - n_hi:
            idx = lo[:, None, :].expand(-1, g.shape[1], -1)
            normal = torch.gather(g, 2, idx)
            if not fft:
                normal = quant_1bit(normal, dim=1, released=released)
            else:
                normal = _fft_1bit_released(normal) if released else _fft_1bit(normal)
            out.scatter_(2, idx, normal)
        return out

    return _grouped(k, group_tokens, quantize)


def values(v: torch.Tensor, salient: torch.Tensor | None = None, released: bool = False,
           group_tokens: int = 32) -> torch.Tensor:
    """VidKV values: ternary per channel; with ``salient`` [T] bool, those tokens 2-bit in their own groups."""
    if salient is None:
        return _grouped(v, group_tokens, lambda g: quant_ternary(g, dim=1, released=released))
    out = torch.empty_like(v)
    out[salient] = _grouped(v[salient], group_tokens, lambda g: quant_2bit(g, dim=1))
    out[~salient] = _grouped(v[~salient], group_tokens, lambda g: quant_ternary(g, dim=1, released=released))
    return out
