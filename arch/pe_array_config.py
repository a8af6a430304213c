"""Parameters of the BitMoD PE array and every width derived from them (one place)."""

from __future__ import annotations

from dataclasses import dataclass, field

from arch.bitmod import (
    ACTIVATION_BITS,
    WORD_BITS,
    accumulator_widths,
    check_families,
    check_group_size,
    check_scale_bits,
    family,
    max_code_bits,
    max_digit_shift,
    max_terms,
    pack_layout,
)
from arch.checks import check_int
from arch.derived import DerivedFields

__all__ = ["PeArrayConfig", "MAX_ROWS", "MAX_COLS", "MAX_K", "TILE_COUNT_BITS", "ROWS_PER_COPY"]

#: Upper bounds that keep generation and simulation sane; raise them when a board needs it.
MAX_ROWS = 256
MAX_COLS = 64
MAX_K = 1 << 16
#: Width of the run-time ``col_tiles`` input: column tiles per activation load.
TILE_COUNT_BITS = 16
#: Rows that share one registered copy of a column's digit bus and of the drain's
#: control (hdl.replica): a copy's load stays local however tall the array.
ROWS_PER_COPY = 2


@dataclass(frozen=True)
class PeArrayConfig(DerivedFields):
    """A validated PE-array configuration and its derived widths.

    Parameters (the names of ``mixbit generate pe_array -p``): ``rows`` (tokens per
    tile, R), ``cols`` (output channels per tile, C), ``lanes`` (weights per PE per
    step, L), ``group_size`` (G), ``scale_bits`` (S), ``families``, ``max_k``.
    """

    rows: int = 2
    cols: int = 2
    lanes: int = 8
    group_size: int = 128
    scale_bits: int = 8
    families: tuple[str, ...] = ("fp4", "fp3", "int4", "int3", "int6", "int8")
    max_k: int = 4096
    # Derived widths and counts (set by __post_init__; :meth:`derived` lists them all).
    #: Bits of a group's exact integer sum, of the group sum times its signed scale, of the
    #: accumulated result (arch.bitmod.accumulator_widths: no overflow for K <= max_k).
    group_sum_bits: int = field(init=False, compare=False, repr=False)
    scaled_group_bits: int = field(init=False, compare=False, repr=False)
    acc_bits: int = field(init=False, compare=False, repr=False)
    #: The widest code of the built families, their most digits a weight, the largest digit shift.
    code_bits: int = field(init=False, compare=False, repr=False)
    terms: int = field(init=False, compare=False, repr=False)
    max_shift: int = field(init=False, compare=False, repr=False)
    #: Weight words a group takes (the widest built family).
    words_per_group: int = field(init=False, compare=False, repr=False)
    #: The front end's code window: one step's codes plus one word being appended.
    window_bits: int = field(init=False, compare=False, repr=False)
    #: Steps of ``lanes`` weights per group.
    steps_per_group: int = field(init=False, compare=False, repr=False)
    #: Groups per row of weights at ``max_k``.
    max_groups: int = field(init=False, compare=False, repr=False)
    #: Width of the run-time ``groups`` input (a count up to ``max_groups``).
    groups_bits: int = field(init=False, compare=False, repr=False)
    #: Depth of an activation buffer (steps per row of ``max_k``).
    act_depth: int = field(init=False, compare=False, repr=False)
    #: Widths of a beat of the activation, weight and result streams.
    act_beat_bits: int = field(init=False, compare=False, repr=False)
    weight_beat_bits: int = field(init=False, compare=False, repr=False)
    result_beat_bits: int = field(init=False, compare=False, repr=False)
    #: Width of the run-time ``col_tiles`` input.
    tile_count_bits: int = field(init=False, compare=False, repr=False)
    #: Registered copies of a column's broadcast signals (one per ``ROWS_PER_COPY`` rows).
    row_copies: int = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        check_int("rows", self.rows, 1, MAX_ROWS)
        check_int("cols", self.cols, 1, MAX_COLS)
        check_group_size(self.group_size)
        check_scale_bits(self.scale_bits)
        object.__setattr__(self, "families", check_families(self.families))
        lanes = self.lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1) \
                or lanes > self.group_size:
            raise ValueError(f"lanes must be a power of two in 1..group_size ({self.group_size}), not {lanes!r}")
        group_cycles = 2 * self.group_size // lanes        # the fewest cycles a group can take
        if group_cycles <= self.scale_bits:
            raise ValueError(
                f"lanes={lanes} with group_size={self.group_size} gives groups of {group_cycles} cycles, "
                f"but the bit-serial dequantization of scale_bits={self.scale_bits} needs more: "
                f"use fewer lanes, a larger group_size or fewer scale_bits"
            )
        if isinstance(self.max_k, bool) or not isinstance(self.max_k, int) or not \
                (self.group_size <= self.max_k <= MAX_K and self.max_k % self.group_size == 0):
            raise ValueError(f"max_k must be a multiple of group_size {self.group_size} in "
                             f"{self.group_size}..{MAX_K}, not {self.max_k!r}")
        self._set_derived(self._derive())

    @classmethod
    def from_params(cls, params: dict) -> PeArrayConfig:
        return cls(**{name: params[name] for name in
                      ("rows", "cols", "lanes", "group_size", "scale_bits", "families", "max_k")})

    def _derive(self) -> dict:
        acc = accumulator_widths(self.max_k, self.group_size, self.scale_bits, self.families)
        layouts = {name: pack_layout(name, self.group_size, self.scale_bits) for name in self.families}
        code_bits = max_code_bits(self.families)
        return {
            "group_sum_bits": acc["group_sum_bits"],
            "scaled_group_bits": acc["scaled_group_bits"],
            "acc_bits": acc["acc_bits"],
            "code_bits": code_bits,
            "terms": max_terms(self.families),
            "max_shift": max_digit_shift(self.families),
            "words_per_group": max(layout["words_per_group"] for layout in layouts.values()),
            # The code window holds one step's codes plus one word being appended.
            "window_bits": self.lanes * code_bits + WORD_BITS - 1,
            "steps_per_group": self.group_size // self.lanes,
            "max_groups": self.max_k // self.group_size,
            "groups_bits": (self.max_k // self.group_size).bit_length(),
            "act_depth": self.max_k // self.lanes,
            "act_beat_bits": self.lanes * ACTIVATION_BITS,
            "weight_beat_bits": self.cols * WORD_BITS,
            "result_beat_bits": self.cols * acc["acc_bits"],
            "tile_count_bits": TILE_COUNT_BITS,
            "row_copies": -(-self.rows // ROWS_PER_COPY),
        }


    def row_group(self, row: int) -> int:
        """The group of ``ROWS_PER_COPY`` rows whose copies of the broadcast signals ``row`` uses."""
        return row // ROWS_PER_COPY

    def params(self) -> dict:
        """The plain parameter dict (the names of ``mixbit generate pe_array -p``)."""
        return {"rows": self.rows, "cols": self.cols, "lanes": self.lanes, "group_size": self.group_size,
                "scale_bits": self.scale_bits, "families": self.families, "max_k": self.max_k}

    def cycles_per_group(self, name: str) -> int:
        """Cycles the PEs spend on one group of family ``name``: ``G / L`` steps of ``terms`` cycles."""
        return self.group_size // self.lanes * family(name).terms

    def peak_terms_per_cycle(self) -> int:
        """Weight digits the array consumes per cycle at peak: ``R * C * L``."""
        return self.rows * self.cols * self.lanes
