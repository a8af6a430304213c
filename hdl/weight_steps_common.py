"""What the stages of the PE array's weight front end share (:mod:`hdl.weight_steps`).

The layouts of the registers between the stages (held codes, cut codes, decoded
digits, the output step), the family constants' shapes and the replica marking of a
column's control registers.
"""

from __future__ import annotations

from amaranth import Shape, Signal
from amaranth.lib import data

from arch.bitmod import WORD_BITS, family
from arch.pe_array_config import PeArrayConfig

from .decoder import term_layout
from .pe import lane_select_layout
from .replica import REPLICA_ATTR

__all__ = ["neg_halves", "step_layout", "held_layout", "split_layout", "decoded_layout", "window_steps",
           "booth_bits", "constant_shapes", "constants_layout", "THRESHOLDS", "flag_names", "lane_flags",
           "mark_control"]

#: The family constants' fill-level thresholds, ``max(0, times * need + sign * used)``:
#: name -> (times, sign). Clamped at 0, as ``fill < 0`` is false.
THRESHOLDS = {"below_2need_used": (2, -1), "below_3need_used": (3, -1), "below_3need": (3, 0),
              "below_need_used": (1, -1)}


def neg_halves(lanes: int) -> list[range]:
    """The lanes of each half whose count of negative digits a step carries."""
    return [range(0, -(-lanes // 2)), range(-(-lanes // 2), lanes)]


def step_layout(config: PeArrayConfig) -> data.StructLayout:
    """One step for the whole array: per column, per digit index, per lane.

    ``neg_halves[c][t][h]`` counts the negative digits among the lanes of
    ``neg_halves(lanes)[h]``: the consumer adds the two.
    """
    lanes = config.lanes
    half_bits = len(neg_halves(lanes)[0]).bit_length()
    return data.StructLayout({
        "sel": data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(lane_select_layout(config.max_shift), lanes),
                                                 config.terms), config.cols),
        "neg_halves": data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(half_bits, 2), config.terms),
                                       config.cols),
        "sq": data.ArrayLayout(config.scale_bits, config.cols),
        "last_group": 1,     # the group's last step
        "last_tile": 1,      # ... of the tile's last group
    })


def held_layout(config: PeArrayConfig) -> data.StructLayout:
    """A step as the window leaves it (stage 1): each column's codes of all lanes, packed."""
    cols = config.cols
    return data.StructLayout({
        "codes": data.ArrayLayout(config.lanes * config.code_bits, cols), "dt": cols, "sg": cols,
        "sq": data.ArrayLayout(config.scale_bits, cols), "last_group": 1, "last_tile": 1,
    })


def booth_bits(config: PeArrayConfig) -> int:
    """Width of an int code sign-extended for the Booth recoder (0: no int family built)."""
    return 2 * max((family(name).terms for name in config.families if family(name).kind == "int"), default=0)


def split_layout(config: PeArrayConfig) -> data.StructLayout:
    """A step cut into one code per lane (stage 2), with each int code sign-extended (if an int family is built).

    (Without an int family there is no ``extended`` field: an undriven field of a
    register that is a port stops yosys's ``opt_clean`` on conflicting init values.)
    """
    cols, lanes = config.cols, config.lanes
    extended = data.ArrayLayout(data.ArrayLayout(booth_bits(config), lanes), cols)
    return data.StructLayout({
        "codes": data.ArrayLayout(data.ArrayLayout(config.code_bits, lanes), cols),
        **({"extended": extended} if booth_bits(config) else {}),
        "sg": cols,
        "sq": data.ArrayLayout(config.scale_bits, cols), "last_group": 1, "last_tile": 1,
    })


def decoded_layout(config: PeArrayConfig) -> data.StructLayout:
    """A step decoded into each lane's radix-4 digits (stage 3)."""
    digits = data.ArrayLayout(term_layout(config.max_shift.bit_length()), config.terms)
    digit_layout = data.StructLayout({"terms": data.ArrayLayout(digits, config.lanes)})
    return data.StructLayout({
        "digits": data.ArrayLayout(digit_layout, config.cols), "sg": config.cols,
        "sq": data.ArrayLayout(config.scale_bits, config.cols),
        "last_group": 1, "last_tile": 1,
    })


def window_steps(config: PeArrayConfig) -> list[int]:
    """The window's distinct shifts after an emit (``lanes * bits`` of the built families), ascending."""
    return sorted({config.lanes * family(name).bits for name in config.families})


def constant_shapes(config: PeArrayConfig) -> dict[str, Shape]:
    """The shapes of a column's registered family constants, by name (``THRESHOLDS`` among them).

    ``used_minus_need`` is ``used - need`` modulo the fill level's width, so that
    ``fill - need + used`` takes one adder.
    """
    lanes = config.lanes
    shapes = {
        "bits": range(9),
        "used": range(WORD_BITS + 1),
        "need": range(lanes * 8 + 1),
        "code_words": range(config.words_per_group),
        "mask": WORD_BITS,
        "used_minus_need": config.window_bits.bit_length(),
    }
    shapes.update({name: range(3 * lanes * 8 + 1) for name in THRESHOLDS})
    return {name: Shape.cast(shape) for name, shape in shapes.items()}


def constants_layout(config: PeArrayConfig) -> data.StructLayout:
    """The family constants as one port: a field per :func:`constant_shapes` entry."""
    return data.StructLayout(constant_shapes(config))


def flag_names(config: PeArrayConfig) -> list[str]:
    """The family flags of a lane, in order: one per built family, then ``"int"`` (any int family)."""
    return [*config.families, "int"]


def lane_flags(config: PeArrayConfig, flags) -> list[list[dict]]:
    """``flags`` (a port of ``cols * lanes`` lanes' flags) as ``[column][lane][name]`` bits."""
    names = flag_names(config)
    return [[dict(zip(names, flags[c * config.lanes + lane], strict=True)) for lane in range(config.lanes)]
            for c in range(config.cols)]


def mark_control(replicated: bool, *registers: Signal) -> None:
    """Mark a column's control registers as replicas when the column is one of several copies."""
    if replicated:
        for register in registers:
            register.attrs[REPLICA_ATTR] = 1
