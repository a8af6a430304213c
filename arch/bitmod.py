"""BitMoD weight datatypes: the value grids of docs/bitmod_contract.md section 1.

This module is the single source of truth for every fact about a weight family
(code width, value of each code, special values, terms per weight). It is pure
Python on purpose: the torch golden model (:mod:`golden.formats`), the Amaranth
RTL (:mod:`hdl.decoder`), the tests and the docs all import it, and the RTL must
not pull in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

__all__ = [
    "FAMILIES",
    "FAMILY_IDS",
    "FAMILY_ID_BITS",
    "Family",
    "family",
    "check_families",
    "code_values",
    "max_code_bits",
    "max_terms",
    "DIGIT_VALUES",
    "fp_digits",
    "max_digit_shift",
    "quantizer_grid",
    "max_abs_value",
    "ACTIVATION_BITS",
    "GROUP_SIZES",
    "SCALE_BITS_RANGE",
    "signed_bits",
    "check_group_size",
    "check_scale_bits",
    "accumulator_widths",
    "WORD_BITS",
    "pack_layout",
]

#: Width of a word of the packed weight stream (docs/formats.md).
WORD_BITS = 32

#: Activations are int8 (docs/bitmod_contract.md section 4); the hardware accepts any int8, -128 included.
ACTIVATION_BITS = 8
#: Supported group sizes G along K (docs/bitmod_contract.md section 2).
GROUP_SIZES = (32, 64, 128)
#: Supported widths S of the group scale ``sq`` (docs/bitmod_contract.md section 2).
SCALE_BITS_RANGE = range(4, 13)


@dataclass(frozen=True)
class Family:
    """Facts about one weight datatype family.

    Attributes
    ----------
    name : str
        ``fp4``, ``fp3``, ``int4``, ``int3``, ``int6`` or ``int8``.
    kind : str
        ``"fp"`` (sign-magnitude with a special code) or ``"int"`` (two's complement).
    bits : int
        Width of a code word.
    terms : int
        Radix-4 digits per weight (fp: :func:`fp_digits`; int: Booth recoding),
        which is also the bit-serial PE's cycles per weight.
    magnitudes : tuple of int
        fp only: value of each magnitude index, in code units.
    specials : tuple of int
        fp only: value of the special code (the redundant -0) for ``dt = 0`` (ER)
        and ``dt = 1`` (EA).
    """

    name: str
    kind: str
    bits: int
    terms: int
    magnitudes: tuple[int, ...] = ()
    specials: tuple[int, int] = (0, 0)

    @property
    def special_code(self) -> int | None:
        """The code word that decodes to a special value (fp only), else None."""
        return 1 << (self.bits - 1) if self.kind == "fp" else None


_FAMILY_LIST = (
    Family("fp4", "fp", 4, 2, magnitudes=(0, 1, 2, 3, 4, 6, 8, 12), specials=(10, 16)),
    Family("fp3", "fp", 3, 2, magnitudes=(0, 1, 2, 4), specials=(3, 6)),
    Family("int4", "int", 4, 2),
    Family("int3", "int", 3, 2),
    Family("int6", "int", 6, 3),
    Family("int8", "int", 8, 4),
)

#: Family names in the order of their run-time family ID (the RTL's ``family`` input).
FAMILIES: tuple[str, ...] = tuple(f.name for f in _FAMILY_LIST)
#: Run-time family ID of each family name.
FAMILY_IDS: dict[str, int] = {name: i for i, name in enumerate(FAMILIES)}
#: Width of the run-time family ID.
FAMILY_ID_BITS: int = (len(FAMILIES) - 1).bit_length()

_BY_NAME = {f.name: f for f in _FAMILY_LIST}


def family(name: str) -> Family:
    """Return the :class:`Family` called ``name``; ValueError for an unknown name."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"family must be one of {', '.join(FAMILIES)}, not {name!r}"
        ) from None


