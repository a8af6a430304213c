"""The cycle model (``PeArrayConfig.job_cycles``) against the PE array under Amaranth's
simulator, cycle for cycle, on shapes that vary each parameter it depends on: rows, column
tiles, lanes, group size, scale bits, the family's digits, int8 and FP16 activations, and
tiles short enough that the next tile waits for the last one's dequantization."""

import pytest
import torch

from arch.pe_array_config import PeArrayConfig
from golden.bitmod import quantize
from hdl.pe_array import PeArray
from host.pe_array_jobs import plan_jobs
from sim.pe_array_amaranth import simulate_jobs

#: rows, cols, lanes, group_size, scale_bits, activations, family, groups (K / G), N.
SHAPES = [
    (1, 1, 8, 64, 8, "int8", "fp4", 2, 3),       # the reference point: 8 lanes, S = 8
    (9, 2, 8, 32, 4, "int8", "int8", 2, 5),      # two row copies, four-digit family, S = 4
    (3, 2, 8, 128, 12, "fp16", "int6", 1, 4),    # FP16's later digit bus, three digits, S = 12
    (1, 1, 8, 64, 12, "int8", "fp4", 1, 3),      # one short group a tile: the tile gap binds
    (2, 1, 8, 32, 4, "fp16", "fp4", 2, 3),       # ... and in an FP16 build
    (4, 3, 4, 32, 12, "int8", "fp4", 1, 9),      # ... at 4 lanes, rows 4
    (2, 2, 4, 64, 8, "int8", "int8", 2, 3),      # 4 lanes: a lane-sum level fewer
    (2, 3, 2, 64, 5, "fp16", "int6", 2, 7),      # 2 lanes, S = 5
    (1, 3, 8, 64, 4, "int8", "fp3", 3, 3),       # three-bit codes
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:3])) + f"-G{s[3]}-S{s[4]}-{s[5]}-{s[6]}")
def test_job_cycles_equals_the_rtl(shape):
    rows, cols, lanes, group_size, scale_bits, activations, name, groups, n = shape
    config = PeArrayConfig(rows=rows, cols=cols, lanes=lanes, group_size=group_size, scale_bits=scale_bits,
                           max_k=groups * group_size, activations=activations)
    k = groups * group_size
    gen = torch.Generator().manual_seed(len(SHAPES))
    bw = quantize(torch.randn(n, k, generator=gen), name, group_size=group_size, scale_bits=scale_bits)
    a = torch.randn(rows, k, generator=gen).half() if activations == "fp16" else \
        torch.randint(-128, 128, (rows, k), generator=gen, dtype=torch.int8)
    jobs = plan_jobs(config, a, bw)
    assert len(jobs) == 1
    simulated = simulate_jobs(PeArray(config), jobs).cycles
    assert config.job_cycles(name, k, n) == simulated, f"model {config.job_cycles(name, k, n)}, RTL {simulated}"
