"""Run the generated PE-array Verilog on a GEMM: ``run_pe_array(params, a_q, bw)``."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from gateware.designs import get_design
from golden.bitmod import BitmodWeights
from host.pe_array_jobs import assemble, plan_jobs

from .runner import Build, build_design, check_stall, run_json_job

__all__ = ["PeArrayRun", "run_pe_array", "run_pe_array_detailed"]


@dataclass
class PeArrayRun:
    """What a run of the PE array returned, with its cycle counts.

    ``cycles`` counts every job from its first activation beat to its last result;
    ``load_cycles`` is the part spent loading activations.
    """

    acc: torch.Tensor
    cycles: int
    load_cycles: int
    job_cycles: list[int]
    params: dict


def run_pe_array_detailed(params: dict, a_q: torch.Tensor, bw: BitmodWeights, simulator: str = "verilator", *,
                          stall: float = 0.0, seed: int | None = None, reset_after: int | None = None,
                          build: Build | None = None, design: str = "pe_array",
                          verbose: bool = False) -> PeArrayRun:
    """:func:`run_pe_array` with options for tests and benchmarks.

    ``stall`` is the probability of a stall in each cycle of every stream (a real number
    in [0, 1); 0: none); ``reset_after`` (None or an integer >= 1) interrupts the first job
    with a reset that many cycles in and then runs every job again (the result must not
    notice); both are checked before anything is built. ``build`` runs an existing
    simulator build (e.g. a synthesized netlist) instead of the generated RTL; ``design``
    may name another array with the same streams (``pe_array_parallel``); ``verbose`` as
    in :func:`run_pe_array`.
    """
    stall = check_stall(stall)
    if reset_after is not None and (isinstance(reset_after, bool) or not isinstance(reset_after, int)
                                    or reset_after < 1):
        raise ValueError(f"reset_after must be None or an integer >= 1, not {reset_after!r}")
    array = get_design(design)
    params = array.resolve(dict(params))
    config = array.config(params)
    jobs = plan_jobs(config, a_q, bw)
    seed = random.randrange(1 << 31) if seed is None else seed
    if build is None:
        build, params = build_design(design, params, simulator)
    spec = {"jobs": [job.as_dict() for job in jobs], "stall": stall, "seed": seed, "reset_after": reset_after}
    results = run_json_job(build, "sim.tb_pe_array", params, spec, seed=seed, testcase="pe_array_run",
                           verbose=verbose)
    acc = assemble(config, a_q.shape[0], bw.shape[0], jobs, results["beats"])
    return PeArrayRun(acc, sum(results["cycles"]), sum(results["load_cycles"]), results["cycles"], params)


def run_pe_array(params: dict, a_q: torch.Tensor, bw: BitmodWeights, simulator: str = "verilator", *,
                 verbose: bool = False) -> tuple[torch.Tensor, int]:
    """Run ``acc = matmul_int(a_q, bw)`` on the generated PE-array Verilog; return ``(acc, cycles)``.

    Parameters
    ----------
    params : dict
        Generator parameters, the names of ``mixbit generate pe_array -p`` (rows, cols,
        lanes, group_size, scale_bits, families, max_k); missing ones take defaults.
    a_q : int8 tensor [M, K]
        Tokens (any M; the array runs ``ceil(M / rows)`` jobs).
    bw : golden.bitmod.BitmodWeights
        Weights [N, K] of a family built into the array, with its group_size and scale_bits.
    simulator : "verilator" or "icarus"
    verbose : bool
        Show the simulator's output (cocotb's log) on stdout; by default it goes to
        ``sim.log`` in the run's folder (:func:`sim.runner.run_regression`).

    Returns ``acc`` (int64 [M, N], bit-exact ``golden.bitmod.matmul_int``) and the
    cycles the array took, activation loads included. The design is built once per
    parameter set and simulator and cached (``$MIXBIT_CACHE_DIR``). Errors in the
    inputs raise ValueError/TypeError naming the argument; a failed simulation raises
    :class:`sim.runner.SimulationFailed`, which names the log.
    """
    run = run_pe_array_detailed(params, a_q, bw, simulator, verbose=verbose)
    return run.acc, run.cycles
