"""Token beats of the KV quantize engine's input stream, and the checks of what a run is given."""

from __future__ import annotations

import torch

from golden.vidkv import check_tokens
from hdl.kv_config import KvConfig

__all__ = ["token_beats", "check_run_inputs"]


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
