"""Clocks measured by the project's own flow that other code quotes: one table, each entry
with the commit and the nextpnr seeds it was measured at (the rows of docs/performance.md
it comes from; tests/test_docs.py holds the two together).

Projections (``mixbit run-model``'s summary, docs/model_run.md) run at
:attr:`FmaxMeasurement.mhz`, the median over the measured seeds; nothing here is
modelled.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ["FmaxMeasurement", "LARGE_INT8_ARRAY", "LARGE_FP16_ARRAY"]


@dataclass(frozen=True)
class FmaxMeasurement:
    """nextpnr's Fmax of ``design`` (``params`` over its defaults) on ``target``, per seed."""

    design: str
    params: dict
    target: str
    fmax_by_seed: dict[int, float]
    commit: str
    date: str

    @property
    def mhz(self) -> float:
        """The median Fmax over the measured seeds, in MHz."""
        return round(statistics.median(self.fmax_by_seed.values()), 2)

    @property
    def shape(self) -> str:
        return f"{self.params['rows']}x{self.params['cols']}x{self.params['lanes']}"

    def describe(self) -> str:
        seeds = ", ".join(f"{mhz:.2f} at seed {seed}" for seed, mhz in sorted(self.fmax_by_seed.items()))
        return f"median of {seeds}; {self.commit}, {self.date}"


#: The largest int8 array that was placed at >= 50 % of the ECP5-85F (all six families),
#: the final RTL of that round (docs/performance.md, "the whole chip").
LARGE_INT8_ARRAY = FmaxMeasurement(
    "pe_array", {"rows": 19, "cols": 4, "lanes": 8, "activations": "int8"}, "ecp5-85f",
    {1: 94.25, 2: 108.62}, "4ae0d9c", "2026-11-30")

#: BitMoD's FP16 array at 8x2x8, every family, one yosys netlist placed at three seeds.
LARGE_FP16_ARRAY = FmaxMeasurement(
    "pe_array", {"rows": 8, "cols": 2, "lanes": 8, "activations": "fp16"}, "ecp5-85f",
    {1: 128.30, 2: 115.09, 3: 129.57}, "d360e5f", "2026-12-03")
