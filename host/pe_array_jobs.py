"""How a GEMM is cut into PE-array jobs, and how the results are put back together.

Shared by the Amaranth-simulator tests, the cocotb regression and
:func:`sim.pe_array.run_pe_array`, so every runner drives the array the same way.
A job is ``rows`` tokens (the last job zero-padded) against every column tile of
the weights; see ``hdl.pe_array.PeArray`` for the stream formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arch.bitmod import FAMILY_IDS
from arch.pe_array_config import EXPONENT_FIELD_BITS, PeArrayConfig
from golden.bitmod import BitmodWeights, quantize
from golden.bitmod_pack import pack, weight_beats
from golden.fp16 import check_fp16

__all__ = ["Job", "plan_jobs", "check_inputs", "assemble", "assemble_tags", "first_mismatch", "random_case",
           "random_fp16"]


@dataclass
class Job:
    """One job's run-time inputs and what its results mean."""

    family: int
    groups: int
    col_tiles: int
    act: list[int]           # activation beats (lanes int8 or binary16 fields each, packed)
    weights: list[int]       # weight beats (cols 32-bit words each)
    first_row: int           # token of the job's row 0

    results: int             # result beats: rows per column tile
    fp16: bool = False       # the job's activations are FP16 (the ``fp16`` input of a ``both`` build)

    def as_dict(self) -> dict:
        """The job as the cocotb side reads it (:mod:`sim.tb_pe_array`)."""
        return {"family": self.family, "groups": self.groups, "col_tiles": self.col_tiles, "act": self.act,
                "weights": self.weights, "results": self.results, "fp16": self.fp16}


def check_inputs(config: PeArrayConfig, a: torch.Tensor, bw: BitmodWeights) -> None:
    """Refuse inputs the configured array cannot run, naming the argument and value.

    ``a`` is int8 tokens (an ``int8`` or ``both`` build) or float16 tokens (an ``fp16``
    or ``both`` build; Inf and NaN are refused, naming token and channel).
    """
    if not isinstance(bw, BitmodWeights):
        raise TypeError(f"bw must be golden.bitmod.BitmodWeights, not {type(bw).__name__}")
    if not isinstance(a, torch.Tensor) or a.dtype not in (torch.int8, torch.float16) or a.dim() != 2:
        raise ValueError(f"a must be a 2-D int8 or float16 tensor, not {getattr(a, 'dtype', type(a))} "
                         f"with shape {tuple(getattr(a, 'shape', ()))}")
    if a.dtype == torch.float16:
        if not config.fp16:
            raise ValueError("a is float16 but the array was built with activations=int8 "
                             "(build it with activations=fp16 or both)")
        check_fp16(a)
    elif config.activations == "fp16":
        raise ValueError("a is int8 but the array was built with activations=fp16 "
                         "(build it with activations=both)")
    n, k = bw.shape
    if a.shape[1] != k:
        raise ValueError(f"a has K = {a.shape[1]} columns but the weights have K = {k}")
    if a.shape[0] == 0:
        raise ValueError("a must have at least one row (token)")
    if bw.family not in config.families:
        raise ValueError(f"bw.family {bw.family!r} is not built into this array (families: "
                         f"{', '.join(config.families)})")
    if bw.group_size != config.group_size or bw.scale_bits != config.scale_bits:
        raise ValueError(f"bw has group_size={bw.group_size}, scale_bits={bw.scale_bits}; the array was built "
                         f"for group_size={config.group_size}, scale_bits={config.scale_bits}")
    if k > config.max_k:
        raise ValueError(f"K = {k} exceeds the array's max_k = {config.max_k}")


def _lane_words(values: torch.Tensor, lanes: int, bits: int) -> list[int]:
    """Rows of lane values, ``lanes`` at a time, packed into integers (lane l at bits ``bits * l``)."""
    unsigned = values.to(torch.int64).reshape(-1, lanes) & ((1 << bits) - 1)
    shifts = torch.arange(lanes, dtype=torch.int64) * bits
    # Python ints: a beat can be wider than 64 bits.
    return [sum(int(v) << int(s) for v, s in zip(row, shifts, strict=True)) for row in unsigned]


def _beat_words(beats: torch.Tensor) -> list[int]:
    return [sum(int(word) << (32 * c) for c, word in enumerate(row)) for row in beats]


