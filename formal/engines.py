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

from amaranth import Value
from amaranth.hdl import Cover
from amaranth.lib import stream, wiring

from arch.kv_config import KvConfig
from arch.pe_array_config import PeArrayConfig
from hdl.kv_dequant import KvDequantizer
from hdl.kv_quant import KvQuantizer
from hdl.pe_array import PeArray

from .streams import Harness

__all__ = ["EngineHarness", "PeArrayHarness", "KvQuantHarness", "KvDequantHarness"]

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

