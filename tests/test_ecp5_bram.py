"""synth.ecp5_bram: flip-flops after ECP5 block RAMs move into the blocks' output registers."""

import copy
import json

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from gateware.generate import to_verilog
from synth.ecp5_bram import absorb_output_registers
from synth.flow import place_and_route, yosys_cells
from synth.targets import get_target

FRESH = 1 << 30          # a net bit no netlist here uses


class RegisteredRead(wiring.Component):
    """A 512 x ``width`` memory read in every cycle into a plain register (as JobControl's `raw`)."""

    def __init__(self, width):
        self.width = width
        super().__init__({"wa": In(9), "wd": In(width), "we": In(1), "ra": In(9), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.width, depth=512, init=[], attrs={"no_rw_check": 1})
        write, read = mem.write_port(), mem.read_port()
        m.d.comb += [write.addr.eq(self.wa), write.data.eq(self.wd), write.en.eq(self.we), read.addr.eq(self.ra)]
        raw = Signal(self.width, reset_less=True)
        m.d.sync += [raw.eq(read.data), self.q.eq(raw ^ self.wd)]     # raw feeds logic, not a port
        return m


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """yosys's netlist of a 36-bit (ganged ports) and an 18-bit (one port) read, and its cell counts."""
    out = tmp_path_factory.mktemp("ecp5_bram")
    netlists = {}
    for width in (36, 18):
        verilog = out / f"read{width}.v"
        verilog.write_text(to_verilog(RegisteredRead(width), f"read{width}"))
        cells = yosys_cells(verilog, f"read{width}", get_target("ecp5-85f"), out)
        netlists[width] = (json.loads((out / f"read{width}.ecp5-85f.yosys.json").read_text()), cells)
    return netlists


def _absorb(tmp_path, design):
    path = tmp_path / "n.json"
    path.write_text(json.dumps(design))
    count = absorb_output_registers(path)
    return count, json.loads(path.read_text())


def _cells(design, kind):
    return [cell for module in design["modules"].values() for cell in module["cells"].values() if cell["type"] == kind]


@pytest.mark.parametrize("width", [36, 18])
def test_register_moves_into_the_block(tmp_path, synthesized, width):
    design, cells = synthesized[width]
    (before,) = _cells(design, "DP16KD")
    raw_q = {}          # DO pin -> the Q net of the flip-flop it drives
    for module in design["modules"].values():
        for cell in module["cells"].values():
            if cell["type"] == "TRELLIS_FF":
                for pin, bits in before["connections"].items():
                    if pin.startswith("DO") and bits == cell["connections"]["DI"]:
                        raw_q[pin] = cell["connections"]["Q"]
    assert len(raw_q) == width

    count, after_design = _absorb(tmp_path, design)
    assert count == 1
    (after,) = _cells(after_design, "DP16KD")
    assert after["parameters"]["REGMODE_A"] == after["parameters"]["REGMODE_B"] == "OUTREG"
    assert after["connections"]["OCEA"] == after["connections"]["OCEB"] == ["1"]
    assert {pin: after["connections"][pin] for pin in raw_q} == raw_q
    assert len(_cells(after_design, "TRELLIS_FF")) == cells["TRELLIS_FF"] - width
    # A second run finds nothing left to do.
    assert absorb_output_registers(tmp_path / "n.json") == 0


def _first_raw_register(design):
    (ram,) = _cells(design, "DP16KD")
    data = {bit for pin, bits in ram["connections"].items() if pin.startswith("DO") for bit in bits}
    return next(cell for cell in _cells(design, "TRELLIS_FF") if cell["connections"]["DI"][0] in data)


def test_a_common_clock_enable_becomes_the_output_enable(tmp_path, synthesized):
    design = copy.deepcopy(synthesized[18][0])
    (ram,) = _cells(design, "DP16KD")
    data = {bits[0] for pin, bits in ram["connections"].items() if pin.startswith("DO")}
    for register in _cells(design, "TRELLIS_FF"):
        if register["connections"]["DI"][0] in data:
            register["parameters"]["CEMUX"] = "CE"
            register["connections"]["CE"] = [FRESH]
    count, after = _absorb(tmp_path, design)
    assert count == 1
    assert _cells(after, "DP16KD")[0]["connections"]["OCEB"] == [FRESH]


@pytest.mark.parametrize("change", ["one enable", "reset", "clock", "second user", "ram reset", "power-up 1",
                                    "ram falling edge", "ram read enable"])
def test_a_register_that_is_not_the_output_register_stays(tmp_path, synthesized, change):
    design = copy.deepcopy(synthesized[36][0])
    register = _first_raw_register(design)
    if change == "one enable":          # the others are always enabled: no common enable
        register["parameters"]["CEMUX"] = "CE"
        register["connections"]["CE"] = [FRESH]
    elif change == "reset":
        register["connections"]["LSR"] = [FRESH]
    elif change == "clock":
        register["connections"]["CLK"] = [FRESH]
    elif change == "second user":
        other = next(cell for cell in _cells(design, "TRELLIS_FF") if cell is not register)
        other["connections"]["DI"] = register["connections"]["DI"]
    elif change == "power-up 1":
        register["parameters"]["REGSET"] = "SET"
    elif change == "ram falling edge":
        _cells(design, "DP16KD")[0]["parameters"]["CLKBMUX"] = "INV"
    elif change == "ram read enable":
        _cells(design, "DP16KD")[0]["connections"]["CEB"] = [FRESH]
    else:
        _cells(design, "DP16KD")[0]["connections"]["RSTB"] = [FRESH]
    count, after = _absorb(tmp_path, design)
    assert count == 0
    assert _cells(after, "DP16KD")[0]["parameters"]["REGMODE_B"] == "NOREG"


def test_nextpnr_places_the_output_register(tmp_path, synthesized):
    """The ECP5 flow absorbs the register and nextpnr accepts and times the result."""
    design, _ = synthesized[36]
    netlist = tmp_path / "read36.ecp5-85f.yosys.json"
    netlist.write_text(json.dumps(design))
    placed = place_and_route(netlist, get_target("ecp5-85f"), 125, 1, tmp_path)
    assert placed["placed"]["bram_output_registers"] == 1
    assert placed["timing"]["fmax_mhz"] > 0
