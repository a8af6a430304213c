"""Memory formats of quantized VidKV groups (docs/vidkv_contract.md section 5; layout in docs/formats.md).

Per group, ``words`` holds 32-bit words: for keys, the channel mask (D bits, bit c =
channel c) then the code words of every 2-bit channel and then of every 1-bit
channel (or FFT lane), each in ascending order; for values, the code words of every
channel. A channel's codes are packed along tokens, LSB first: token i at bits
``[b i, b i + b - 1]`` of the channel's little-endian word run. Ternary values are
``i2`` (code ``t + 1`` in 2 bits, packed like 2-bit codes) or ``b3`` (bytes of five
trits, see :func:`pack_trits`). Metadata fields stay one integer each, with the
documented widths of :func:`metadata_widths`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from arch.vidkv import POSITION_BITS, TERNARY_LAYOUTS, b3_byte, metadata_widths

from .vidkv_groups import KeyGroups, ValueGroups

__all__ = ["PackedKV", "metadata_widths", "pack_bits", "unpack_bits", "pack_trits", "unpack_trits",
           "pack_keys", "pack_values", "unpack", "b3_byte", "TERNARY_LAYOUTS", "POSITION_BITS"]

_POW3 = (81, 27, 9, 3, 1)


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes [..., Tg, C] (``bits`` wide, unsigned) -> words [..., C, Tg*bits/32 rounded up], LSB first."""
    *lead, tg, c = codes.shape
    per_word = 32 // bits
    words = -(-tg // per_word)
    padded = torch.zeros((*lead, c, words * per_word), dtype=torch.int64, device=codes.device)
    padded[..., :tg] = codes.to(torch.int64).transpose(-1, -2)
    shifts = torch.arange(per_word, device=codes.device) * bits
    return (padded.reshape(*lead, c, words, per_word) << shifts).sum(dim=-1)


def unpack_bits(words: torch.Tensor, bits: int, tokens: int) -> torch.Tensor:
    """The inverse of :func:`pack_bits`: words [..., C, W] -> codes [..., Tg, C]."""
    per_word = 32 // bits
    shifts = torch.arange(per_word, device=words.device) * bits
    codes = (words[..., None] >> shifts) & ((1 << bits) - 1)
    return codes.flatten(-2)[..., :tokens].transpose(-1, -2)


def pack_trits(t: torch.Tensor) -> torch.Tensor:
    """Trits [..., Tg, C] in {-1, 0, 1} -> bytes [..., ceil(Tg C / 5)], the ``b3`` layout.

    Trits are taken channel-major (trit ``j = c Tg + i``), five per byte, padded with
    ``t = -1`` (digit 0). Byte ``k`` stores ``v = sum_n d_n 3**(4 - n)`` of its digits
    ``d_n = t_(5k+n) + 1`` as ``ceil(v 256 / 243)``, so that digit n decodes without
    a division: ``d_n = ((byte * 3**n) mod 256 * 3) >> 8`` (ggml TQ1_0's trick).
    """
    *lead, tg, c = t.shape
    digits = (t.to(torch.int64) + 1).transpose(-1, -2).reshape(*lead, tg * c)
    count = -(-(tg * c) // 5)
    padded = torch.zeros((*lead, count * 5), dtype=torch.int64, device=t.device)
    padded[..., :tg * c] = digits
    value = (padded.reshape(*lead, count, 5) * torch.tensor(_POW3, device=t.device)).sum(dim=-1)
    return b3_byte(value).to(torch.uint8)


def unpack_trits(data: torch.Tensor, tokens: int, channels: int) -> torch.Tensor:
    """The inverse of :func:`pack_trits`: bytes -> trits [..., Tg, C], with the multiply-shift decoder."""
    powers = torch.tensor(_POW3[::-1], device=data.device)             # 3**n for digit n
    digits = (((data.to(torch.int64)[..., None] * powers) % 256) * 3) >> 8
    trits = digits.flatten(-2)[..., :tokens * channels] - 1
    return trits.reshape(*data.shape[:-1], channels, tokens).transpose(-1, -2)


@dataclass
class PackedKV:
    """Packed groups [G, ...] and what unpacking needs.

    ``words`` int64 [G, W] (32-bit words); ``trits`` uint8 [G, B] for ``b3`` values;
    ``meta`` maps a field name to int64 [G, channels]; ``widths`` gives each field's
    bits; ``positions`` int64 [G, Tg] for STP groups.
    """

    kind: str
    d: int
    group_tokens: int
    in_bits: int
    words: torch.Tensor
    meta: dict[str, torch.Tensor]
    widths: dict[str, int]
    n_hi: int = 0
    fft: bool = False
    value_format: str = "ternary"
    ternary_layout: str = "i2"
    trits: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    code_bits: int = field(default=0)

    @property
    def groups(self) -> int:
        return self.words.shape[0]

    def bits_per_element(self, with_positions: bool = True) -> float:
        """Memory bits per element: code bits, mask, metadata fields (and positions)."""
        meta = sum(self.widths[name] * t.shape[-1] for name, t in self.meta.items())
        mask = self.d if self.kind == "key" else 0
        positions = POSITION_BITS * self.group_tokens if (with_positions and self.positions is not None) else 0
        return (self.code_bits + meta + mask + positions) / (self.group_tokens * self.d)


def pack_keys(k: KeyGroups, in_bits: int = 16) -> PackedKV:
    """Pack key groups: mask words, 2-bit channel words, 1-bit channel (or lane) words."""
    g, d = k.mask.shape
    tg = k.group_tokens
    mask_words = pack_bits(k.mask.to(torch.int64)[:, :, None], 1).reshape(g, -1)   # bit c = channel c
    hi = pack_bits(k.q, 2).reshape(g, -1)
    lo = pack_bits(k.b, 1).reshape(g, -1)
    n_hi, n_lo = k.q.shape[-1], k.b.shape[-1]
    spectral = k.fft and n_lo > 0          # f = 1 leaves no normal channel to transform
    widths = metadata_widths(in_bits, tg, n_lo if spectral else None)
    meta = {"mn": k.mn, "r": k.r, "s_fft" if spectral else "s": k.s}
    return PackedKV("key", d, tg, in_bits, torch.cat([mask_words, hi, lo], dim=1), meta, widths,
                    n_hi=n_hi, fft=k.fft, code_bits=tg * (2 * n_hi + n_lo))


def pack_values(v: ValueGroups, in_bits: int = 16, ternary_layout: str = "i2",
                positions: torch.Tensor | None = None) -> PackedKV:
    """Pack value groups; ternary as ``i2`` or ``b3``. ``positions`` [G, Tg] are kept for STP."""
    if ternary_layout not in TERNARY_LAYOUTS:
        raise ValueError(f"ternary_layout must be one of {TERNARY_LAYOUTS}, not {ternary_layout!r}")
    g, tg, d = v.codes.shape
    widths = metadata_widths(in_bits, tg)
    trits = None
    if v.format == "2bit":
        words, meta, code_bits = pack_bits(v.codes, 2).reshape(g, -1), {"mn": v.mn, "r": v.r}, 2 * tg * d
    elif ternary_layout == "i2":
        words, meta, code_bits = pack_bits(v.codes + 1, 2).reshape(g, -1), {"s": v.s}, 2 * tg * d
    else:
        trits = pack_trits(v.codes)
        words, meta, code_bits = torch.zeros((g, 0), dtype=torch.int64), {"s": v.s}, 8 * trits.shape[-1]
    return PackedKV("value", d, tg, in_bits, words, meta, widths, value_format=v.format,
                    ternary_layout=ternary_layout, trits=trits, positions=positions, code_bits=code_bits)


def unpack(p: PackedKV) -> KeyGroups | ValueGroups:
    """The groups that :func:`pack_keys` or :func:`pack_values` packed, exactly."""
    if not isinstance(p, PackedKV):
        raise TypeError(f"p must be a PackedKV (from pack_keys or pack_values), not {type(p).__name__}")
    g, tg, d = p.groups, p.group_tokens, p.d
    if p.kind == "key":
        mask_words = d // 32
        mask = unpack_bits(p.words[:, :mask_words].reshape(g, 1, mask_words), 1, d).reshape(g, d).bool()
        n_lo = d - p.n_hi
        hi_words = -(-tg // 16)
        lo_words = -(-tg // 32)
        start = mask_words + p.n_hi * hi_words
        q = unpack_bits(p.words[:, mask_words:start].reshape(g, p.n_hi, hi_words), 2, tg)
        b = unpack_bits(p.words[:, start:].reshape(g, n_lo, lo_words), 1, tg)
        s = p.meta["s_fft" if "s_fft" in p.meta else "s"]
        return KeyGroups(mask, q, p.meta["mn"], p.meta["r"], b, s, p.fft)
    if p.value_format == "2bit":
        codes = unpack_bits(p.words.reshape(g, d, -1), 2, tg)
        return ValueGroups("2bit", codes, mn=p.meta["mn"], r=p.meta["r"])
    if p.ternary_layout == "i2":
        codes = unpack_bits(p.words.reshape(g, d, -1), 2, tg) - 1
    else:
        codes = unpack_trits(p.trits, tg, d)
    return ValueGroups("ternary", codes, s=p.meta["s"])
