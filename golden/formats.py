"""Vectorized torch decode/encode of BitMoD weight code words (docs/bitmod_contract.md section 1).

The value tables come from :mod:`arch.bitmod`; this module only turns them into
lookup tensors. ``decode(encode(v)) == v`` for every value on a grid and
``encode(decode(c)) == c`` for every code word.
"""

from __future__ import annotations

import torch

from arch.bitmod import code_values, family

__all__ = ["decode", "encode", "grid"]

_DT_NAMES = ("ER", "EA")


def _lut(name: str, device: torch.device) -> torch.Tensor:
    """Values of every code, shape ``[2 (dt), 2**bits]``, int64."""
    return torch.tensor([code_values(name, 0), code_values(name, 1)], dtype=torch.int64, device=device)


def _dt_tensor(dt, like: torch.Tensor) -> torch.Tensor:
    dt = torch.as_tensor(dt, device=like.device)
    if dt.is_floating_point() or dt.is_complex():
        raise TypeError(f"dt must be an integer or an integer tensor, not dtype {dt.dtype}")
    bad = (dt != 0) & (dt != 1)
    if bad.any():
        raise ValueError(f"dt must be 0 or 1, found {int(dt[bad].flatten()[0])}")
    return dt.to(torch.int64)


def _first(mask: torch.Tensor, tensor: torch.Tensor) -> str:
    """``index = value`` of the first element where ``mask`` is set."""
    index = tuple(int(i) for i in mask.nonzero()[0])
    return f"{list(index)} = {tensor[index].item()!r}"


def grid(name: str, dt: int) -> torch.Tensor:
    """Sorted distinct values that family ``name`` can represent for datatype bit ``dt``."""
    return torch.tensor(sorted(set(code_values(name, dt))), dtype=torch.int64)


def decode(codes: torch.Tensor, name: str, dt=0) -> torch.Tensor:
    """Value ``v(code, dt)`` of raw code words, in code units (int64).

    Parameters
    ----------
    codes : integer tensor
        Raw unsigned code words, ``0 <= code < 2**bits``.
    name : str
        Family name (``fp4``, ``fp3``, ``int4``, ``int3``, ``int6``, ``int8``).
    dt : int or integer tensor broadcastable to ``codes``
        Datatype bit per element (ER = 0, EA = 1); ignored by int families.
    """
    fam = family(name)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, not {type(codes).__name__}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor, not dtype {codes.dtype}")
    out_of_range = (codes < 0) | (codes >= (1 << fam.bits))
    if out_of_range.any():
        raise ValueError(
            f"codes must lie in 0..{(1 << fam.bits) - 1} for {name}; "
            f"codes{_first(out_of_range, codes)}"
        )
    dt = _dt_tensor(dt, codes)
    return _lut(name, codes.device)[dt, codes.to(torch.int64)]


def encode(values: torch.Tensor, name: str, dt=0) -> torch.Tensor:
    """Code word of each value, the inverse of :func:`decode` (int64).

    ``values`` may be an integer tensor or a float tensor holding integers; every
    value must lie on the grid of ``name`` for its ``dt``, else ValueError.
    """
    fam = family(name)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a torch.Tensor, not {type(values).__name__}")
    if values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"values must be an integer or float tensor, not dtype {values.dtype}")
    if values.is_floating_point():
        not_finite = ~torch.isfinite(values)
        if not_finite.any():
            raise ValueError(f"values must be finite; values{_first(not_finite, values)}")
        not_integer = values != values.round()
        if not_integer.any():
            raise ValueError(
                f"values must be integers in code units; values{_first(not_integer, values)}"
            )
    dt = _dt_tensor(dt, values)
    lut = _lut(name, values.device)
    vmin = int(lut.min())
    span = int(lut.max()) - vmin + 1
    inverse = torch.full((2, span), -1, dtype=torch.int64, device=values.device)
    codes = torch.arange(lut.shape[1], device=values.device).expand(2, -1)
    inverse.scatter_(1, lut - vmin, codes)
    v = values.to(torch.int64)
    dt, v = torch.broadcast_tensors(dt, v)
    in_span = (v >= vmin) & (v < vmin + span)
    result = torch.full_like(v, -1)
    result[in_span] = inverse[dt[in_span], v[in_span] - vmin]
    off_grid = result < 0
    if off_grid.any():
        index = tuple(int(i) for i in off_grid.nonzero()[0])
        kind = f" {_DT_NAMES[int(dt[index])]} (dt={int(dt[index])})" if fam.kind == "fp" else ""
        raise ValueError(
            f"values{list(index)} = {int(v[index])} is not on the {name}{kind} grid "
            f"{grid(name, int(dt[index])).tolist()}"
        )
    return result
