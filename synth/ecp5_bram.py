"""ECP5 block RAM output registers, which yosys does not use: a pass on its JSON netlist.

A DP16KD read without its output register (``REGMODE NOREG``) has a clock-to-output of
about 5.8 ns in nextpnr's speed-6 timing model, so the flip-flop after it must sit within
about 2 ns of routing for 125 MHz. The block's own output register (``OUTREG``) has a
clock-to-output of about 1 ns. yosys's ``memory_libmap`` rules for the ECP5
(``share/lattice/brams_16kd.txt``) have no output-register option, so the flow moves
the flip-flops into the blocks on yosys's netlist, before nextpnr, with
:func:`absorb_output_registers`.

The move is exact only where the flip-flop is what the output register is: a block RAM
is changed only when both its ports run on one clock, rising edge (CLKAMUX, CLKBMUX not
inverted), are always enabled (CEA = CEB = 1: in 36-bit mode port A's enable is the
write side's, and whether it also gates the DOA half of the output register is not
documented where this was checked) and never reset (RSTA = RSTB = 0), and every data
output it uses drives one flip-flop and nothing else, clocked by that clock on the
rising edge, powering up at 0, sharing one clock enable (or none) and without set or
reset. The output register then loads when the
flip-flops did (OCEA = OCEB = their enable), from the data of the read a cycle before.
In 36-bit mode (ports A and B ganged, the read data on DOA and DOB) both ports' output
registers are set.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

__all__ = ["absorb_output_registers"]

_DATA_OUTPUTS = tuple(f"DO{port}{bit}" for port in "AB" for bit in range(18))


def _param(cell: dict, name: str, default: str) -> str:
    return str(cell["parameters"].get(name, default)).strip()


def _register_enable(cell: dict, clock: list) -> list | None:
    """The clock enable (``["1"]``: always) of a rising-edge TRELLIS_FF on ``clock``
    without set or reset that powers up at 0 (as the output register does); None for
    any other cell."""
    connections = cell["connections"]
    if not (cell["type"] == "TRELLIS_FF" and _param(cell, "REGSET", "RESET") == "RESET"
            and connections.get("CLK") == clock and _param(cell, "CLKMUX", "CLK") == "CLK"
            and connections.get("LSR", ["0"]) == ["0"] and _param(cell, "LSRMUX", "LSR") == "LSR"):
        return None
    mux = _param(cell, "CEMUX", "1")
    if mux == "1":
        return ["1"]
    return connections.get("CE", ["1"]) if mux == "CE" else None


def _absorb_in_module(module: dict) -> int:
    cells = module["cells"]
    sinks = collections.defaultdict(list)                   # net bit -> [(cell, port)]
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "output":
                for bit in bits:
                    sinks[bit].append((name, port))
    for port in module["ports"].values():
        if port["direction"] != "input":
            for bit in port["bits"]:
                sinks[bit].append((None, "module port"))

    absorbed = 0
    for cell in list(cells.values()):
        if cell["type"] != "DP16KD":
            continue
        connections = cell["connections"]
        clock = connections.get("CLKA")
        if (any(_param(cell, f"REGMODE_{p}", "NOREG") != "NOREG" for p in "AB") or clock != connections.get("CLKB")
                or any(_param(cell, f"CLK{p}MUX", f"CLK{p}") != f"CLK{p}" for p in "AB")
                or any(connections.get(pin, ["0"]) != ["0"] for pin in ("RSTA", "RSTB"))
                or any(connections.get(pin, ["1"]) != ["1"] for pin in ("CEA", "CEB"))):
            continue
        moves, enables = [], set()
        for pin in _DATA_OUTPUTS:
            bit = connections.get(pin, ["x"])[0]
            users = sinks.get(bit, []) if isinstance(bit, int) else []
            if not users:
                continue
            (register, port), *others = users
            plain = not others and port == "DI" and register is not None
            enable = _register_enable(cells[register], clock) if plain else None
            if enable is None:
                break
            moves.append((pin, register))
            enables.add(tuple(enable))
        else:
            if not moves or len(enables) != 1:
                continue
            for pin, register in moves:
                connections[pin] = cells.pop(register)["connections"]["Q"]
            cell["parameters"]["REGMODE_A"] = cell["parameters"]["REGMODE_B"] = "OUTREG"
            connections["OCEA"] = connections["OCEB"] = list(enables.pop())
            absorbed += 1
    return absorbed


def absorb_output_registers(json_netlist: Path) -> int:
    """Move the flip-flops after ECP5 block RAMs into the blocks' output registers.

    Rewrites yosys's JSON netlist ``json_netlist`` in place (see the module's docstring
    for when a block RAM qualifies) and returns how many block RAMs now use their
    output register. Blocks already using it are left alone, so a second run changes
    nothing.
    """
    design = json.loads(Path(json_netlist).read_text())
    absorbed = sum(_absorb_in_module(module) for module in design["modules"].values())
    if absorbed:
        Path(json_netlist).write_text(json.dumps(design))
    return absorbed
