"""How a GEMM is cut into PE-array jobs, and how the results are put back together.

Shared by the Amaranth-simulator tests, the cocotb regression and
:func:`sim.pe_array.run_pe_array`, so every runner drives the array the same way.
A job is ``rows`` tokens (the last job zero-padded) against every column tile of
the weights; see ``hdl.pe_array.PeArray`` for the stream formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arch.bitmod import ACTIVATION_BITS, FAMILY_IDS
from arch.pe_array_config import PeArrayConfig
from golden.bitmod import BitmodWeights, quantize
from golden.bitmod_pack import pack, weight_beats

__all__ = ["Job", "plan_jobs", "check_inputs", "assemble", "first_mismatch", "random_case"]


@dataclass
class Job:
    """One job's run-time inputs and what its results mean."""

    family: int
    groups: int
    col_tiles: int
    act: list[int]           # activation beats (lanes int8 each, two's complement packed)
    weights: list[int]       # weight beats (cols 32-bit words each)
    first_row: int           # token of the job's row 0

    results: int             # result beats: rows per column tile

    def as_dict(self) -> dict:
        """The job as the cocotb side reads it (:mod:`sim.tb_pe_array`)."""
        return {"family": self.family, "groups": self.groups, "col_tiles": self.col_tiles, "act": self.act,
                "weights": self.weights, "results": self.results}


def check_inputs(config: PeArrayConfig, a_q: torch.Tensor, bw: BitmodWeights) -> None:
    """Refuse inputs the configured array cannot run, naming the argument and value."""
    if not isinstance(bw, BitmodWeights):
        raise TypeError(f"bw must be golden.bitmod.BitmodWeights, not {type(bw).__name__}")
    if not isinstance(a_q, torch.Tensor) or a_q.dtype != torch.int8 or a_q.dim() != 2:
        raise ValueError(f"a_q must be a 2-D int8 tensor, not {getattr(a_q, 'dtype', type(a_q))} "
                         f"with shape {tuple(getattr(a_q, 'shape', ()))}")
    n, k = bw.shape
    if a_q.shape[1] != k:
        raise ValueError(f"a_q has K = {a_q.shape[1]} columns but the weights have K = {k}")
    if a_q.shape[0] == 0:
        raise ValueError("a_q must have at least one row (token)")
    if bw.family not in config.families:
        raise ValueError(f"bw.family {bw.family!r} is not built into this array (families: "
                         f"{', '.join(config.families)})")
    if bw.group_size != config.group_size or bw.scale_bits != config.scale_bits:
        raise ValueError(f"bw has group_size={bw.group_size}, scale_bits={bw.scale_bits}; the array was built "
                         f"for group_size={config.group_size}, scale_bits={config.scale_bits}")
    if k > config.max_k:
        raise ValueError(f"K = {k} exceeds the array's max_k = {config.max_k}")


def _lane_words(values: torch.Tensor, lanes: int) -> list[int]:
    """Rows of int8 values, ``lanes`` at a time, packed into integers (lane l at bits 8l)."""
    unsigned = values.to(torch.int64).reshape(-1, lanes) & ((1 << ACTIVATION_BITS) - 1)
    shifts = torch.arange(lanes, dtype=torch.int64) * ACTIVATION_BITS
    # Python ints: a beat can be wider than 64 bits.
    return [sum(int(v) << int(s) for v, s in zip(row, shifts, strict=True)) for row in unsigned]


def _beat_words(beats: torch.Tensor) -> list[int]:
    return [sum(int(word) << (32 * c) for c, word in enumerate(row)) for row in beats]


def plan_jobs(config: PeArrayConfig, a_q: torch.Tensor, bw: BitmodWeights) -> list[Job]:
    """The jobs that compute ``matmul_int(a_q, bw)`` on an array of ``config``."""
    check_inputs(config, a_q, bw)
    n, k = bw.shape
    weights = _beat_words(weight_beats(pack(bw, cols=config.cols)))
    col_tiles = -(-n // config.cols)
    jobs = []
    for first in range(0, a_q.shape[0], config.rows):
        tokens = torch.zeros((config.rows, k), dtype=torch.int8)
        block = a_q[first:first + config.rows]
        tokens[:block.shape[0]] = block
        jobs.append(Job(FAMILY_IDS[bw.family], k // config.group_size, col_tiles,
                        _lane_words(tokens, config.lanes), weights, first, col_tiles * config.rows))
    return jobs


def assemble(config: PeArrayConfig, m: int, n: int, jobs: list[Job], beats: list[list[int]]) -> torch.Tensor:
    """``acc [m, n]`` (int64) from each job's result beats (signed ``acc_bits`` per column)."""
    bits = config.acc_bits
    acc = torch.zeros((m, n), dtype=torch.int64)
    for job, job_beats in zip(jobs, beats, strict=True):
        for index, beat in enumerate(job_beats):
            tile, row = divmod(index, config.rows)
            token = job.first_row + row
            for c in range(config.cols):
                column = tile * config.cols + c
                if token < m and column < n:
                    value = beat >> (bits * c) & ((1 << bits) - 1)
                    acc[token, column] = value - (1 << bits) if value >> (bits - 1) else value
    return acc


def first_mismatch(got: torch.Tensor, want: torch.Tensor, a_q: torch.Tensor, bw: BitmodWeights) -> str | None:
    """None if equal, else the first differing ``acc[m, n]`` with what went into it."""
    if got.shape != want.shape:
        return f"result shape {tuple(got.shape)} != expected {tuple(want.shape)}"
    diff = (got != want).nonzero()
    if not len(diff):
        return None
    m, n = (int(x) for x in diff[0])
    g = bw.group_size
    return (f"first mismatch at acc[{m}, {n}] ({len(diff)} differ): got {int(got[m, n])}, expected "
            f"{int(want[m, n])}; family {bw.family}, dt {bw.dt[n].tolist()}, sg {bw.sg[n].tolist()}, "
            f"sq {bw.sq[n].tolist()}, codes[{n}, :{min(g, 8)}] {bw.codes[n, :min(g, 8)].tolist()}, "
            f"a_q[{m}, :8] {a_q[m, :8].tolist()}")


def random_case(config: PeArrayConfig, name: str, generator: torch.Generator, *, max_groups: int = 3,
                ) -> tuple[torch.Tensor, BitmodWeights]:
    """Random int8 tokens and quantized weights of family ``name`` for ``config``.

    M and N are drawn up to ``2 * rows + 1`` and ``2 * cols + 1``, so most are not
    multiples of rows and cols; weights are heavy-tailed so that every grid point,
    ER/EA and POS/NEG groups appear; activations cover -128..127.
    """
    def pick(low, high):
        return int(torch.randint(low, high + 1, (), generator=generator))

    m = pick(1, 2 * config.rows + 1)
    n = pick(1, 2 * config.cols + 1)
    k = config.group_size * pick(1, min(max_groups, config.max_k // config.group_size))
    w = torch.randn((n, k), generator=generator, dtype=torch.float64)
    w = w * torch.rand((n, k), generator=generator, dtype=torch.float64) ** -0.5
    a_q = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
    return a_q, quantize(w.to(torch.float32), name, config.group_size, config.scale_bits)