def check_families(families, *, argument: str = "families") -> tuple[str, ...]:
    """Validate a collection of family names; return them as a tuple in ID order.

    Accepts an iterable of names or one comma-separated string.
    """
    if isinstance(families, str):
        families = [f.strip() for f in families.split(",") if f.strip()]
    try:
        names = list(families)
    except TypeError:
        raise TypeError(
            f"{argument} must be an iterable of family names, not {families!r}"
        ) from None
    if not names:
        raise ValueError(f"{argument} must name at least one family, not {names!r}")
    for name in names:
        if name not in _BY_NAME:
            raise ValueError(
                f"{argument} must contain only {', '.join(FAMILIES)}; {name!r} is unknown"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{argument} must not repeat a family: {names!r}")
    return tuple(sorted(names, key=FAMILY_IDS.__getitem__))


@cache
def code_values(name: str, dt: int) -> tuple[int, ...]:
    """Value (in code units) of every code word of family ``name`` for datatype bit ``dt``.

    Entry ``c`` is ``v(c, dt)`` of docs/bitmod_contract.md section 1; ``dt`` only matters for fp families.
    """
    fam = family(name)
    if dt not in (0, 1):
        raise ValueError(f"dt must be 0 or 1, not {dt!r}")
    values = []
    for code in range(1 << fam.bits):
        if fam.kind == "int":
            values.append(code - (1 << fam.bits) if code >> (fam.bits - 1) else code)
        elif code == fam.special_code:
            values.append(fam.specials[dt])
        else:
            sign = -1 if code >> (fam.bits - 1) else 1
            values.append(sign * fam.magnitudes[code & (fam.special_code - 1)])
    return tuple(values)


def max_code_bits(families) -> int:
    """Width of a code word that can hold a code of every family in ``families``."""
    return max(family(f).bits for f in check_families(families))


def max_terms(families) -> int:
    """Most radix-4 digits (PE cycles) any weight of ``families`` needs."""
    return max(family(f).terms for f in check_families(families))


#: Values a radix-4 digit of the unified representation may take: 0 or +-2**shift with
#: shift 0..2. A weight with ``terms`` digits is ``sum(d[t] * 4**t)``.
DIGIT_VALUES: tuple[int, ...] = (0, 1, -1, 2, -2, 4, -4)


def fp_digits(value: int) -> tuple[int, int]:
    """Two radix-4 digits ``(d0, d1)`` with ``d0 + 4 * d1 == value``, both in DIGIT_VALUES.

    Every fp3/fp4 value (specials included) has such a pair; of the candidates the one
    with the smallest ``|d1|`` (positive first) is taken, so the choice is deterministic.
    """
    magnitude = abs(value)
    for high in sorted(DIGIT_VALUES, key=lambda d: (abs(d), d < 0)):
        low = magnitude - 4 * high
        if low in DIGIT_VALUES:
            return (low, high) if value >= 0 else (-low, -high)
    raise ValueError(f"value {value!r} has no two-digit radix-4 form over {DIGIT_VALUES}")


def max_digit_shift(families) -> int:
    """Largest ``shift`` of a digit ``+-2**shift`` of ``families``.

    Radix-4 Booth digits of int families are ``0, +-1, +-2`` (shift <= 1); fp digits
    also need ``+-4`` (e.g. 16 = 4 * 4, 12 = 4 + 4 * 2), shift 2.
    """
    return 2 if any(family(f).kind == "fp" for f in check_families(families)) else 1


def quantizer_grid(name: str, dt: int) -> tuple[int, ...]:
    """Sorted values the quantizer rounds to (the POS grid); int grids drop ``-2**(bits-1)``."""
    fam = family(name)
    values = sorted(set(code_values(name, dt)))
    if fam.kind == "int":
        values = values[1:]
    return tuple(values)


def max_abs_value(families) -> int:
    """Largest ``|v(code, dt)|`` over every code word (not only quantizer output) of ``families``."""
    return max(abs(v) for f in check_families(families) for dt in (0, 1) for v in code_values(f, dt))


def signed_bits(max_abs: int) -> int:
    """Width of a two's-complement value that holds every integer in ``-max_abs..max_abs``."""
    return max_abs.bit_length() + 1


def check_group_size(group_size) -> int:
    """``group_size`` if it is a supported G, else ValueError naming it."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size not in GROUP_SIZES:
        raise ValueError(f"group_size must be one of {GROUP_SIZES}, not {group_size!r}")
    return group_size


def check_scale_bits(scale_bits) -> int:
    """``scale_bits`` if it is a supported S, else ValueError naming it."""
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int) or scale_bits not in SCALE_BITS_RANGE:
        low, high = SCALE_BITS_RANGE.start, SCALE_BITS_RANGE.stop - 1
        raise ValueError(f"scale_bits must be an integer in {low}..{high}, not {scale_bits!r}")
    return scale_bits


def accumulator_widths(max_k: int, group_size: int, scale_bits: int, families,
                       max_abs_activation: int = 1 << (ACTIVATION_BITS - 1)) -> dict[str, int]:
    """Bit widths that make overflow impossible in the PE array (docs/bitmod_contract.md section 5).

    The bounds take any code word (int4's ``-8`` too) and any activation up to
    ``max_abs_activation`` (by default any int8, ``-128`` too; the FP16 path's aligned
    significands pass theirs, :func:`arch.fp16.fp16_widths`), so they hold for every input,
    not only quantizer output:

    * ``product``: ``|v * a| <= max|v| * max_abs_activation``
    * ``group_sum``: ``G`` products
    * ``scaled_group``: a group sum times ``sq <= 2**S - 1`` (with its sign ``sg``)
    * ``acc``: ``max_k / G`` scaled groups

    Returns the signed widths ``product_bits``, ``group_sum_bits``,
    ``scaled_group_bits``, ``acc_bits`` and the bounds ``max_abs_*`` they come from.
    """
    families = check_families(families)
    check_group_size(group_size)
    check_scale_bits(scale_bits)
    if isinstance(max_k, bool) or not isinstance(max_k, int):
        raise TypeError(f"max_k must be an integer, not {max_k!r}")
    if max_k <= 0 or max_k % group_size:
        raise ValueError(f"max_k must be a positive multiple of group_size {group_size}, not {max_k}")
    max_product = max_abs_value(families) * max_abs_activation
    max_group = group_size * max_product
    max_scaled = max_group * ((1 << scale_bits) - 1)
    max_acc = (max_k // group_size) * max_scaled
    return {
        "max_abs_product": max_product,
        "max_abs_group_sum": max_group,
        "max_abs_scaled_group": max_scaled,
        "max_abs_acc": max_acc,
        "product_bits": signed_bits(max_product),
        "group_sum_bits": signed_bits(max_group),
        "scaled_group_bits": signed_bits(max_scaled),
        "acc_bits": signed_bits(max_acc),
    }


def pack_layout(name: str, group_size: int, scale_bits: int) -> dict[str, int]:
    """Layout of one group record of the packed weight stream (docs/formats.md).

    A record is one metadata word (``dt`` at bit 0, ``sg`` at bit 1, ``sq`` at bits
    ``2 .. 2 + S - 1``) followed by code words holding ``codes_per_word`` codes each,
    code ``j`` at bits ``(j % codes_per_word) * bits`` of word ``j // codes_per_word``.
    """
    fam = family(name)
    check_group_size(group_size)
    check_scale_bits(scale_bits)
    codes_per_word = WORD_BITS // fam.bits
    code_words = -(-group_size // codes_per_word)
    return {
        "word_bits": WORD_BITS,
        "code_bits": fam.bits,
        "codes_per_word": codes_per_word,
        "code_words": code_words,
        "words_per_group": 1 + code_words,
        "dt_bit": 0,
        "sg_bit": 1,
        "sq_shift": 2,
        "sq_bits": scale_bits,
    }
