"""synth/dp16kd_sim.v, the project's model of the ECP5 DP16KD block RAM, against the RTL it
was mapped from, cycle by cycle with random inputs on the RTL and on the placed ECP5
netlist: memories that yosys maps to data widths 1, 2, 4, 9 (written; read at 18), 18
(two write ports, 9-bit byte enables) and 36 (byte enables, an output register moved
into the block), in all three write modes, with initial contents and read enables; and
read registers with a synchronous and an asynchronous reset."""

import functools
import json
import random
import re

from amaranth import Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from gateware.generate import to_verilog
from sim.runner import build_sources, run_json_job
from synth.flow import placed_netlist, yosys_cells
from synth.netlist import build_netlist
from synth.targets import get_target

TARGET = "ecp5-85f"
#: (name, width, depth): one block RAM each.
MEMORIES = [("m1", 1, 16384), ("m2", 2, 8192), ("m4", 4, 4096), ("m9", 9, 2048), ("m18", 18, 1024),
            ("m36", 36, 512)]
#: Write ports with 9-bit byte enables.
BYTE_WRITES = {("m18", 0), ("m36", 0)}


class MemoryModes(wiring.Component):
    """One memory per DP16KD width, each written and read from random ports:

    * ``m1``, ``m2``, ``m4``: a write port and a read port with a read enable;
    * ``m9``: a read port transparent for the write port on the same address;
    * ``m18``: two write ports (the first with byte enables), each with a read port on its
      own address (true dual port), the second reading only when it does not write;
    * ``m36``: a write port with byte enables and a read port into a register that loads
      on its own enable (the flow moves it into the block's output register).
    """

    def __init__(self, init_seed):
        self.init_seed = init_seed
        ports = {}
        for name, width, depth in MEMORIES:
            abits = (depth - 1).bit_length()
            for w in range(2 if name == "m18" else 1):
                enables = width // 9 if (name, w) in BYTE_WRITES else 1
                ports |= {f"{name}_wa{w}": In(abits), f"{name}_wd{w}": In(width), f"{name}_we{w}": In(enables),
                          f"{name}_q{w}": Out(width)}
            if name in ("m1", "m2", "m4", "m36"):
                ports |= {f"{name}_ra": In(abits)}
            if name in ("m1", "m2", "m4"):
                ports |= {f"{name}_re": In(1)}
            if name == "m36":
                ports |= {f"{name}_oce": In(1)}
        super().__init__(ports)

    def port(self, memory, suffix):
        return getattr(self, f"{memory}_{suffix}")

    def elaborate(self, platform):
        m = Module()
        rng = random.Random(self.init_seed)
        for name, width, depth in MEMORIES:
            init = [rng.getrandbits(width) for _ in range(depth)]
            # With two write ports yosys maps a block RAM only if told that no read meets a
            # write of the other port, and without that it puts collision logic between the
            # 36-bit read and its register; such reads return the old word in the RTL and in
            # the model alike, and m18's second port never writes the first port's word.
            attrs = {"no_rw_check": 1} if name in ("m18", "m36") else {}
            m.submodules[name] = memory = Memory(shape=width, depth=depth, init=init, attrs=attrs)
            port = functools.partial(self.port, name)
            for w in range(2 if name == "m18" else 1):
                write = memory.write_port(granularity=9 if (name, w) in BYTE_WRITES else None)
                enable = port(f"we{w}") & (port("wa1") != port("wa0")) if w == 1 else port(f"we{w}")
                m.d.comb += [write.addr.eq(port(f"wa{w}")), write.data.eq(port(f"wd{w}")), write.en.eq(enable)]
                if name == "m36":
                    read = memory.read_port()
                    q = Signal(width, reset_less=True)
                    m.d.comb += [read.addr.eq(port("ra")), port("q0").eq(q)]
                    with m.If(port("oce")):
                        m.d.sync += q.eq(read.data)
                elif name in ("m9", "m18"):
                    read = memory.read_port(transparent_for=[write] if name == "m9" else ())
                    m.d.comb += [read.addr.eq(port(f"wa{w}")), port(f"q{w}").eq(read.data)]
                    if w == 1:                          # reads only when not writing
                        m.d.comb += read.en.eq(~port("we1"))
                else:
                    read = memory.read_port()
                    m.d.comb += [read.addr.eq(port("ra")), read.en.eq(port("re")), port("q0").eq(read.data)]
        return m


