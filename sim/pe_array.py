"""Run the generated PE-array Verilog on a GEMM: ``run_pe_array(params, a, bw)`` (int8 or FP16 tokens)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch

from arch.bitmod import FAMILY_IDS
from gateware.designs import fp32_results, get_design
from golden.bitmod import BitmodWeights, fp16_output
from golden.fp16_mac import acc_from_bits, fp16_mac_output
from host.pe_array_jobs import assemble, assemble_tags, plan_jobs

from .runner import Build, build_design, check_stall, run_json_job

__all__ = ["PeArrayRun", "run_pe_array", "run_pe_array_detailed"]


@dataclass
class PeArrayRun:
    """What a run of the PE array returned, with its cycle counts.

    ``acc`` is the exact integer result; for FP16 tokens ``exponent`` is each token's
    ``er`` and ``out`` the float32 result (``golden.bitmod.fp16_output``), else both None.
    The FP16 MAC baseline (``pe_array_parallel`` with ``activations=fp16``) gives float32
    ``acc`` (its FP32 accumulators, ``golden.fp16_mac.matmul_fp16_mac_acc``), ``out``
    (``golden.fp16_mac.matmul_fp16_mac``) and no ``exponent``.
    ``cycles`` counts every job from its first activation beat to its last result;
    ``load_cycles`` is the part spent loading activations.
    """

    acc: torch.Tensor
    cycles: int
    load_cycles: int
    job_cycles: list[int]
    params: dict
    exponent: torch.Tensor | None = None
    out: torch.Tensor | None = None


def run_pe_array_detailed(params: dict, a: torch.Tensor, bw: BitmodWeights, simulator: str = "verilator", *,
                          stall: float = 0.0, seed: int | None = None, reset_after: int | None = None,
                          build: Build | None = None, design: str = "pe_array", family_id: int | None = None,
                          verbose: bool = False) -> PeArrayRun:
    """:func:`run_pe_array` with options for tests and benchmarks.

    ``stall`` is the probability of a stall in each cycle of every stream (a real number
    in [0, 1); 0: none); ``reset_after`` (None or an integer >= 1) interrupts the first job
    with a reset that many cycles in and then runs every job again (the result must not
    notice); both are checked before anything is built. ``build`` runs an existing
    simulator build (e.g. a synthesized netlist) instead of the generated RTL; ``design``
    may name another array with the same streams (``pe_array_parallel``, whose FP16 MAC
    array returns its own arithmetic's result: :class:`PeArrayRun`); ``family_id`` (an
    ``arch.bitmod.FAMILY_IDS`` value) replaces the jobs' family input while the streams
    stay packed as ``bw``'s family: an array given a family it was not built with must take
    the whole stream and answer zeros; ``verbose`` as in :func:`run_pe_array`.
    """
    stall = check_stall(stall)
    if reset_after is not None and (isinstance(reset_after, bool) or not isinstance(reset_after, int)
                                    or reset_after < 1):
        raise ValueError(f"reset_after must be None or an integer >= 1, not {reset_after!r}")
    array = get_design(design)
    params = array.resolve(dict(params))
    config = array.config(params)
    jobs = plan_jobs(config, a, bw)
    if family_id is not None:
        if family_id not in FAMILY_IDS.values():
            raise ValueError(f"family_id must be one of {sorted(FAMILY_IDS.values())}, not {family_id!r}")
        jobs = [dataclasses.replace(job, family=family_id) for job in jobs]
    seed = random.randrange(1 << 31) if seed is None else seed
    if build is None:
        build, params = build_design(design, params, simulator)
    spec = {"jobs": [job.as_dict() for job in jobs], "stall": stall, "seed": seed, "reset_after": reset_after}
    results = run_json_job(build, "sim.tb_pe_array", params, spec, seed=seed, testcase="pe_array_run",
                           verbose=verbose)
    acc = assemble(config, a.shape[0], bw.shape[0], jobs, results["beats"])
    run = PeArrayRun(acc, sum(results["cycles"]), sum(results["load_cycles"]), results["cycles"], params)
    if a.dtype == torch.float16:
        run.exponent, invalid = assemble_tags(config, a.shape[0], jobs, results["beats"])
        if invalid.any():
            raise RuntimeError(f"the array flagged token {int(invalid.nonzero()[0])} invalid (Inf or NaN), but "
                               f"its activations were checked finite: the array is wrong")
        if fp32_results(design, config):        # the FP16 MAC baseline: FP32 accumulators, no exponent
            run.acc = acc_from_bits(acc)
            run.out, run.exponent = fp16_mac_output(run.acc, bw.cs), None
        else:
            run.out = fp16_output(acc, run.exponent, bw.cs, config.align_bits)
    return run


def run_pe_array(params: dict, a: torch.Tensor, bw: BitmodWeights, simulator: str = "verilator", *,
                 verbose: bool = False) -> tuple[torch.Tensor, int]:
    """Run ``a`` times ``bw`` on the generated PE-array Verilog; return ``(out, cycles)``.

    Parameters
    ----------
    params : dict
        Generator parameters, the names of ``mixbit generate pe_array -p`` (rows, cols,
        lanes, group_size, scale_bits, families, max_k, activations, align_bits);
        missing ones take defaults.
    a : int8 or float16 tensor [M, K]
        Tokens (any M; the array runs ``ceil(M / rows)`` jobs): int8 for an
        ``activations`` = ``int8`` or ``both`` build, float16 for ``fp16`` or ``both``
        (Inf and NaN raise ValueError naming token and channel).
    bw : golden.bitmod.BitmodWeights
        Weights [N, K] of a family built into the array, with its group_size and scale_bits.
    simulator : "verilator" or "icarus"
    verbose : bool
        Show the simulator's output (cocotb's log) on stdout; by default it goes to
        ``sim.log`` in the run's folder (:func:`sim.runner.run_regression`).

    Returns ``out`` and the cycles the array took, activation loads included: for int8
    tokens ``out`` is ``acc`` (int64 [M, N], bit-exact ``golden.bitmod.matmul_int``), for
    float16 tokens the float32 [M, N] of ``golden.bitmod.matmul_fp16`` bit for bit. The design is built once per
    parameter set and simulator and cached (``$MIXBIT_CACHE_DIR``). Errors in the
    inputs raise ValueError/TypeError naming the argument; a failed simulation raises
    :class:`sim.runner.SimulationFailed`, which names the log.
    """
    run = run_pe_array_detailed(params, a, bw, simulator, verbose=verbose)
    return (run.acc if run.out is None else run.out), run.cycles
