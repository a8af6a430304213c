"""ColumnMemory: a wide memory as block-RAM-deep columns, read back like lib.memory.Memory."""

import random

import pytest
from amaranth.sim import Simulator

from hdl.columns import ColumnMemory, column_bits


@pytest.mark.parametrize(("width", "depth", "want"), [
    (128, 3072, 4),      # the KV quantizer's buffer at D=128 Tg=32 lanes=8 with STP: 4 x 4096 DP16KDs
    (128, 1536, 8),      # ... without STP
    (128, 512, 32),
    (16, 1536, 8),       # the UP5K configuration
    (8, 16, 8),          # narrower than a block's widest column: one memory
    (3, 1 << 20, 1),     # deeper than a block: still one bit per column
])
def test_column_bits(width, depth, want):
    assert column_bits(width, depth) == want


def test_column_bits_rejects_empty_memories():
    with pytest.raises(ValueError, match="depth=0"):
        column_bits(8, 0)


@pytest.mark.parametrize("replicate", [False, True])
@pytest.mark.parametrize(("width", "depth", "block_bits"), [(13, 40, 128), (8, 16, 16384), (20, 33, 64)])
def test_reads_return_writes(width, depth, block_bits, replicate):
    """Random writes and two read ports with random enables: each read port returns the
    word at its last enabled read's address as it was then (before that cycle's write),
    held while its enable is low."""
    memory = ColumnMemory(width, depth, read_ports=2, block_bits=block_bits, replicate=replicate)
    assert memory.columns == column_bits(width, depth, block_bits)
    rng = random.Random(width * depth)
    model = [0] * depth
    problems = []

    async def bench(ctx):
        held = [0, 0]                                   # each port's held word
        for cycle in range(600):
            w_en, w_addr, w_data = rng.random() < 0.5, rng.randrange(depth), rng.randrange(1 << width)
            ctx.set(memory.write.en, w_en)
            ctx.set(memory.write.addr, w_addr)
            ctx.set(memory.write.data, w_data)
            reads = []
            for port in memory.reads:
                en, addr = rng.random() < 0.7, rng.randrange(depth)
                if en and w_en and addr == w_addr:             # the contract: no read meets a write
                    addr = (addr + 1) % depth
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                reads.append((en, addr))
            expected = [model[a] if en else held[k] for k, (en, a) in enumerate(reads)]
            await ctx.tick()
            if w_en:
                model[w_addr] = w_data
            for k, port in enumerate(memory.reads):
                got = ctx.get(port.data)
                if got != expected[k] and not problems:
                    problems.append(f"cycle {cycle} port {k} read {reads[k]}: got {got:#x}, want {expected[k]:#x}")
                held[k] = expected[k]

    sim = Simulator(memory)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not problems, problems[0]
