"""Test vectors for the weight decoder and their check against golden.formats.

Shared by the Amaranth-simulator unit test and the cocotb regression, so that both
drive the same exhaustive vectors and report a mismatch the same way.
"""

from __future__ import annotations

import random

import torch
from amaranth.lib import data

from arch.bitmod import FAMILIES, FAMILY_ID_BITS, check_families, family
from golden.formats import decode
from hdl.decoder import decoder_layouts, decoder_widths

__all__ = ["DecoderVector", "decoder_vectors", "terms_value", "first_mismatch"]

#: Codes tried per family ID that is not built in (those decode to zero).
_UNBUILT_SAMPLES = 16


class DecoderVector(tuple):
    """One decoder input: ``(family_id, code_word, dt)``; ``code_word`` is the whole code field."""

    __slots__ = ()

    def __new__(cls, family_id: int, code_word: int, dt: int):
        return super().__new__(cls, (family_id, code_word, dt))

    def describe(self, code_bits: int) -> str:
        family_id, code_word, dt = self
        name = FAMILIES[family_id] if family_id < len(FAMILIES) else "none"
        return f"family={name} (id {family_id}) code=0b{code_word:0{code_bits}b} dt={dt}"


def decoder_vectors(families, rng: random.Random) -> list[DecoderVector]:
    """Every code x dt of every built family, samples of the unbuilt family IDs, shuffled.

    Code bits above a family's width are random, to check that the decoder ignores them.
    """
    families = check_families(families)
    code_bits = decoder_widths(families)["code_bits"]
    vectors = []
    for family_id in range(1 << FAMILY_ID_BITS):
        name = FAMILIES[family_id] if family_id < len(FAMILIES) else None
        if name in families:
            bits = family(name).bits
            codes = range(1 << bits)
        else:
            bits = 0
            codes = [0] * _UNBUILT_SAMPLES
        for code in codes:
            for dt in (0, 1):
                upper = rng.getrandbits(code_bits - bits) if code_bits > bits else 0
                vectors.append(DecoderVector(family_id, code | upper << bits, dt))
    rng.shuffle(vectors)
    return vectors


def expected_value(families, vector: DecoderVector) -> int:
    """The golden value of a vector: ``v(code, dt)``, or 0 for a family not built in."""
    family_id, code_word, dt = vector
    if family_id >= len(FAMILIES) or FAMILIES[family_id] not in families:
        return 0
    name = FAMILIES[family_id]
    code = code_word & ((1 << family(name).bits) - 1)
    return int(decode(torch.tensor(code), name, dt))


def terms_value(layout: data.ArrayLayout, word: int) -> int:
    """Value of a decoder output word: ``sum(d[t] * 4**t)`` over its radix-4 digits."""
    total = 0
    for index, term in enumerate(layout.from_bits(word)):
        if term.nonzero:
            total += (-1 if term.negative else 1) << (int(term.shift) + 2 * index)
    return total


def _describe_terms(layout: data.ArrayLayout, word: int) -> str:
    parts = []
    for term in layout.from_bits(word):
        parts.append(f"{'-' if term.negative else '+'}{1 << int(term.shift)}" if term.nonzero else "0")
    return "[" + ", ".join(parts) + "]"


def _term_shape_error(families, vector: DecoderVector, layout: data.ArrayLayout, word: int) -> str | None:
    """Why the digits break the representation's shape, beyond their sum, else None.

    A weight of a family with ``terms`` digits per weight (its cycles per weight) must
    leave every later digit zero, and a digit is at most ``+-4`` (shift 2).
    """
    family_id = vector[0]
    allowed = family(FAMILIES[family_id]).terms if family_id < len(FAMILIES) and \
        FAMILIES[family_id] in families else 0
    for index, term in enumerate(layout.from_bits(word)):
        if term.nonzero and index >= allowed:
            return f"digit {index} is nonzero but the family has {allowed} digits per weight"
        if term.nonzero and int(term.shift) > 2:
            return f"digit {index} is +-{1 << int(term.shift)}, beyond +-4"
    return None


def first_mismatch(families, vectors, words) -> str | None:
    """None if every output word is right for its vector, else the first mismatch.

    Right means: the digits weigh up to the golden value, and no digit lies beyond the
    family's digits per weight or exceeds +-4.
    """
    families = check_families(families)
    code_bits = decoder_widths(families)["code_bits"]
    _, layout = decoder_layouts(families)
    if len(words) != len(vectors):
        return f"expected {len(vectors)} outputs, got {len(words)}"
    for index, (vector, word) in enumerate(zip(vectors, words, strict=True)):
        want, got = expected_value(families, vector), terms_value(layout, word)
        problem = f"expected {want}" if want != got else _term_shape_error(families, vector, layout, word)
        if problem:
            return (
                f"first mismatch at item {index}: {vector.describe(code_bits)}: "
                f"{problem}, got digits {_describe_terms(layout, word)} = {got} "
                f"(output word 0x{word:x})"
            )
    return None
