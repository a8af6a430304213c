"""The output contract of the three engines (PE array, KV quantizer, KV dequantizer),
proved by k-induction: from *any* state, reachable or not, a beat the engine offers and
the receiver does not take is offered again, unchanged, in the next cycle.

Every input port is free (the run-time mode, the job fields); every input stream is
driven by a source that keeps the contract. A group of the smallest KV build is 256
input beats, far beyond what BMC reaches, which is why the engines' beat accounting is
left to the bit-exact regressions with random stalls (docs/formal.md); the induction
proof of the contract needs no depth at all.
"""

from __future__ import annotations

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
        for name, member in dut.signature.members.items():
            port = getattr(dut, name)
            if member.is_signature and isinstance(member.signature, stream.Signature):
                if member.flow == wiring.In:
                    self.source(m, port, name)
                else:
                    m.d.comb += Cover(self.sink(m, port, name))
            elif member.is_port and member.flow == wiring.In:
                m.d.comb += port.eq(self.free(len(port.as_value()) if hasattr(port, "as_value") else len(port),
                                              name))


class PeArrayHarness(EngineHarness):
    def __init__(self, block=PeArray):
        super().__init__(block, PE_CONFIG)


class KvQuantHarness(EngineHarness):
    def __init__(self, block=KvQuantizer):
        super().__init__(block, KV_CONFIG)


class KvDequantHarness(EngineHarness):
    def __init__(self, block=KvDequantizer):
        super().__init__(block, KV_CONFIG)
