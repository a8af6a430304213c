"""synth/dp16kd_sim.v, the project's model of the ECP5 DP16KD block RAM, against the RTL it
was mapped from: memories of every data width yosys maps to a DP16KD (1, 4, 9, 18 and the
36-bit pseudo dual port with byte enables), with initial contents, read enables, a
transparent read, two write ports and an output register moved into the block, each run
with random inputs on the RTL and on the placed ECP5 netlist, cycle by cycle."""

import functools
import json
import random

from amaranth import Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from gateware.generate import to_verilog
from sim.runner import build_sources, run_json_job
from synth.flow import placed_netlist, yosys_cells
from synth.netlist import build_netlist
from synth.targets import get_target

TOP = "dp16kd_modes"
#: (name, width, depth): one block RAM each.
MEMORIES = [("m1", 1, 16384), ("m4", 4, 4096), ("m9", 9, 2048), ("m18", 18, 1024), ("m36", 36, 512)]


class MemoryModes(wiring.Component):
    """One memory per DP16KD width, each written and read from random ports:

    * ``m1``, ``m4``: a write port and a read port with a read enable;
    * ``m9``: a read port transparent for the write port on the same address;
    * ``m18``: two write ports, each with a read port on its own address (true dual port),
      the second reading only when it does not write;
    * ``m36``: a write port with 9-bit byte enables and a read port into a register that
      loads on its own enable (the flow moves it into the block's output register).
    """

    def __init__(self, init_seed):
        self.init_seed = init_seed
        ports = {}
        for name, width, depth in MEMORIES:
            abits = (depth - 1).bit_length()
            writes = 2 if name == "m18" else 1
            for w in range(writes):
                ports |= {f"{name}_wa{w}": In(abits), f"{name}_wd{w}": In(width),
                          f"{name}_we{w}": In(4 if name == "m36" else 1), f"{name}_q{w}": Out(width)}
            ports |= {f"{name}_ra": In(abits)} if name in ("m1", "m4", "m36") else {}
            ports |= {f"{name}_re": In(1)} if name in ("m1", "m4") else {}
            ports |= {f"{name}_oce": In(1)} if name == "m36" else {}
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
            writes = 2 if name == "m18" else 1
            for w in range(writes):
                write = memory.write_port(granularity=9 if name == "m36" else None)
                enable = port(f"we{w}") & (port("wa1") != port("wa0")) if w == 1 else port(f"we{w}")
                m.d.comb += [write.addr.eq(port(f"wa{w}")), write.data.eq(port(f"wd{w}")), write.en.eq(enable)]
                if name in ("m1", "m4"):
                    read = memory.read_port()
                    m.d.comb += [read.addr.eq(port("ra")), read.en.eq(port("re")), port("q0").eq(read.data)]
                elif name == "m36":
                    read = memory.read_port()
                    q = Signal(width, reset_less=True)
                    m.d.comb += [read.addr.eq(port("ra")), port("q0").eq(q)]
                    with m.If(port("oce")):
                        m.d.sync += q.eq(read.data)
                else:
                    read = memory.read_port(transparent_for=[write] if name == "m9" else ())
                    m.d.comb += [read.addr.eq(port(f"wa{w}")), port(f"q{w}").eq(read.data)]
                    if w == 1:                          # reads only when not writing
                        m.d.comb += read.en.eq(~port("we1"))
        return m


def _port_spec(component):
    """The bench's inputs and outputs: a memory's addresses from one small pool (so that its
    reads meet its writes), the rest random."""
    inputs, outputs = {}, []
    for name, member in component.signature.members.items():
        if member.flow == In:
            memory, port = name.split("_")
            pool = memory if port.startswith(("wa", "ra")) else None
            inputs[name] = {"width": Shape.cast(member.shape).width, "pool": pool}
        else:
            outputs.append(name)
    return inputs, outputs


def test_every_width_matches_the_rtl_cycle_by_cycle(tmp_path, seed):
    component = MemoryModes(seed)
    verilog = tmp_path / f"{TOP}.v"
    verilog.write_text(to_verilog(component, TOP))
    target = get_target("ecp5-85f")
    cells = yosys_cells(verilog, TOP, target, tmp_path)
    netlist, absorbed = placed_netlist(tmp_path / f"{TOP}.{target.name}.yosys.json", target.name)
    design = json.loads(netlist.with_suffix(".json").read_text())
    rams = [cell["parameters"] for module in design["modules"].values() for cell in module["cells"].values()
            if cell["type"] == "DP16KD"]
    widths = sorted({(int(str(p["DATA_WIDTH_A"]), 2), int(str(p["DATA_WIDTH_B"]), 2)) for p in rams})
    modes = {p.get(f"WRITEMODE_{port}") for p in rams for port in "AB"}
    assert cells.get("DP16KD") == len(MEMORIES) and absorbed == 1, (cells, absorbed)
    assert {w for pair in widths for w in pair} == {1, 4, 9, 18, 36}, widths
    assert {"NORMAL", "WRITETHROUGH", "READBEFOREWRITE"} <= modes, modes

    inputs, outputs = _port_spec(component)
    job = {"inputs": inputs, "pool_size": 6, "outputs": outputs, "cycles": 3000}
    runs = {}
    for what, build in (("RTL", build_sources([verilog], TOP, "verilator", name=TOP)),
                        ("netlist", build_netlist(netlist, TOP, target.name, "verilator"))):
        runs[what] = run_json_job(build, "sim.tb_ports", {}, job, seed=seed, testcase="ports_run")["outputs"]
    for cycle, (want, got) in enumerate(zip(runs["RTL"], runs["netlist"], strict=True)):
        differ = [f"{name} RTL 0x{a:x} netlist 0x{b:x}" for name, a, b in zip(outputs, want, got, strict=True)
                  if a != b]
        assert not differ, f"cycle {cycle}: {'; '.join(differ)} (block RAM widths {widths}; seed {seed})"
