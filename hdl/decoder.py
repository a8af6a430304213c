"""BitMoD mixed-datatype weight decoder: a code word to radix-4 digits of +-2**shift."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import (
    FAMILIES,
    FAMILY_ID_BITS,
    FAMILY_IDS,
    check_families,
    code_values,
    family,
    fp_digits,
    max_code_bits,
    max_digit_shift,
    max_terms,
)

__all__ = ["term_layout", "decoder_widths", "decoder_layouts", "sign_extend", "decode_terms", "WeightDecoder",
           "fp_terms"]


def decoder_widths(families) -> dict[str, int]:
    """Derived widths of a decoder for ``families`` (the one place they are computed).

    Returns ``code_bits`` (code word), ``terms`` (radix-4 digits per weight),
    ``shift_bits`` (a digit's shift field), ``term_bits`` (one digit), ``family_bits``
    (run-time family ID) and ``output_bits`` (the whole output payload).
    """
    families = check_families(families)
    shift_bits = max_digit_shift(families).bit_length()
    terms = max_terms(families)
    term_bits = 2 + shift_bits
    return {
        "code_bits": max_code_bits(families),
        "terms": terms,
        "shift_bits": shift_bits,
        "term_bits": term_bits,
        "family_bits": FAMILY_ID_BITS,
        "output_bits": terms * term_bits,
    }


def term_layout(shift_bits: int) -> data.StructLayout:
    """One radix-4 digit: ``nonzero ? (-1)**negative * 2**shift : 0``; digit ``t`` weighs ``4**t``."""
    return data.StructLayout({"nonzero": 1, "negative": 1, "shift": shift_bits})


def decoder_layouts(families) -> tuple[data.StructLayout, data.ArrayLayout]:
    """The decoder's input payload layout ``{code, dt}`` and output layout (its terms)."""
    widths = decoder_widths(families)
    return (data.StructLayout({"code": widths["code_bits"], "dt": 1}),
            data.ArrayLayout(term_layout(widths["shift_bits"]), widths["terms"]))


def fp_terms(value: int) -> list[tuple[int, int, int]]:
    """``(nonzero, negative, shift)`` of the two digits of an fp value (:func:`fp_digits`).

    Used at elaboration time to build the fp lookup table.
    """
    return [(int(d != 0), int(d < 0), abs(d).bit_length() - 1 if d else 0) for d in fp_digits(value)]


def sign_extend(m: Module, families, family_id, code):
    """``code`` of the int family ``family_id`` sign-extended to the Booth recoder's width.

    None when no int family is built in. :func:`decode_terms` calls it, or takes its
    (registered) result, so a pipeline can split the decoder here.
    """
    int_families = [f for f in check_families(families) if family(f).kind == "int"]
    if not int_families:
        return None
    extended = Signal(2 * max(family(f).terms for f in int_families))
    with m.Switch(family_id):
        for name in int_families:
            with m.Case(FAMILY_IDS[name]):
                m.d.comb += extended.eq(code[:family(name).bits].as_signed())
    return extended


def decode_terms(m: Module, families, family_id, code, dt, extended=None, selected=None, int_selected=None):
    """Combinational decoder: the digits of ``(family_id, code, dt)`` as a new signal.

    ``families`` are the families built in; any other ``family_id`` gives all-zero
    digits. ``code`` holds the code word in its low bits; ``extended``, if given, is
    :func:`sign_extend` of it. ``selected``, if given, maps each built family to a
    one-bit signal that is high when ``family_id`` is that family (a pipeline can
    register these flags once for many decoders; ``family_id`` then only reaches
    :func:`sign_extend`). ``int_selected``, if given, is the OR of the int families'
    flags, registered likewise. Shared by :class:`WeightDecoder` and the PE array's
    column decoders.
    """
    families = check_families(families)
    _, layout = decoder_layouts(families)
    terms = Signal(layout)
    if selected is None:
        selected = {name: family_id == FAMILY_IDS[name] for name in families}

    def set_term(target, nonzero, negative, shift):
        m.d.comb += [target.nonzero.eq(nonzero), target.negative.eq(negative), target.shift.eq(shift)]

    int_families = [f for f in families if family(f).kind == "int"]
    if int_families:
        # One Booth recoder serves every int family: each family only differs in
        # how its code is sign-extended, and sign extension zeroes the digits
        # above the family's own.
        if extended is None:
            extended = sign_extend(m, families, family_id, code)
        booth_bits = len(extended)
        padded = Cat(Const(0, 1), extended)      # b[-1] = 0
        booth_terms = Signal(layout)
        for digit in range(booth_bits // 2):
            below, low, high = padded[2 * digit], padded[2 * digit + 1], padded[2 * digit + 2]
            # 011 -> +2 and 100 -> -2 are the digits with shift 1.
            set_term(booth_terms[digit], nonzero=~((high == low) & (low == below)),
                     negative=high, shift=(low == below))

    # An AND-OR of the selected family's digits: the flags are one-hot (or all low).
    candidates = []
    if int_families:
        if int_selected is None:
            int_selected = Signal(name="int_selected")
            m.d.comb += int_selected.eq(Cat(*(selected[name] for name in int_families)).any())
        candidates.append((int_selected, booth_terms))
    for name in families:
        fam = family(name)
        if fam.kind == "int":
            continue
        fp_table = Signal(data.ArrayLayout(layout.elem_shape, fam.terms), name=f"{name}_terms")
        with m.Switch(Cat(code[:fam.bits], dt)):
            for dt_value in (0, 1):
                for code_value, value in enumerate(code_values(name, dt_value)):
                    with m.Case(code_value | dt_value << fam.bits):
                        for index, fields in enumerate(fp_terms(value)):
                            set_term(fp_table[index], *fields)
        candidates.append((selected[name], fp_table))
    merged = 0
    for flag, candidate in candidates:
        merged = merged | (candidate.as_value() & flag.replicate(len(candidate.as_value())))
    m.d.comb += terms.eq(merged)
    return terms


class WeightDecoder(wiring.Component):
    """Decodes BitMoD weight code words into the PE's unified digit representation.

    The output is ``terms`` radix-4 digits ``d[t]`` in ``{0, +-1, +-2, +-4}``, least
    significant first, with ``sum(d[t] * 4**t)`` exactly the weight value
    ``v(code, dt)`` in code units (docs/bitmod_contract.md section 1). The PE spends cycle ``t`` of a
    weight on digit ``t``, so a digit only ever shifts the activation by 0..2:

    * fp3/fp4: the two digits of :func:`arch.bitmod.fp_digits` (the special code
      decodes to ER/EA's positive value by ``dt``).
    * int3/int4/int6/int8: the code is sign-extended and radix-4 Booth recoded
      (digits in {-2..2}); the family's unused top digits are zero.

    A family ID that was not built in (or is not a family at all) decodes to all-zero
    terms. ``family`` is sampled together with the input, so it may change between
    any two transfers.

    The block is a one-stage pipeline: latency 1 cycle, one code per cycle, and
    ``i.ready`` is ``~o.valid | o.ready`` (a stalled output holds its payload).

    Parameters
    ----------
    families : iterable of str or comma-separated str
        Families to build in (default: all of ``arch.bitmod.FAMILIES``).

    Members
    -------
    family : In(family_bits)
        Run-time family ID, ``arch.bitmod.FAMILY_IDS[name]``.
    i : In(stream.Signature(StructLayout({"code": code_bits, "dt": 1})))
        Code word (low ``bits`` of ``code`` used) and the group's datatype bit.
    o : Out(stream.Signature(ArrayLayout(term_layout(shift_bits), terms)))
        The terms of the value.
    """

    def __init__(self, families=FAMILIES):
        self.families = check_families(families)
        self.widths = decoder_widths(self.families)
        self.input_layout, self.output_layout = decoder_layouts(self.families)
        super().__init__({
            "family": In(self.widths["family_bits"]),
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(self.output_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        terms = decode_terms(m, self.families, self.family, self.i.payload.code, self.i.payload.dt)
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.eq(terms)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        return m