#: Read registers with resets, which Amaranth's read ports do not have: yosys maps each
#: memory to a DP16KD whose read reset is the register's (RESETMODE SYNC, then ASYNC).
RESETS_TOP = "dp16kd_resets"
RESETS = """
module dp16kd_resets(input clk, input rst,
  input [9:0] s_wa, input [17:0] s_wd, input s_we, input [9:0] s_ra, input s_re, input s_rst, output reg [17:0] s_q,
  input [9:0] a_wa, input [17:0] a_wd, input a_we, input [9:0] a_ra, input a_re, input a_rst, output reg [17:0] a_q);
  reg [17:0] smem [0:1023];
  reg [17:0] amem [0:1023];
  integer i;
  initial for (i = 0; i < 1024; i = i + 1) begin smem[i] = i * 7; amem[i] = i * 11; end
  always @(posedge clk) if (s_we) smem[s_wa] <= s_wd;
  always @(posedge clk) if (s_rst) s_q <= 0; else if (s_re) s_q <= smem[s_ra];
  always @(posedge clk) if (a_we) amem[a_wa] <= a_wd;
  always @(posedge clk or posedge a_rst) if (a_rst) a_q <= 0; else if (a_re) a_q <= amem[a_ra];
endmodule
"""


def _placed(verilog, top, out):
    """The placed ECP5 netlist of ``verilog``, its DP16KD cells' parameters, and how many
    block RAMs took their output registers."""
    target = get_target(TARGET)
    cells = yosys_cells(verilog, top, target, out)
    netlist, absorbed = placed_netlist(out / f"{top}.{target.name}.yosys.json", target.name)
    design = json.loads(netlist.with_suffix(".json").read_text())
    rams = [cell["parameters"] for module in design["modules"].values() for cell in module["cells"].values()
            if cell["type"] == "DP16KD"]
    assert len(rams) == cells.get("DP16KD", 0)
    return netlist, rams, absorbed


def _compare(verilog, netlist, top, inputs, outputs, what, seed):
    """Run the bench with ``inputs`` on the RTL and on the netlist; fail on the first
    cycle where any of ``outputs`` differs."""
    job = {"inputs": inputs, "pool_size": 6, "outputs": outputs, "cycles": 3000}
    runs = {}
    for which, build in (("RTL", build_sources([verilog], top, "verilator", name=top)),
                         ("netlist", build_netlist(netlist, top, TARGET, "verilator"))):
        runs[which] = run_json_job(build, "sim.tb_ports", {}, job, seed=seed, testcase="ports_run")["outputs"]
    for cycle, (want, got) in enumerate(zip(runs["RTL"], runs["netlist"], strict=True)):
        differ = [f"{name} RTL 0x{a:x} netlist 0x{b:x}" for name, a, b in zip(outputs, want, got, strict=True)
                  if a != b]
        assert not differ, f"cycle {cycle}: {'; '.join(differ)} ({what}; seed {seed})"


def _ports(verilog_text, direction):
    """``{name: width}`` of the ports of ``direction`` in the one-module Verilog ``verilog_text``."""
    found = re.findall(rf"\b{direction}\s+(?:reg\s+|wire\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_]\w*)",
                       verilog_text)
    return {name: int(high) - int(low) + 1 if high else 1 for high, low, name in found}


def _inputs(widths):
    """The bench's inputs: a memory's addresses from one small pool (so that its reads meet
    its writes), the rest random."""
    return {name: {"width": width, "pool": name.split("_")[0] if name.split("_")[1].startswith(("wa", "ra"))
                   else None}
            for name, width in widths.items() if name not in ("clk", "rst")}


def test_every_width_matches_the_rtl_cycle_by_cycle(tmp_path, seed):
    component = MemoryModes(seed)
    verilog = tmp_path / "dp16kd_modes.v"
    verilog.write_text(to_verilog(component, "dp16kd_modes"))
    netlist, rams, absorbed = _placed(verilog, "dp16kd_modes", tmp_path)
    widths = sorted({(int(str(p["DATA_WIDTH_A"]), 2), int(str(p["DATA_WIDTH_B"]), 2)) for p in rams})
    modes = {p.get(f"WRITEMODE_{port}") for p in rams for port in "AB"}
    assert len(rams) == len(MEMORIES) and absorbed == 1, \
        f"want {len(MEMORIES)} DP16KD, 1 with its output register; got {len(rams)}, {absorbed}"
    assert {w for pair in widths for w in pair} == {1, 2, 4, 9, 18, 36}, widths
    assert {"NORMAL", "WRITETHROUGH", "READBEFOREWRITE"} <= modes, modes
    members = component.signature.members.items()
    inputs = _inputs({name: Shape.cast(member.shape).width for name, member in members if member.flow == In})
    outputs = [name for name, member in members if member.flow == Out]
    _compare(verilog, netlist, "dp16kd_modes", inputs, outputs, f"block RAM widths {widths}", seed)


def test_read_resets_match_the_rtl_cycle_by_cycle(tmp_path, seed):
    verilog = tmp_path / f"{RESETS_TOP}.v"
    verilog.write_text(RESETS)
    netlist, rams, _ = _placed(verilog, RESETS_TOP, tmp_path)
    assert sorted(str(p["RESETMODE"]) for p in rams) == ["ASYNC", "SYNC"], rams
    _compare(verilog, netlist, RESETS_TOP, _inputs(_ports(RESETS, "input")), list(_ports(RESETS, "output")),
             "read resets", seed)
