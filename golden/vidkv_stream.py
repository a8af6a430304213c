"""The KV quantize engine's output stream: tagged 32-bit beats that carry golden's packed groups.

The engine (``hdl.kv_quant``) emits, for every completed group, beats of
``{tag, data}``; :func:`parse_beats` turns them back into :class:`PackedKV` exactly as
:func:`golden.vidkv_pack.pack_keys` / :func:`pack_values` produce them, and
:func:`group_beats` is the canonical order of one group's beats (docs/formats.md).

Per group, in this order (``TRITS`` beats may come anywhere after ``HEADER``):

* ``HEADER``: bit 0 = salient path (STP), bit 1 = values (0: keys).
* ``POSITION`` x Tg (values with STP only): the token positions, in group order.
* ``MASK`` x D/32 (keys): the channel mask words.
* per channel c = 0..D-1, its record: ``CODE`` words (its packed codes along tokens:
  2-bit channels ``ceil(2 Tg / 32)``, 1-bit channels ``ceil(Tg / 32)``, none for
  ``b3`` values), then one ``META`` word: ``mn`` (two's complement, sign-extended to 16
  bits) in bits 0-15 and ``r`` in bits 16-31 for a 2-bit channel; ``s`` for a 1-bit or
  ternary channel.
* ``TRITS`` x ``ceil(Tg D / 20)`` (``b3`` values): the group's ``b3`` bytes, four per word,
  little-endian; bytes past ``ceil(Tg D / 5)`` are zero.
"""

from __future__ import annotations

import torch

from arch.vidkv import (
    CODE,
    DEFAULT_FRAC_BITS,
    DEFAULT_IN_BITS,
    HEADER,
    MASK,
    META,
    PATHS,
    POSITION,
    TAG_BITS,
    TAG_NAMES,
    TAGS,
    TRITS,
    beats_per_group,
    trit_words,
    words_per_channel,
)

from .vidkv_cache import QuantizedKVCache
from .vidkv_groups import KeyGroups, ValueGroups, dequantize_keys, dequantize_values
from .vidkv_pack import PackedKV, metadata_widths, pack_keys, pack_values, unpack

__all__ = ["TAGS", "TAG_BITS", "HEADER", "POSITION", "MASK", "CODE", "META", "TRITS", "words_per_channel",
           "trit_words", "group_beats", "parse_beats", "beats_per_group", "group_counts",
           "dequantize_packed", "stream_beats", "pack_tokens", "PATHS"]

_MASK32 = (1 << 32) - 1


def _path(p: PackedKV, salient: bool) -> str:
    return "key" if p.kind == "key" else ("salient" if salient else "value")


def _mn_r(mn: int, r: int) -> int:
    return (mn & 0xFFFF) | r << 16


