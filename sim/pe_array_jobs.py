"""How a GEMM is cut into PE-array jobs, and how the results are put back together.

Shared by the Amaranth-simulator tests, the cocotb regression and
:func:`sim.pe_array.run_pe_array`, so every runner drives the array the same way.
A job is ``rows`` tokens (the last job zero-padded) against every column tile of
the weights; see ``hdl.pe_array.PeArray`` for the stream formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from golden.bitmod import BitmodWeights
from golden.bitmod_pack import pack, weight_beats
from golden.tables import ACTIVATION_BITS, FAMILY_IDS
from hdl.pe_array_config import PeArrayConfig

__all__ = ["Job", "plan_jobs", "check_inputs", "assemble", "first_mismatch"]


@dataclass
class Job:
    """One job's run-time inputs and what its results mean."""

    family: int
    groups: int
    col_tiles: int
    act: list[int]           # activation beats (lanes int8 each, two's complement packed)
    weights: list[int]       # weight beats (cols 32-bit words each)
    first_row: int           # token of the job's row 0

    @property
    def results(self) -> int:
        """Result beats the job returns: rows per column tile."""
        return self.col_tiles * self._rows

    _rows: int = 0


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
    return [sum(int(v) << int(s) for v, s in zip(row, shifts)) for row in unsigned]


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
        job = Job(FAMILY_IDS[bw.family], k // config.group_size, col_tiles,
                  _lane_words(tokens, config.lanes), weights, first)
        job._rows = config.rows
        jobs.append(job)
    return jobs


def assemble(config: PeArrayConfig, m: int, n: int, jobs: list[Job], beats: list[list[int]]) -> torch.Tensor:
    """``acc [m, n]`` (int64) from each job's result beats (signed ``acc_bits`` per column)."""
    bits = config.widths["acc_bits"]
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
