"""A streaming VidKV cache, token by token, exactly as the hardware engine will run it.

Tokens arrive in order; a path forms groups of Tg tokens in arrival order and
quantizes a group as soon as it is complete (KIVI style); the incomplete tail waits in
a full-precision residual window. Keys have one path. Values have one path, or two
with salient-token protection (STP): salient tokens go to a 2-bit path, the others to
the ternary (or 2-bit) path, and every group records the positions of its tokens so
that :meth:`QuantizedKVCache.dequantize` restores the original order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .vidkv import (
    DEFAULT_FRAC_BITS,
    DEFAULT_IN_BITS,
    GROUP_TOKENS,
    HEAD_DIMS,
    check_frac_bits,
    check_tokens,
    n_high,
)
from .vidkv_fft import check_length
from .vidkv_groups import (
    VALUE_FORMATS,
    KeyGroups,
    ValueGroups,
    dequantize_keys,
    dequantize_values,
    quantize_keys,
    quantize_values,
)

__all__ = ["QuantizedKVCache", "CachePath"]


@dataclass
class CachePath:
    """One group former: its format, its quantized groups and its residual window."""

    name: str
    value_format: str | None                     # None for keys
    groups: list = field(default_factory=list)  # [(positions [G, Tg], KeyGroups | ValueGroups)]
    residual: torch.Tensor | None = None        # tokens [R, D] of the incomplete group
    residual_positions: torch.Tensor | None = None


class QuantizedKVCache:
    """One attention head's K or V cache, quantized per channel in groups of Tg tokens.

    Parameters
    ----------
    kind : "key" or "value"
    d : int
        Head dimension D (32, 64 or 128).
    group_tokens : int
        Tg (16, 32 or 64).
    in_bits : int
        Width of the signed integer inputs (8..16).
    frac_bits : int
        Fraction bits of :meth:`dequantize`'s fixed-point output (0..8).
    f : float
        Keys: fraction of 2-bit channels (0, 1/4, 1/2, 3/4, 1).
    fft : bool
        Keys: FFT the normal channels (D - D f must be a power of two).
    value_format : "ternary" or "2bit"
        Values: format of the (non-salient) path.
    stp : bool
        Values: salient-token protection; salient tokens take the 2-bit path.
    """

    def __init__(self, kind: str, d: int = 128, group_tokens: int = 32, in_bits: int = DEFAULT_IN_BITS,
                 frac_bits: int = DEFAULT_FRAC_BITS, f: float = 0.5, fft: bool = False,
                 value_format: str = "ternary", stp: bool = False):
        if kind not in ("key", "value"):
            raise ValueError(f"kind must be 'key' or 'value', not {kind!r}")
        if d not in HEAD_DIMS:
            raise ValueError(f"d must be one of {HEAD_DIMS}, not {d!r}")
        if group_tokens not in GROUP_TOKENS:
            raise ValueError(f"group_tokens must be one of {GROUP_TOKENS}, not {group_tokens!r}")
        check_tokens(torch.zeros((group_tokens, d), dtype=torch.int64), in_bits)   # checks in_bits
        check_frac_bits(frac_bits)
        if kind == "key":
            normal = d - n_high(d, f)
            if fft and normal:
                check_length(normal, argument="N (normal channels, D - D*f)")
            if stp:
                raise ValueError("stp applies to values only, not to kind='key'")
            paths = [CachePath("key", None)]
        else:
            if value_format not in VALUE_FORMATS:
                raise ValueError(f"value_format must be one of {VALUE_FORMATS}, not {value_format!r}")
            paths = [CachePath("value", value_format)]
            if stp:
                paths.append(CachePath("salient", "2bit"))
        self.kind, self.d, self.group_tokens = kind, d, group_tokens
        self.in_bits, self.frac_bits = in_bits, frac_bits
        self.f, self.fft, self.value_format, self.stp = f, bool(fft), value_format, bool(stp)
        self.paths = {p.name: p for p in paths}
        self.tokens = 0

    def append(self, tokens: torch.Tensor, salient: torch.Tensor | None = None) -> None:
        """Add tokens [T, D] (integers); ``salient`` [T] bool flags them for STP (values only)."""
        check_tokens(tokens, self.in_bits, "tokens", group=False)
        if tokens.dim() != 2 or tokens.shape[1] != self.d:
            raise ValueError(f"tokens must have shape [T, {self.d}], not {list(tokens.shape)}")
        count = tokens.shape[0]
        if salient is not None:
            if not self.stp:
                raise ValueError("salient is only used by a value cache with stp=True")
            salient = torch.as_tensor(salient)
            if salient.dtype != torch.bool or salient.shape != (count,):
                raise ValueError(f"salient must be a bool tensor of length {count} (one flag per token), "
                                 f"not {salient.dtype} of shape {list(salient.shape)}")
        elif self.stp:
            salient = torch.zeros(count, dtype=torch.bool)
        positions = torch.arange(self.tokens, self.tokens + count)
        self.tokens += count
        tokens = tokens.to(torch.int64)
        if self.stp:
            self._feed(self.paths["salient"], tokens[salient], positions[salient])
            self._feed(self.paths["value"], tokens[~salient], positions[~salient])
        else:
            self._feed(next(iter(self.paths.values())), tokens, positions)

    def _feed(self, path: CachePath, tokens: torch.Tensor, positions: torch.Tensor) -> None:
        if path.residual is not None:
            tokens = torch.cat([path.residual, tokens])
            positions = torch.cat([path.residual_positions, positions])
        full = tokens.shape[0] // self.group_tokens * self.group_tokens
        if full:
            groups = tokens[:full].reshape(-1, self.group_tokens, self.d)
            if path.value_format is None:
                quantized = quantize_keys(groups, self.f, self.fft, self.in_bits)
            else:
                quantized = quantize_values(groups, path.value_format, self.in_bits)
            path.groups.append((positions[:full].reshape(-1, self.group_tokens), quantized))
        path.residual, path.residual_positions = tokens[full:], positions[full:]

    def dequantize(self) -> torch.Tensor:
        """All tokens so far [T, D], fixed point with ``frac_bits``, in arrival order.

        Residual tokens come back exactly (shifted left by ``frac_bits``).
        """
        out = torch.zeros((self.tokens, self.d), dtype=torch.int64)
        for path in self.paths.values():
            for positions, quantized in path.groups:
                if isinstance(quantized, KeyGroups):
                    values = dequantize_keys(quantized, self.frac_bits)
                else:
                    values = dequantize_values(quantized, self.frac_bits)
                out[positions.reshape(-1)] = values.reshape(-1, self.d)
            if path.residual is not None:
                out[path.residual_positions] = path.residual << self.frac_bits
        return out

    def quantized_groups(self, path: str | None = None) -> list[tuple[torch.Tensor, KeyGroups | ValueGroups]]:
        """The completed groups of a path (default: the first), one batch per ``append``."""
        return self.paths[path or next(iter(self.paths))].groups
