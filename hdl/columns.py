"""A wide memory split into columns that are each one block RAM deep.

yosys maps a wide, deep memory onto block RAMs in whichever aspect ratio costs fewest
blocks; for the KV quantizer's group buffer (128 bits x 3072 words on the ECP5) that is
18-bit x 1024-word blocks three deep, whose outputs meet in a multiplexer after the
blocks' slow clock-to-out: the engine's critical path (10.8 ns). Split into columns
narrow enough that a column's whole depth fits one block (4 bits x 4096 on a DP16KD),
every read bit comes straight from one block RAM's output.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

__all__ = ["BLOCK_RAM_BITS", "ColumnMemory", "column_bits"]

#: Bits of the block RAM a column is sized for: the ECP5's DP16KD. On an iCE40
#: (SB_RAM40_4K, 4096 bits) such columns take the same number of blocks.
BLOCK_RAM_BITS = 16384


def column_bits(width: int, depth: int, block_bits: int = BLOCK_RAM_BITS) -> int:
    """The widest column of a ``width`` x ``depth`` memory that one block RAM holds whole."""
    if width < 1 or depth < 1:
        raise ValueError(f"a memory needs width >= 1 and depth >= 1, not width={width}, depth={depth}")
    deep = 1 << (depth - 1).bit_length()
    return max(1, min(width, block_bits // deep))


class _Port:
    def __init__(self, addr_bits: int, width: int, name: str):
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        self.data = Signal(width, name=f"{name}_data")
        self.en = Signal(name=f"{name}_en", init=1)


class ColumnMemory(Elaboratable):
    """``width`` x ``depth`` words with one write port and ``read_ports`` synchronous
    read ports (``data`` a cycle after ``addr``, held while ``en`` is low), like
    ``lib.memory.Memory``'s, stored as :func:`column_bits`-wide column memories.

    A read must not meet a write of the same word in the same cycle (its value is then
    undefined): the memories carry yosys's ``no_rw_check``, without which yosys puts
    collision logic (registers and a multiplexer) after every block RAM's output.

    ``write`` has ``addr``, ``data``, ``en``; ``reads[i]`` has ``addr``, ``en``, ``data``.
    With ``replicate`` every read port gets its own copy of each column (one write and
    one read port a memory), as yosys would build it anyway, but without its sharing
    logic between the copies' outputs.
    """

    def __init__(self, width: int, depth: int, read_ports: int = 1, block_bits: int = BLOCK_RAM_BITS, *,
                 replicate: bool = False):
        self.width, self.depth, self.replicate = width, depth, replicate
        self.columns = column_bits(width, depth, block_bits)
        addr_bits = max(1, (depth - 1).bit_length())
        self.write = _Port(addr_bits, width, "write")
        self.write.en = Signal(name="write_en")
        self.reads = [_Port(addr_bits, width, f"read{i}") for i in range(read_ports)]

    def elaborate(self, platform):
        m = Module()
        copies = [[port] for port in self.reads] if self.replicate else [self.reads]
        for c, low in enumerate(range(0, self.width, self.columns)):
            bits = min(self.columns, self.width - low)
            for k, ports in enumerate(copies):
                name = f"column{c}" + (f"_read{k}" if self.replicate else "")
                column = m.submodules[name] = Memory(shape=bits, depth=self.depth, init=[],
                                                     attrs={"no_rw_check": 1})
                w = column.write_port()
                m.d.comb += [w.addr.eq(self.write.addr), w.data.eq(self.write.data[low:low + bits]),
                             w.en.eq(self.write.en)]
                for port in ports:
                    r = column.read_port()
                    m.d.comb += [r.addr.eq(port.addr), r.en.eq(port.en), port.data[low:low + bits].eq(r.data)]
        return m
