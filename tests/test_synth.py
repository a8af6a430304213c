"""The synthesis flow's reports (one small design, both targets)."""

import json

import pytest

from synth.flow import SynthesisError, check_single_drivers, synthesize


@pytest.mark.parametrize("target,logic_bel", [("ice40-up5k", "ICESTORM_LC"), ("ecp5-85f", "TRELLIS_COMB")])
def test_decoder_report(tmp_path, target, logic_bel):
    report = synthesize("decoder", {"families": "fp4,int8"}, target, tmp_path)
    assert report == json.loads((tmp_path / "report.json").read_text())
    core = report["core"]
    assert core["lut4"] > 0 and core["carry"] == 0 and core["bram"] == 0 and core["dsp"] == 0
    # Registers: o.valid plus the output bits that are not constant.
    assert 1 < core["ff"] <= 1 + report["widths"]["output_bits"]
    assert report["placed"]["logic_bel"] == logic_bel
    assert 0 < report["placed"]["logic_used"] < report["placed"]["logic_available"]
    timing = report["timing"]
    assert timing["fmax_mhz"] > 0 and timing["met"] == (timing["fmax_mhz"] >= timing["constraint_mhz"])
    assert report["harness"]["input_bits"] == 3 + 9 + 1 + 1      # family, payload, valid, ready
    assert report["tools"]["yosys"].startswith("Yosys ")
    assert report["tools"]["nextpnr"].startswith("nextpnr-")
    assert (tmp_path / report["netlist"]).exists()
    markdown = (tmp_path / "report.md").read_text()
    assert f"# decoder on {target}" in markdown and str(timing["fmax_mhz"]) in markdown


@pytest.mark.parametrize("target,mhz,error", [
    ("stratix", None, "unknown target 'stratix' \\(known: ice40-up5k, ecp5-85f\\)"),
    ("ice40-up5k", -5, "mhz must be a frequency in \\(0, 1000\\] MHz, not -5"),
])
def test_bad_arguments(tmp_path, target, mhz, error):
    with pytest.raises(ValueError, match=error):
        synthesize("decoder", {}, target, tmp_path, mhz=mhz)


@pytest.mark.parametrize("target", ["ice40-up5k", "ecp5-85f"])
def test_replica_registers_are_not_merged(tmp_path, target):
    """hdl.replica copies survive yosys (opt_merge folds identical registers otherwise)."""
    from amaranth import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from gateware.generate import to_verilog
    from hdl.replica import replicas
    from synth.flow import yosys_cells
    from synth.targets import get_target

    class Fanout(wiring.Component):
        def __init__(self, copies):
            self.copies = copies
            super().__init__({"a": In(4), "b": In(4), "o": Out(4 * copies)})

        def elaborate(self, platform):
            m = Module()
            for index, copy in enumerate(replicas(m, self.a, self.copies, "a")):
                out = Signal(4, name=f"o{index}")       # a different function of each copy
                m.d.sync += out.eq((copy + self.b) if index % 2 else (copy ^ self.b))
                m.d.comb += self.o[4 * index:4 * index + 4].eq(out)
            return m

    target = get_target(target)
    verilog = tmp_path / "fanout.v"
    verilog.write_text(to_verilog(Fanout(3), "fanout"))
    cells = yosys_cells(verilog, "fanout", target, tmp_path)
    flip_flops = sum(cells.get(cell, 0) for cell in target.cells["ff"])
    assert flip_flops == 3 * 4 + 3 * 4, cells       # three copies of `a`, three outputs


def test_front_end_control_is_copied_per_column(tmp_path):
    """Each column's ColumnSteps keeps its own control registers through yosys (hdl.weight_steps)."""
    import re

    from gateware.designs import get_design
    from gateware.generate import to_verilog
    from synth.flow import yosys_cells
    from synth.targets import get_target

    design = get_design("pe_array")
    params = design.resolve({"rows": 1, "cols": 3, "lanes": 4, "group_size": 32, "families": "fp4", "max_k": 64})
    verilog = tmp_path / "array.v"
    verilog.write_text(to_verilog(design.build(params), "array"))
    yosys_cells(verilog, "array", get_target("ecp5-85f"), tmp_path)
    cells = json.loads((tmp_path / "array.ecp5-85f.yosys.json").read_text())["modules"]["array"]["cells"]
    # The family constants are registered from the job's copies of the family, which
    # are registered from the inputs alone: without the replica attribute yosys keeps one
    # set for all columns (the fill level and the other state with feedback stay apart
    # anyway: opt_merge cannot merge a loop).
    constants = {match.group(1) for name in cells
                 if (match := re.match(r"front\.column(\d+)\.below_3need_TRELLIS_FF_Q", name))}
    assert constants == {"0", "1", "2"}, sorted(name for name in cells if "below_" in name)[:20]


def _netlist(tmp_path, second_q):
    """A hand-made yosys JSON netlist: two flip-flops, the second's Q on ``second_q``."""
    ff = {"type": "TRELLIS_FF", "port_directions": {"CLK": "input", "DI": "input", "Q": "output"}}
    module = {
        "ports": {"clk": {"direction": "input", "bits": [2]}, "d": {"direction": "input", "bits": [3, 4]}},
        "cells": {"a": {**ff, "connections": {"CLK": [2], "DI": [3], "Q": [5]}},
                  "b": {**ff, "connections": {"CLK": [2], "DI": [4], "Q": [second_q]}}},
        "netnames": {"c_stats": {"bits": [6, 6, 6, 5]}, "c_stats[3]": {"bits": [second_q]}},
    }
    path = tmp_path / "netlist.json"
    path.write_text(json.dumps({"modules": {"top": module, "TRELLIS_FF": {"ports": {}, "cells": {}}}}))
    return path


def test_multiply_driven_net_is_named(tmp_path):
    # The shape ABC9 left in kv_quant (d=128, lanes=8, b3): bit 3 of c_stats and bit 0
    # of c_stats[3], two flip-flops' outputs, joined into one net.
    check_single_drivers(_netlist(tmp_path, 7))
    with pytest.raises(SynthesisError, match=r"1 multiply driven net.*top: net c_stats\[3\], c_stats\[3\]\[0\] "
                                             r"driven by a\.Q, b\.Q"):
        check_single_drivers(_netlist(tmp_path, 5))