def group_beats(p: PackedKV, g: int, salient: bool = False) -> list[tuple[int, int]]:
    """The ``(tag, data)`` beats of group ``g`` of ``p`` in the canonical order."""
    d, tg = p.d, p.group_tokens
    beats = [(HEADER, int(salient) | (p.kind == "value") << 1)]
    if p.positions is not None:
        beats += [(POSITION, int(v)) for v in p.positions[g]]
    words = [int(w) for w in p.words[g]]
    meta = {name: [int(v) & _MASK32 for v in t[g]] for name, t in p.meta.items()}
    if p.kind == "key":
        mask_words, words = words[:d // 32], words[d // 32:]
        beats += [(MASK, w) for w in mask_words]
        mask = [mask_words[c // 32] >> (c % 32) & 1 for c in range(d)]
        hi_w, lo_w = words_per_channel(tg, 2), words_per_channel(tg, 1)
        n_hi = sum(mask)
        hi_words, lo_words = words[:n_hi * hi_w], words[n_hi * hi_w:]
        s = meta["s_fft" if "s_fft" in meta else "s"]
        hi = lo = 0
        for c in range(d):
            if mask[c]:
                beats += [(CODE, w) for w in hi_words[hi * hi_w:(hi + 1) * hi_w]]
                beats += [(META, _mn_r(meta["mn"][hi], meta["r"][hi]))]
                hi += 1
            else:
                beats += [(CODE, w) for w in lo_words[lo * lo_w:(lo + 1) * lo_w]]
                beats += [(META, s[lo])]
                lo += 1
        return beats
    per = words_per_channel(tg, 2) if words else 0
    for c in range(d):
        beats += [(CODE, w) for w in words[c * per:(c + 1) * per]]
        beats += [(META, _mn_r(meta["mn"][c], meta["r"][c]) if p.value_format == "2bit" else meta["s"][c])]
    if p.trits is not None:
        data = [int(b) for b in p.trits[g]]
        data += [0] * (-len(data) % 4)
        beats += [(TRITS, int.from_bytes(bytes(data[i:i + 4]), "little")) for i in range(0, len(data), 4)]
    return beats


def group_counts(kind: str, tokens: int, group_tokens: int, salient=None) -> dict[str, int]:
    """Completed groups per path after ``tokens`` tokens (``salient`` [T] bool: STP)."""
    if kind == "key":
        return {"key": tokens // group_tokens}
    if salient is None:
        return {"value": tokens // group_tokens}
    hot = int(salient.sum())
    return {"value": (tokens - hot) // group_tokens, "salient": hot // group_tokens}


class _Reader:
    def __init__(self, beats, tag: int, what: str):
        self.items, self.tag, self.what, self.at = beats, tag, what, 0

    def take(self, count: int) -> list[int]:
        if self.at + count > len(self.items):
            raise ValueError(f"group {self.what}: {len(self.items)} {TAG_NAMES[self.tag]} beats, expected more")
        self.at += count
        return self.items[self.at - count:self.at]

    def done(self) -> None:
        if self.at != len(self.items):
            raise ValueError(f"group {self.what}: {len(self.items)} {TAG_NAMES[self.tag]} beats, "
                             f"expected {self.at}")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _parse_group(tagged: dict[int, list[int]], *, d: int, tg: int, in_bits: int, n_hi: int, value: bool,
                 salient: bool, value_format: str, ternary_layout: str, stp: bool, what: str) -> dict:
    read = {tag: _Reader(tagged.get(tag, []), tag, what) for tag in TAGS.values() if tag != HEADER}
    group: dict = {"positions": read[POSITION].take(tg) if value and stp else None}
    if not value:
        mask_words = read[MASK].take(d // 32)
        mask = [mask_words[c // 32] >> (c % 32) & 1 for c in range(d)]
        if sum(mask) != n_hi:
            raise ValueError(f"group {what}: the mask has {sum(mask)} 2-bit channels, not {n_hi}")
        hi, lo, mn, r, s = [], [], [], [], []
        for c in range(d):
            if mask[c]:
                hi += read[CODE].take(words_per_channel(tg, 2))
                word, = read[META].take(1)
                mn.append(_signed(word, 16))
                r.append(word >> 16)
            else:
                lo += read[CODE].take(words_per_channel(tg, 1))
                s += read[META].take(1)
        group.update(words=mask_words + hi + lo, meta={"mn": mn, "r": r, "s": s})
    else:
        two_bit = salient or value_format == "2bit"
        b3 = not two_bit and ternary_layout == "b3"
        words, mn, r, s = [], [], [], []
        for _ in range(d):
            if not b3:
                words += read[CODE].take(words_per_channel(tg, 2))
            if two_bit:
                word, = read[META].take(1)
                mn.append(_signed(word, 16))
                r.append(word >> 16)
            else:
                s += read[META].take(1)
        group.update(words=words, meta={"mn": mn, "r": r} if two_bit else {"s": s})
        if b3:
            data = b"".join(w.to_bytes(4, "little") for w in read[TRITS].take(trit_words(tg, d)))
            count = -(-tg * d // 5)
            if any(data[count:]):
                raise ValueError(f"group {what}: nonzero padding after the {count} trit bytes")
            group["trits"] = list(data[:count])
    for reader in read.values():
        reader.done()
    return group


def parse_beats(beats, *, d: int, group_tokens: int, in_bits: int = DEFAULT_IN_BITS, n_hi: int = 0,
                value_format: str = "ternary", ternary_layout: str = "i2", stp: bool = False, fft: bool = False,
                ) -> dict[str, PackedKV]:
    """Packed groups per path (``"key"``, ``"value"``, ``"salient"``) from ``(tag, data)`` beats.

    The inverse of :func:`group_beats` over a whole stream; a path without groups is
    left out. ``fft``: key groups carry FFT lanes in their 1-bit records (``s_fft``).
    ValueError on a beat before the first header, a tag out of range, or a group with
    missing or extra beats.
    """
    groups: list[tuple[int, dict[int, list[int]]]] = []
    for index, (tag, data) in enumerate(beats):
        if tag == HEADER:
            groups.append((data, {}))
        elif tag not in TAG_NAMES:
            raise ValueError(f"beat {index}: tag {tag} is not one of {TAGS}")
        elif not groups:
            raise ValueError(f"beat {index}: {TAG_NAMES[tag]} beat before the first header")
        else:
            groups[-1][1].setdefault(tag, []).append(data)
    by_path: dict[str, list[dict]] = {}
    for number, (header, tagged) in enumerate(groups):
        value, salient = bool(header >> 1 & 1), bool(header & 1)
        path = "key" if not value else ("salient" if salient else "value")
        by_path.setdefault(path, []).append(_parse_group(
            tagged, d=d, tg=group_tokens, in_bits=in_bits, n_hi=n_hi, value=value, salient=salient,
            value_format=value_format, ternary_layout=ternary_layout, stp=stp, what=f"{number} ({path})"))
    return {path: _packed(path, found, d=d, tg=group_tokens, in_bits=in_bits, n_hi=n_hi, fft=fft,
                          value_format=value_format, ternary_layout=ternary_layout)
            for path, found in by_path.items()}


def _rows(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), len(rows[0]))


def _packed(path: str, groups: list[dict], *, d: int, tg: int, in_bits: int, n_hi: int, fft: bool,
            value_format: str, ternary_layout: str) -> PackedKV:
    words = _rows([g["words"] for g in groups])
    meta = {name: _rows([g["meta"][name] for g in groups]) for name in groups[0]["meta"]}
    if path == "key":
        spectral = fft and n_hi < d            # as pack_keys: f = 1 leaves nothing to transform
        if spectral:
            meta["s_fft"] = meta.pop("s")
        widths = metadata_widths(in_bits, tg, d - n_hi if spectral else None)
        return PackedKV("key", d, tg, in_bits, words, meta, widths, n_hi=n_hi, fft=fft, code_bits=tg * (d + n_hi))
    widths = metadata_widths(in_bits, tg)
    fmt = "2bit" if path == "salient" or value_format == "2bit" else "ternary"
    layout = ternary_layout if fmt == "ternary" else "i2"
    positions = torch.tensor([g["positions"] for g in groups], dtype=torch.int64) \
        if groups[0]["positions"] is not None else None
    trits = torch.tensor([g["trits"] for g in groups], dtype=torch.uint8) if layout == "b3" else None
    code_bits = 8 * trits.shape[-1] if trits is not None else 2 * tg * d
    return PackedKV("value", d, tg, in_bits, words, meta, widths, value_format=fmt, ternary_layout=layout,
                    trits=trits, positions=positions, code_bits=code_bits)


def pack_tokens(x: torch.Tensor, kind: str, *, group_tokens: int = 32, in_bits: int = DEFAULT_IN_BITS,
                f: float = 0.5, value_format: str = "ternary", ternary_layout: str = "i2", stp: bool = False,
                fft: bool = False, salient: torch.Tensor | None = None) -> dict[str, PackedKV]:
    """Golden packed groups per path of the tokens ``x`` [T, D] streamed in order (the engine's job).

    Every completed group of every path; the incomplete tail of a path stays in its
    residual window and is not packed. STP value groups carry their positions; ``fft``
    (keys) transforms the normal channels.
    """
    fft = fft and kind == "key"
    cache = QuantizedKVCache(kind, x.shape[-1], group_tokens, in_bits, f=f, fft=fft, value_format=value_format,
                             stp=stp)
    cache.append(x, salient)
    out = {}
    for name, path in cache.paths.items():
        if not path.groups:
            continue
        positions = torch.cat([p for p, _ in path.groups])
        found = [g for _, g in path.groups]
        if kind == "key":
            fields = ("mask", "q", "mn", "r", "b", "s")
            keys = KeyGroups(*(torch.cat([getattr(g, f) for g in found]) for f in fields), fft)
            out[name] = pack_keys(keys, in_bits)
        else:
            fmt = found[0].format
            cat = {f: torch.cat([getattr(g, f) for g in found]) if getattr(found[0], f) is not None else None
                   for f in ("codes", "s", "mn", "r")}
            layout = ternary_layout if fmt == "ternary" else "i2"
            out[name] = pack_values(ValueGroups(fmt, **cat), in_bits, layout, positions if stp else None)
    return out


def stream_beats(packed: dict[str, PackedKV]) -> list[tuple[int, int]]:
    """Every group's beats, path after path (each path's groups in order)."""
    return [beat for path, p in packed.items() for g in range(p.groups)
            for beat in group_beats(p, g, path == "salient")]


def dequantize_packed(packed: dict[str, PackedKV], frac_bits: int = DEFAULT_FRAC_BITS,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point tokens [n, D] of every packed group and their positions [n], in position order.

    A path's groups without recorded positions hold its tokens in order from 0 (keys,
    values without STP).
    """
    tokens, positions = [], []
    for p in packed.values():
        groups = unpack(p)
        values = dequantize_keys(groups, frac_bits) if p.kind == "key" else dequantize_values(groups, frac_bits)
        tokens.append(values.reshape(-1, p.d))
        positions.append(p.positions.reshape(-1) if p.positions is not None
                         else torch.arange(p.groups * p.group_tokens))
    tokens, positions = torch.cat(tokens), torch.cat(positions)
    order = torch.argsort(positions)
    return tokens[order], positions[order]
