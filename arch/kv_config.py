"""Parameters of the VidKV KV-cache engines and every width derived from them (one place)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from arch.derived import DerivedFields
from arch.vidkv import (
    DEFAULT_FRAC_BITS,
    GROUP_TOKENS,
    HEAD_DIMS,
    KEY_FRACTIONS,
    POSITION_BITS,
    TAG_BITS,
    TERNARY_LAYOUTS,
    check_frac_bits,
    check_in_bits,
    check_length,
    fft_growth,
    metadata_widths,
    n_high,
    trit_words,
    words_per_channel,
)

__all__ = ["KvConfig", "MAX_LANES"]

#: The widest channel parallelism (one token per cycle at D = 128).
MAX_LANES = max(HEAD_DIMS)


@dataclass(frozen=True)
class KvConfig(DerivedFields):
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
    # Derived widths and counts (set by __post_init__; :meth:`derived` lists them all).
    #: 2-bit key channels, ``D f``.
    n_hi: int = field(init=False, compare=False, repr=False)
    #: Input beats per token, ``D / lanes``.
    blocks: int = field(init=False, compare=False, repr=False)
    #: Group buffer slots per path: filling, encoding, plus ranking and the FFT where built.
    slots_per_path: int = field(init=False, compare=False, repr=False)
    #: Group buffer slots of all paths.
    slots: int = field(init=False, compare=False, repr=False)
    #: Metadata widths: ``mn`` (signed), ``r`` and ``s`` (unsigned).
    mn_bits: int = field(init=False, compare=False, repr=False)
    r_bits: int = field(init=False, compare=False, repr=False)
    s_bits: int = field(init=False, compare=False, repr=False)
    #: FFT points N (the normal key channels), 0 without the FFT.
    fft_points: int = field(init=False, compare=False, repr=False)
    #: Butterfly units built: ``min(fft_butterflies, N / 2)``.
    fft_units: int = field(init=False, compare=False, repr=False)
    #: Width of an FFT lane's ``S``, 0 without the FFT.
    s_fft_bits: int = field(init=False, compare=False, repr=False)
    #: 32-bit code words of one channel's group, 2-bit and 1-bit.
    code_words_2bit: int = field(init=False, compare=False, repr=False)
    code_words_1bit: int = field(init=False, compare=False, repr=False)
    #: 32-bit words of a key group's channel mask.
    mask_words: int = field(init=False, compare=False, repr=False)
    #: 32-bit words of a group's ``b3`` bytes.
    trit_words: int = field(init=False, compare=False, repr=False)
    #: Width of a token position (STP) and of a beat's tag.
    position_bits: int = field(init=False, compare=False, repr=False)
    tag_bits: int = field(init=False, compare=False, repr=False)
    #: Entries and width of the group buffer (one entry: one input beat).
    buffer_depth: int = field(init=False, compare=False, repr=False)
    buffer_bits: int = field(init=False, compare=False, repr=False)
    #: Width of a dequantized output element (signed).
    out_bits: int = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        if self.d not in HEAD_DIMS:
            raise ValueError(f"d must be one of {HEAD_DIMS}, not {self.d!r}")
        if self.group_tokens not in GROUP_TOKENS:
            raise ValueError(f"group_tokens must be one of {GROUP_TOKENS}, not {self.group_tokens!r}")
        check_in_bits(self.in_bits)
        lanes = self.lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1) \
                or self.d % lanes:
            raise ValueError(f"lanes must be a power of two that divides d = {self.d}, not {lanes!r}")
        if self.f not in KEY_FRACTIONS:
            raise ValueError(f"f must be one of {KEY_FRACTIONS}, not {self.f!r}")
        if self.ternary_layout not in TERNARY_LAYOUTS:
            raise ValueError(f"ternary_layout must be one of {TERNARY_LAYOUTS}, not {self.ternary_layout!r}")
        check_frac_bits(self.frac_bits)
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
        self._set_derived(dict(
            n_hi=n_hi,
            blocks=blocks,
            slots_per_path=slots_per_path,
            slots=slots,
            mn_bits=meta["mn"],
            r_bits=meta["r"],
            s_bits=meta["s"],
            fft_points=points,
            fft_units=min(p, points // 2),
            s_fft_bits=meta.get("s_fft", 0),
            code_words_2bit=words_per_channel(self.group_tokens, 2),
            code_words_1bit=words_per_channel(self.group_tokens, 1),
            mask_words=self.d // 32,
            trit_words=trit_words(self.group_tokens, self.d),
            position_bits=POSITION_BITS,
            tag_bits=TAG_BITS,
            buffer_depth=slots * self.group_tokens * blocks,
            buffer_bits=lanes * self.in_bits,
            # Dequantized outputs: |value| <= 2**(in_bits - 1) * 2**frac_bits (a 1-bit or ternary
            # channel's S / Tg reaches 2**(in_bits - 1)), signed. With the FFT a decoded lane
            # reaches 2**(in_bits + log2 N - 1 + frac_bits) (the lanes' bound, docs/formats.md) and
            # the inverse FFT of such lanes one bit more than a lane (hdl/kv_fft.fft_widths).
            out_bits=self.in_bits + self.frac_bits + 1 + (fft_growth(points) if points else 0),
        ))

    @classmethod
    def from_params(cls, params: dict) -> KvConfig:
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.init and f.name in params})

    def golden_options(self, value_format: str = "ternary") -> dict:
        """Keyword arguments of golden's ``pack_tokens`` / ``parse_beats`` for this engine."""
        return {"group_tokens": self.group_tokens, "in_bits": self.in_bits, "value_format": value_format,
                "ternary_layout": self.ternary_layout, "fft": self.fft}
