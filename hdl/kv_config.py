"""Parameters of the VidKV KV-cache engines and every width derived from them (one place)."""

from __future__ import annotations

from dataclasses import dataclass, field

from golden.vidkv import DEFAULT_FRAC_BITS, GROUP_TOKENS, HEAD_DIMS, KEY_FRACTIONS, n_high
from golden.vidkv_fft import check_length
from golden.vidkv_pack import POSITION_BITS, TERNARY_LAYOUTS, metadata_widths
from golden.vidkv_stream import TAG_BITS, trit_words, words_per_channel

__all__ = ["KvConfig", "MAX_LANES"]

#: The widest channel parallelism (one token per cycle at D = 128).
MAX_LANES = max(HEAD_DIMS)


@dataclass(frozen=True)
class KvConfig:
    """A validated KV quantize-engine configuration and its derived widths.

    Parameters (the names of ``mixbit generate kv_quant -p``): ``d`` (head dimension),
    ``group_tokens`` (Tg), ``in_bits`` (signed input width), ``lanes`` (channels per
    cycle, a power of two dividing D), ``f`` (fraction of 2-bit key channels),
    ``ternary_layout`` (``i2`` or ``b3`` for ternary values), ``stp`` (build the
    salient-token path for values), ``fft`` (keys: the normal channels' FFT, N = D - D f
    a power of two) and ``fft_butterflies`` (butterfly units of the FFT core, a power of
    two; at most N / 2 are built); the dequantize engine also takes ``frac_bits`` (fraction bits of
    its fixed-point outputs).
    """

    d: int = 128
    group_tokens: int = 32
    in_bits: int = 16
    lanes: int = 8
    f: float = 0.5
    ternary_layout: str = "i2"
    stp: bool = True
    frac_bits: int = DEFAULT_FRAC_BITS
    fft: bool = False
    fft_butterflies: int = 4
    widths: dict = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        if self.d not in HEAD_DIMS:
            raise ValueError(f"d must be one of {HEAD_DIMS}, not {self.d!r}")
        if self.group_tokens not in GROUP_TOKENS:
            raise ValueError(f"group_tokens must be one of {GROUP_TOKENS}, not {self.group_tokens!r}")
        if isinstance(self.in_bits, bool) or not isinstance(self.in_bits, int) or not 8 <= self.in_bits <= 16:
            raise ValueError(f"in_bits must be an integer in 8..16, not {self.in_bits!r}")
        lanes = self.lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1) \
                or self.d % lanes:
            raise ValueError(f"lanes must be a power of two that divides d = {self.d}, not {lanes!r}")
        if self.f not in KEY_FRACTIONS:
            raise ValueError(f"f must be one of {KEY_FRACTIONS}, not {self.f!r}")
        if self.ternary_layout not in TERNARY_LAYOUTS:
            raise ValueError(f"ternary_layout must be one of {TERNARY_LAYOUTS}, not {self.ternary_layout!r}")
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 8:
            raise ValueError(f"frac_bits must be an integer in 0..8, not {self.frac_bits!r}")
        if not isinstance(self.stp, bool):
            raise ValueError(f"stp must be a bool, not {self.stp!r}")
        if not isinstance(self.fft, bool):
            raise ValueError(f"fft must be a bool, not {self.fft!r}")
        blocks = self.d // lanes
        n_hi = n_high(self.d, self.f)
        # The FFT transforms the normal channels; f = 1 leaves none (as golden: no FFT then).
        points = self.d - n_hi if self.fft else 0
        if points:
            check_length(points,
                         argument=f"with fft, N (the normal channels, d - d*f for d = {self.d}, f = {self.f})")
        p = self.fft_butterflies
        if isinstance(p, bool) or not isinstance(p, int) or p < 1 or p & (p - 1):
            raise ValueError(f"fft_butterflies must be a power of two (at most N/2 are used), not {p!r}")
        meta = metadata_widths(self.in_bits, self.group_tokens, points or None)
        # A path fills one slot while the encoder reads another; with key ranking a third
        # slot lets the ranker work on a complete group in between, with the FFT a fourth.
        slots_per_path = (3 if 0 < n_hi < self.d else 2) + (1 if points else 0)
        slots = slots_per_path * (2 if self.stp else 1)
        widths = {
            "n_hi": n_hi,
            "blocks": blocks,
            "slots_per_path": slots_per_path,
            "slots": slots,
            "mn": meta["mn"],
            "r": meta["r"],
            "s": meta["s"],
            "fft_points": points,
            "fft_butterflies": min(p, points // 2),
            "s_fft": meta.get("s_fft", 0),
            "code_words_2bit": words_per_channel(self.group_tokens, 2),
            "code_words_1bit": words_per_channel(self.group_tokens, 1),
            "mask_words": self.d // 32,
            "trit_words": trit_words(self.group_tokens, self.d),
            "position": POSITION_BITS,
            "tag": TAG_BITS,
            "buffer_depth": slots * self.group_tokens * blocks,
            "buffer_bits": lanes * self.in_bits,
            # Dequantized outputs: |value| <= 2**(in_bits - 1) * 2**frac_bits (a 1-bit or ternary
            # channel's S / Tg reaches 2**(in_bits - 1)), signed. With the FFT a decoded lane
            # reaches 2**(in_bits + log2 N - 1 + frac_bits) (the lanes' bound, docs/formats.md) and
            # the inverse FFT of such lanes one bit more than a lane (hdl/kv_fft.fft_widths).
            "out": self.in_bits + self.frac_bits + 1 + ((points.bit_length() - 1) + 1 if points else 0),
        }
        object.__setattr__(self, "widths", widths)

    @property
    def n_hi(self) -> int:
        return self.widths["n_hi"]

    @property
    def blocks(self) -> int:
        """Input beats per token: D / lanes."""
        return self.widths["blocks"]

    @classmethod
    def from_params(cls, params: dict) -> KvConfig:
        return cls(**{name: params[name] for name in cls.__dataclass_fields__ if name in params})

    def golden_options(self, value_format: str = "ternary") -> dict:
        """Keyword arguments of golden's ``pack_tokens`` / ``parse_beats`` for this engine."""
        return {"group_tokens": self.group_tokens, "in_bits": self.in_bits, "value_format": value_format,
                "ternary_layout": self.ternary_layout, "fft": self.fft}
