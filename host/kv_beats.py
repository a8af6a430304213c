"""The KV engines' beats on the host side: tokens into input beats, output beats back into
tokens or packed groups, and the checks of what a run is given."""

from __future__ import annotations

import torch

from arch.kv_config import KvConfig
from golden.vidkv import check_tokens
from golden.vidkv_pack import PackedKV
from golden.vidkv_stream import parse_beats

__all__ = ["token_beats", "check_run_inputs", "corner_tokens", "unpack_output", "parse_job_beats", "packed_mode",
           "check_packed"]


def check_run_inputs(config: KvConfig, x, kind: str, salient=None, value_format: str = "ternary") -> None:
    """ValueError/TypeError naming the argument when a run's inputs do not suit ``config``."""
    if kind not in ("key", "value"):
        raise ValueError(f"kind must be 'key' or 'value', not {kind!r}")
    if value_format not in ("ternary", "2bit"):
        raise ValueError(f"value_format must be 'ternary' or '2bit', not {value_format!r}")
    check_tokens(x, config.in_bits, "x", group=False)
    if x.dim() != 2 or x.shape[1] != config.d:
        raise ValueError(f"x must have shape [T, {config.d}] (d = {config.d}), not {list(x.shape)}")
    if salient is not None:
        if kind != "value" or not config.stp:
            raise ValueError("salient applies to values on an engine built with stp=True "
                             f"(kind = {kind!r}, stp = {config.stp})")
        if not isinstance(salient, torch.Tensor) or salient.dtype != torch.bool or salient.shape != (x.shape[0],):
            shape = list(salient.shape) if isinstance(salient, torch.Tensor) else type(salient).__name__
            raise ValueError(f"salient must be a bool tensor of shape [{x.shape[0]}], not {shape}")


def token_beats(config: KvConfig, x: torch.Tensor, salient: torch.Tensor | None = None) -> list[int]:
    """Input payloads (as integers) for tokens ``x`` [T, D]: D / lanes beats a token, channel order."""
    bits, lanes = config.in_bits, config.lanes
    mask = (1 << bits) - 1
    beats = []
    for t, token in enumerate(x.tolist()):
        flag = int(bool(salient[t])) if salient is not None else 0
        for b in range(config.blocks):
            word = 0
            for i, v in enumerate(token[b * lanes:(b + 1) * lanes]):
                word |= (v & mask) << (i * bits)
            beats.append(word | flag << (lanes * bits))
    return beats


def corner_tokens(config: KvConfig, tokens: int, seed: int) -> torch.Tensor:
    """Random tokens [T, D] with directed corners in channels 0..6 of every group.

    0: constant (r = 0); 1: all negative; 2: the largest range (-2**(b-1) and 2**(b-1) - 1);
    3: 2-bit rounding ties (r = 6, every x - mn in 0..6); 4: ternary ties (S = 2 Tg, |x| = 1);
    5 and 6: equal ranges (the lower index ranks first).
    """
    gen = torch.Generator().manual_seed(seed)
    high = 1 << (config.in_bits - 1)
    x = torch.randint(-high, high, (tokens, config.d), generator=gen)
    x[:, 0] = 7
    x[:, 1] = -torch.randint(1, high + 1, (tokens,), generator=gen)
    x[::2, 2], x[1::2, 2] = -high, high - 1
    x[:, 3] = torch.tensor([0, 6, 1, 2, 3, 4, 5, 6] * (tokens // 8 + 1))[:tokens]
    tg = config.group_tokens
    x[:, 4] = torch.tensor([1, 3] + [2] * (tg - 2)).repeat(tokens // tg + 1)[:tokens]
    x[:, 5] = x[:, 6]
    return x


def unpack_output(config: KvConfig, payloads: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The dequantize engine's output beats -> tokens [n, D] and positions [n] (output order).

    ValueError when the beats do not make whole tokens or a token's beats disagree on its position.
    """
    bits, lanes, blocks = config.out_bits, config.lanes, config.blocks
    if len(payloads) % blocks:
        raise ValueError(f"{len(payloads)} output beats do not make whole tokens of {blocks} beats")
    mask = (1 << bits) - 1
    tokens, positions = [], []
    for t in range(len(payloads) // blocks):
        values, position = [], None
        for word in payloads[t * blocks:(t + 1) * blocks]:
            for i in range(lanes):
                v = word >> (i * bits) & mask
                values.append(v - (1 << bits) if v >> (bits - 1) else v)
            here = word >> (lanes * bits)
            if position is not None and here != position:
                raise ValueError(f"token {t}: its beats carry positions {position} and {here}")
            position = here
        tokens.append(values)
        positions.append(position)
    return (torch.tensor(tokens, dtype=torch.int64).reshape(-1, config.d),
            torch.tensor(positions, dtype=torch.int64))


def parse_job_beats(config: KvConfig, beats, value_format: str, stp: bool) -> dict[str, PackedKV]:
    """The quantize engine's ``(tag, data)`` output beats -> golden's packed groups per path."""
    return parse_beats([tuple(b) for b in beats], d=config.d, n_hi=config.n_hi, stp=stp,
                       **config.golden_options(value_format))


def packed_mode(packed: dict[str, PackedKV]) -> dict[str, bool]:
    """The run-time inputs that the packed groups were quantized with (``value_2bit``, ``stp``)."""
    if not isinstance(packed, dict) or not packed or not all(isinstance(p, PackedKV) for p in packed.values()):
        raise TypeError("packed must be a non-empty dict of path name -> golden.vidkv_pack.PackedKV "
                        "(what run_kv_quantizer or golden.vidkv_stream.pack_tokens return)")
    value = packed.get("value")
    return {"value_2bit": bool(value is not None and value.value_format == "2bit"),
            "stp": any(p.positions is not None for p in packed.values())}


def check_packed(config: KvConfig, packed: dict[str, PackedKV]) -> None:
    """ValueError naming the path and field when packed groups do not suit the dequantize engine ``config``."""
    for path, p in packed.items():
        for name, mine, theirs in (("d", p.d, config.d), ("group_tokens", p.group_tokens, config.group_tokens),
                                   ("in_bits", p.in_bits, config.in_bits)):
            if mine != theirs:
                raise ValueError(f"packed[{path!r}].{name} = {mine} does not match the engine's {name} = {theirs}")
        if p.kind == "key" and p.fft and p.n_hi < p.d:
            if not config.fft:
                raise ValueError(f"packed[{path!r}] uses the FFT option; build the engine with fft = True")
            if p.n_hi != config.n_hi:
                raise ValueError(f"packed[{path!r}] has {p.d - p.n_hi} normal (FFT) channels; the engine was "
                                 f"built for {p.d - config.n_hi} (f = {config.f})")
        elif p.kind == "key" and config.fft_points:
            raise ValueError(f"packed[{path!r}] has no FFT lanes; the engine was built with fft = True "
                             f"(f = {config.f})")
        if p.kind == "value" and p.value_format == "ternary" and p.ternary_layout != config.ternary_layout:
            raise ValueError(f"packed[{path!r}] is ternary {p.ternary_layout}; the engine was built for "
                             f"ternary_layout = {config.ternary_layout}")
        if p.positions is not None and not config.stp:
            raise ValueError(f"packed[{path!r}] has STP positions; the engine was built with stp = False")
