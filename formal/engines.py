"""The output contract of the three engines (PE array, KV quantizer, KV dequantizer): a
beat the engine offers and the receiver does not take is offered again, unchanged, in
the next cycle.

Every input port is free (the run-time mode, the job fields, memory read data of a
sub-block); every input stream is driven by a source that keeps the contract. The KV
engines' proof is k-induction (from *any* state: their ``o`` is a register slice); the
PE array's is BMC from reset (its output ring defeats induction from unreachable states).
A group of the smallest KV build is 256 input beats, far beyond what BMC reaches, which
is why the engines' beat accounting is left to the bit-exact regressions with random
stalls (docs/formal.md).
"""

from __future__ import annotations

from amaranth import Signal, Value
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import stream, wiring

from arch.bitmod import FAMILY_IDS
from arch.kv_config import KvConfig
from arch.pe_array_config import PeArrayConfig
from hdl.kv_dequant import KvDequantizer
from hdl.kv_quant import KvQuantizer
from hdl.pe_array import PeArray

from .links import FAIR
from .streams import Harness

__all__ = ["EngineHarness", "PeArrayHarness", "PeArrayJobHarness", "KvQuantHarness", "KvDequantHarness"]

PE_CONFIG = PeArrayConfig(rows=1, cols=1, lanes=4, group_size=32, families=("int4",), max_k=32)
KV_CONFIG = KvConfig(d=32, group_tokens=16, lanes=2, in_bits=8, ternary_layout="b3", stp=True)


class EngineHarness(Harness):
    """Any component: free inputs, sources on its input streams, contract-checking sinks
    on its output streams."""

    def __init__(self, block, config):
        super().__init__()
        self.block, self.config = block, config

    def build(self, m):
        dut = m.submodules.dut = self.block(self.config)
        streams = set()
        for name, member in dut.signature.members.items():
            if member.is_signature and isinstance(member.signature, stream.Signature):
                streams.add(name)
                port = getattr(dut, name)
                if member.flow == wiring.In:
                    self.source(m, port, name)
                else:
                    m.d.comb += Cover(self.sink(m, port, name))
        for path, member, value in dut.signature.flatten(dut):
            if path[0] not in streams and member.flow == wiring.In:
                value = Value.cast(value)
                m.d.comb += value.eq(self.free(len(value), "_".join(str(part) for part in path)))


class PeArrayHarness(EngineHarness):
    def __init__(self, block=PeArray):
        super().__init__(block, PE_CONFIG)


class KvQuantHarness(EngineHarness):
    def __init__(self, block=KvQuantizer):
        super().__init__(block, KV_CONFIG)


class KvDequantHarness(EngineHarness):
    def __init__(self, block=KvDequantizer):
        super().__init__(block, KV_CONFIG)


class PeArrayJobHarness(Harness):
    """:class:`PeArray` (``PE_CONFIG``) on int4 jobs of one group and one tile: no result
    beat leaves before its job's activations and weights are in (none created), and a
    job whose inputs are all in is answered within ``RESPONSE`` cycles under fair
    back-pressure (none lost)."""

    RESPONSE = 40

    def __init__(self, block=PeArray):
        super().__init__()
        self.block = block

    def build(self, m):
        config = PE_CONFIG
        assert config.rows == config.cols == 1, "a job's answer is one result beat"
        dut = m.submodules.dut = self.block(config)
        m.d.comb += [dut.family.eq(FAMILY_IDS["int4"]), dut.groups.eq(1), dut.col_tiles.eq(1)]
        _, act_in = self.source(m, dut.act, "act")
        # The job fields are sampled while the array waits for the first act beat.
        first = Signal(init=1, name="first_cycle")
        m.d.sync += first.eq(0)
        m.d.comb += Assume(~(first & dut.act.valid))
        _, w_in = self.source(m, dut.w, "w")
        given = self.sink(m, dut.o, "o", fair=FAIR)
        act_beats = config.rows * config.group_size // config.lanes      # a job's activation beats
        w_beats = config.words_per_group                                 # its weight beats
        n_act, n_w = self.counter(m, act_in, 7, "n_act"), self.counter(m, w_in, 7, "n_w")
        n_out = self.counter(m, given, 4, "n_out")
        m.d.comb += [Assert(n_out * act_beats <= n_act, "o: a result before its job's activations"),
                     Assert(n_out * w_beats <= n_w, "o: a result before its job's weights")]
        # One row and one tile: a job is answered by one result beat.
        waiting = (n_act >= (n_out + 1) * act_beats) & (n_w >= (n_out + 1) * w_beats)
        self.bounded(m, waiting, self.RESPONSE, "job_wait")
        m.d.comb += Cover(given & (n_out == 1))
