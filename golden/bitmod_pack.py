"""The packed BitMoD weight stream that the PE array reads (layout in docs/formats.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arch.bitmod import pack_layout

from .bitmod import BitmodWeights

__all__ = ["PackedWeights", "pack", "unpack", "weight_beats"]


@dataclass
class PackedWeights:
    """A packed weight stream plus what the host keeps beside it.

    Attributes
    ----------
    words : int64 tensor [W]
        The stream, one 32-bit unsigned word per element.
    family, n, k, group_size, scale_bits
        Shape and parameters of the weights.
    cols : int
        Rows (output channels) interleaved per tile; the last tile is padded with
        all-zero records.
    cs : float32 tensor [N]
        Channel scales (host side only, not in the stream).
    """

    words: torch.Tensor
    family: str
    n: int
    k: int
    group_size: int
    scale_bits: int
    cols: int
    cs: torch.Tensor

    @property
    def bits_per_weight(self) -> float:
        """Stream bits per real weight, metadata and padding included."""
        return 32.0 * self.words.numel() / (self.n * self.k)


def _tiles(n: int, cols: int) -> int:
    return -(-n // cols)


def pack(bw: BitmodWeights, cols: int = 1) -> PackedWeights:
    """Pack ``bw`` into the word stream: tiles of ``cols`` rows, then groups, then rows of the tile.

    Record order: ``for tile: for group g: for c in range(cols): record(row = tile * cols + c, g)``.
    """
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ValueError(f"cols must be a positive integer, not {cols!r}")
    layout = pack_layout(bw.family, bw.group_size, bw.scale_bits)
    n, k = bw.shape
    ng = k // bw.group_size
    rows = _tiles(n, cols) * cols
    device = bw.codes.device

    def padded(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((rows, *t.shape[1:]), dtype=torch.int64, device=device)
        out[:n] = t.to(torch.int64)
        return out

    meta = (padded(bw.dt) << layout["dt_bit"]) | (padded(bw.sg) << layout["sg_bit"]) \
        | (padded(bw.sq) << layout["sq_shift"])                               # [rows, ng]
    cpw, words_per_group = layout["codes_per_word"], layout["code_words"]
    codes = torch.zeros((rows, ng, words_per_group * cpw), dtype=torch.int64, device=device)
    codes[:n, :, :bw.group_size] = bw.codes.to(torch.int64).reshape(n, ng, bw.group_size)
    shifts = torch.arange(cpw, device=device) * layout["code_bits"]
    code_words = (codes.reshape(rows, ng, words_per_group, cpw) << shifts).sum(dim=-1)  # [rows, ng, cw]
    records = torch.cat([meta[..., None], code_words], dim=-1)                # [rows, ng, wpg]
    tiles = records.reshape(rows // cols, cols, ng, -1).transpose(1, 2)       # [tile, ng, cols, wpg]
    return PackedWeights(tiles.reshape(-1), bw.family, n, k, bw.group_size, bw.scale_bits, cols,
                         bw.cs.clone())


def unpack(packed: PackedWeights) -> BitmodWeights:
    """The inverse of :func:`pack`: ``unpack(pack(bw))`` equals ``bw`` exactly."""
    layout = pack_layout(packed.family, packed.group_size, packed.scale_bits)
    n, k, cols = packed.n, packed.k, packed.cols
    ng = k // packed.group_size
    rows = _tiles(n, cols) * cols
    expected = rows * ng * layout["words_per_group"]
    if packed.words.numel() != expected:
        raise ValueError(f"words must hold {expected} words for this shape, not {packed.words.numel()}")
    records = packed.words.to(torch.int64).reshape(rows // cols, ng, cols, -1).transpose(1, 2)
    records = records.reshape(rows, ng, -1)[:n]
    meta = records[..., 0]
    cpw, bits = layout["codes_per_word"], layout["code_bits"]
    shifts = torch.arange(cpw, device=records.device) * bits
    codes = (records[..., 1:, None] >> shifts) & ((1 << bits) - 1)            # [n, ng, cw, cpw]
    codes = codes.reshape(n, ng, -1)[..., :packed.group_size].reshape(n, k)
    return BitmodWeights(
        codes=codes.to(torch.uint8),
        dt=((meta >> layout["dt_bit"]) & 1).to(torch.uint8),
        sg=((meta >> layout["sg_bit"]) & 1).to(torch.uint8),
        sq=((meta >> layout["sq_shift"]) & ((1 << packed.scale_bits) - 1)).to(torch.int32),
        cs=packed.cs.clone(),
        family=packed.family,
        group_size=packed.group_size,
        scale_bits=packed.scale_bits,
    )


def weight_beats(packed: PackedWeights) -> torch.Tensor:
    """The stream as the PE array reads it: ``[beats, cols]``, one word per column per beat.

    Beat order: ``for tile: for group g: for word w of a record: [word w of record(tile*cols + c, g)
    for c in range(cols)]``, so each column sees its own records in order and all
    columns move in lockstep. The words are exactly those of ``packed.words``.
    """
    layout = pack_layout(packed.family, packed.group_size, packed.scale_bits)
    tiles = _tiles(packed.n, packed.cols)
    ng = packed.k // packed.group_size
    records = packed.words.reshape(tiles, ng, packed.cols, layout["words_per_group"])
    return records.transpose(2, 3).reshape(-1, packed.cols)
