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
from arch.fp16 import (
    ACTIVATION_KINDS,
    ALIGN_LATENCY,
    DEFAULT_ALIGN_BITS,
    aligned_bits,
    check_align_bits,
    fp16_widths,
)

__all__ = ["PeArrayConfig", "MAX_ROWS", "MAX_COLS", "MAX_K", "TILE_COUNT_BITS", "ROWS_PER_COPY",
           "FP16_FIELD_BITS", "EXPONENT_FIELD_BITS"]

#: Cycles of a job's drain beyond its ``rows`` result beats, its ``scale_bits``
#: dequantization cycles and the ``log2(lanes)`` levels of the PEs' lane sums (the pipeline
#: and the output buffer), for :meth:`PeArrayConfig.job_cycles`; measured on the RTL.
_DRAIN_CYCLES = 16
#: The fewest cycles between the starts of two column tiles beyond ``scale_bits + rows +
#: log2(lanes)``: a tile's dequantization and result hand-over must end before the next
#: tile's can begin (it binds only when a tile has few groups of few cycles); measured on
#: the RTL.
_TILE_CYCLES = 10

#: Upper bounds that keep generation and simulation sane; raise them when a board needs it.
MAX_ROWS = 256
MAX_COLS = 64
MAX_K = 1 << 16
#: Width of the run-time ``col_tiles`` input: column tiles per activation load.
TILE_COUNT_BITS = 16
#: Bits of an activation lane of the ``act`` stream in an FP16 build (the raw binary16 bits).
FP16_FIELD_BITS = 16
#: Bits of a token's exponent ``er`` on the ``o`` stream of an FP16 build.
EXPONENT_FIELD_BITS = 5
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
    activations: str = "int8"
    align_bits: int = DEFAULT_ALIGN_BITS
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
    #: Width of an activation lane in the PEs (int8, or the aligned FP16 significand).
    lane_bits: int = field(init=False, compare=False, repr=False)
    #: Width of an activation lane on the ``act`` stream (8, or 16: raw binary16 bits).
    act_field_bits: int = field(init=False, compare=False, repr=False)
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
        if self.activations not in ACTIVATION_KINDS:
            raise ValueError(f"activations must be one of {', '.join(ACTIVATION_KINDS)}, not {self.activations!r}")
        check_align_bits(self.align_bits)
        self._set_derived(self._derive())

    @classmethod
    def from_params(cls, params: dict) -> PeArrayConfig:
        fp16 = {name: params[name] for name in ("activations", "align_bits") if name in params}
        return cls(**{name: params[name] for name in
                      ("rows", "cols", "lanes", "group_size", "scale_bits", "families", "max_k")}, **fp16)

    @property
    def fp16(self) -> bool:
        """The lanes take FP16 activations (``activations`` is ``fp16`` or ``both``)."""
        return self.activations != "int8"

    def _derive(self) -> dict:
        if self.fp16:       # the aligned significands are wider than int8: their widths hold both
            acc = fp16_widths(self.max_k, self.group_size, self.scale_bits, self.families, self.align_bits)
            lane_bits, field_bits = aligned_bits(self.align_bits), FP16_FIELD_BITS
        else:
            acc = accumulator_widths(self.max_k, self.group_size, self.scale_bits, self.families)
            lane_bits, field_bits = ACTIVATION_BITS, ACTIVATION_BITS
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
            "lane_bits": lane_bits,
            "act_field_bits": field_bits,
            "act_beat_bits": self.lanes * field_bits,
            "weight_beat_bits": self.cols * WORD_BITS,
            "result_beat_bits": self.cols * acc["acc_bits"] + (EXPONENT_FIELD_BITS + 1) * self.fp16,
            "tile_count_bits": TILE_COUNT_BITS,
            "row_copies": -(-self.rows // ROWS_PER_COPY),
        }


    def row_group(self, row: int) -> int:
        """The group of ``ROWS_PER_COPY`` rows whose copies of the broadcast signals ``row`` uses."""
        return row // ROWS_PER_COPY

    def params(self) -> dict:
        """The plain parameter dict (the names of ``mixbit generate pe_array -p``)."""
        params = {"rows": self.rows, "cols": self.cols, "lanes": self.lanes, "group_size": self.group_size,
                  "scale_bits": self.scale_bits, "families": self.families, "max_k": self.max_k}
        if self.fp16:       # an int8 array's parameters stay what they were before FP16 existed
            params.update(activations=self.activations, align_bits=self.align_bits)
        return params

    def cycles_per_group(self, name: str) -> int:
        """Cycles the PEs spend on one group of family ``name``: ``G / L`` steps of ``terms`` cycles."""
        return self.group_size // self.lanes * family(name).terms

    def job_cycles(self, name: str, k: int, n: int) -> int:
        """Cycles of one unstalled job (``rows`` tokens x K against N columns of family ``name``),
        from its first activation beat to its last result beat (docs/pe_array.md, "Cycle
        counts"): the activation load (``rows * K / lanes`` beats); per column tile, its groups,
        each the longer of the PEs' ``cycles_per_group`` (one more for two-digit families: the
        front end's refill) and the weight stream's ``words_per_group + 1`` beats, a tile
        starting no sooner than ``scale_bits + rows + log2(lanes) + 10`` cycles after the one
        before (plus ``ALIGN_LATENCY - 1`` in FP16 builds); then the drain. A model measured on the RTL
        and checked against Amaranth's simulator on shapes that vary every parameter
        (tests/test_cycle_model.py); ``mixbit run-model``'s summary compares it with every
        run's cycles.
        """
        info = family(name)
        words = pack_layout(name, self.group_size, self.scale_bits)["words_per_group"]
        per_group = max(self.cycles_per_group(name) + (info.terms == 2), words + 1)
        fp16_delay = (ALIGN_LATENCY - 1) * self.fp16
        tile = k // self.group_size * per_group
        lane_levels = self.lanes.bit_length() - 1
        tile_gap = max(tile, self.scale_bits + self.rows + lane_levels + _TILE_CYCLES + fp16_delay)
        tiles = -(-n // self.cols)
        # Families of more than two digits keep one register more in the PEs' digit path
        # from 8 lanes up.
        wide_digits = (info.terms != 2) * (2 if self.lanes >= 8 else 1)
        drain = self.rows + _DRAIN_CYCLES + self.scale_bits + lane_levels + wide_digits + fp16_delay
        return self.rows * k // self.lanes + tile + (tiles - 1) * tile_gap + drain

    def peak_terms_per_cycle(self) -> int:
        """Weight digits the array consumes per cycle at peak: ``R * C * L``."""
        return self.rows * self.cols * self.lanes