def plan_jobs(config: PeArrayConfig, a: torch.Tensor, bw: BitmodWeights) -> list[Job]:
    """The jobs that compute ``a`` (int8 or float16 tokens) times ``bw`` on an array of ``config``."""
    check_inputs(config, a, bw)
    n, k = bw.shape
    weights = _beat_words(weight_beats(pack(bw, cols=config.cols)))
    col_tiles = -(-n // config.cols)
    fp16 = a.dtype == torch.float16
    # A lane's raw bits: int8 (sign-extended into a 16-bit field of an FP16 build), or binary16.
    lanes = a.contiguous().view(torch.int16) if fp16 else a
    jobs = []
    for first in range(0, a.shape[0], config.rows):
        tokens = torch.zeros((config.rows, k), dtype=lanes.dtype)
        block = lanes[first:first + config.rows]
        tokens[:block.shape[0]] = block
        jobs.append(Job(FAMILY_IDS[bw.family], k // config.group_size, col_tiles,
                        _lane_words(tokens, config.lanes, config.act_field_bits), weights, first,
                        col_tiles * config.rows, fp16))
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


def assemble_tags(config: PeArrayConfig, m: int, jobs: list[Job], beats: list[list[int]]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """An FP16 build's ``(er int64 [m], invalid bool [m])`` from the result beats.

    Every beat of a token carries its exponent and its job's flag; a token whose beats
    disagree is an error of the array (ValueError)."""
    if not config.fp16:
        raise ValueError("the array was built with activations=int8: its result beats carry no exponent")
    low = config.cols * config.acc_bits
    er = torch.full((m,), -1, dtype=torch.int64)
    invalid = torch.zeros((m,), dtype=torch.bool)
    for job, job_beats in zip(jobs, beats, strict=True):
        for index, beat in enumerate(job_beats):
            token = job.first_row + index % config.rows
            if token >= m:
                continue
            exponent = beat >> low & ((1 << EXPONENT_FIELD_BITS) - 1)
            flag = bool(beat >> (low + EXPONENT_FIELD_BITS) & 1)
            if index >= config.rows and (int(er[token]) != exponent or bool(invalid[token]) != flag):
                raise ValueError(f"token {token}: result beats disagree on its exponent or invalid flag")
            er[token], invalid[token] = exponent, flag
    return er, invalid


def first_mismatch(got: torch.Tensor, want: torch.Tensor, a_q: torch.Tensor, bw: BitmodWeights) -> str | None:
    """None if equal, else the first differing ``acc[m, n]`` with what went into it (``a_q``:
    the int8 or float16 tokens)."""
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
            f"a[{m}, :8] {a_q[m, :8].tolist()}")


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


def random_fp16(m: int, k: int, generator: torch.Generator, kind: str = "mixed") -> torch.Tensor:
    """Float16 tokens [m, k] whose arithmetic is delicate: ``gaussian``, ``heavy`` (Student-t-like
    tails up to the largest normals), ``subnormal`` (every value subnormal or a signed zero),
    ``spread`` (exponents across the whole range in every token), or ``mixed`` (a row of each,
    cycling)."""
    def gaussian(rows):
        return torch.randn((rows, k), generator=generator, dtype=torch.float64)

    def heavy(rows):
        tails = torch.rand((rows, k), generator=generator, dtype=torch.float64).clamp(min=1e-6) ** -1.5
        return (gaussian(rows) * tails).clamp(-65504, 65504)

    def subnormal(rows):
        bits = torch.randint(0, 1024, (rows, k), generator=generator) | \
            (torch.randint(0, 2, (rows, k), generator=generator) << 15)
        return bits.to(torch.int16).view(torch.float16).to(torch.float64)

    def spread(rows):
        exponent = torch.randint(-24, 16, (rows, k), generator=generator).to(torch.float64)
        sign = torch.randint(0, 2, (rows, k), generator=generator).to(torch.float64) * 2 - 1
        scale = torch.rand((rows, k), generator=generator, dtype=torch.float64) + 1
        return (sign * scale * exponent.exp2()).clamp(-65504, 65504)

    kinds = {"gaussian": gaussian, "heavy": heavy, "subnormal": subnormal, "spread": spread}
    if kind == "mixed":
        order = list(kinds.values())
        return torch.cat([order[row % len(order)](1) for row in range(m)]).to(torch.float16)
    if kind not in kinds:
        raise ValueError(f"kind must be one of {', '.join(kinds)} or mixed, not {kind!r}")
    return kinds[kind](m).to(torch.float16)
