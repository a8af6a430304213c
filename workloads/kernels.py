"""The kernels a model run puts on the hardware, behind one interface: golden, RTL or a board.

``linear(a, bw, s_a, name)`` is a Linear layer's (called ``name``) product without its bias: int8 tokens ``a``
with their per-token scales ``s_a``, or float16 tokens (``s_a`` None), against
BitMoD weights ``bw``; it returns the float32 result, exactly as the host computes it
from the array's integers (``golden.bitmod.int8_output`` / ``fp16_output``), and the
array's cycles. ``kv_pack(x, kind, value_format, salient)`` quantizes one head's
integer K or V tokens on the KV quantize engine (the whole groups; the tail stays in
the engine) and ``kv_unpack(packed)`` dequantizes them on the dequantize engine.

* :class:`GoldenKernels`: the golden models (no cycles);
* :class:`RtlKernels`: the generated Verilog, under Verilator through the fast
  harness (:class:`sim.fast.FastSim`), or through the cocotb runners (Icarus, or
  Verilator with ``harness="cocotb"``);
* :class:`BoardKernels`: an accelerator behind its UART (:class:`host.driver.Accelerator`),
  a real board or the simulated one.

:class:`RtlKernels` checks every result against golden on the same inputs as it goes
(``check=True``): a mismatch raises with the first differing element and its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from arch.bitmod import pack_layout
from arch.kv_config import KvConfig
from arch.pe_array_config import PeArrayConfig
from gateware.designs import get_design
from golden.bitmod import BitmodWeights, fp16_output, int8_output, matmul_fp16_int, matmul_int
from golden.vidkv_pack import PackedKV
from golden.vidkv_stream import dequantize_packed, pack_tokens
from host.kv_beats import check_packed, check_run_inputs, parse_job_beats, unpack_output
from host.pe_array_jobs import assemble, assemble_tags, check_inputs, first_mismatch, plan_jobs
from sim import kv_dequant as sim_kv_dequant
from sim import kv_quant as sim_kv_quant
from sim.fast import FastSim
from sim.pe_array import run_pe_array_detailed
from sim.runner import SimulationFailed, check_stall

__all__ = ["LinearResult", "tiles_per_load", "rtl_options", "GoldenKernels", "RtlKernels", "BoardKernels",
           "KernelMismatch"]


class KernelMismatch(SimulationFailed):
    """The hardware's result differs from golden's on the same inputs."""


@dataclass
class LinearResult:
    """A Linear layer's product: float32 ``y`` [M, N], the array's cycles and jobs (None: golden)."""

    y: torch.Tensor
    cycles: int | None = None
    jobs: int | None = None


def tiles_per_load(config: PeArrayConfig, family: str, k: int, weight_beats: int, result_beats: int) -> int:
    """Column tiles of a K-wide layer that an accelerator's weight memory (``weight_beats``)
    and result buffer (``result_beats``) hold at once: a board runs a wider layer in slices."""
    groups = k // config.group_size
    words = pack_layout(family, config.group_size, config.scale_bits)["words_per_group"]
    tiles = min(weight_beats // (groups * words), result_beats // config.rows)
    if tiles < 1:
        raise ValueError(f"one column tile of K = {k} needs {groups * words} weight beats and {config.rows} "
                         f"result beats; this build holds {weight_beats} and {result_beats}")
    return tiles


def _output(acc: torch.Tensor, er: torch.Tensor | None, bw: BitmodWeights, s_a, config: PeArrayConfig):
    return int8_output(acc, bw.cs, s_a) if er is None else fp16_output(acc, er, bw.cs, config.align_bits)


def _golden_acc(a: torch.Tensor, bw: BitmodWeights, config: PeArrayConfig):
    if a.dtype == torch.float16:
        return matmul_fp16_int(a, bw, config.align_bits)
    return matmul_int(a, bw), None


def _golden_kv(config: KvConfig, x, kind, value_format, salient) -> dict[str, PackedKV]:
    return pack_tokens(x, kind, f=config.f, stp=salient is not None, salient=salient,
                       **config.golden_options(value_format))


class GoldenKernels:
    """The golden models in place of the hardware."""

    name = "golden"

    def __init__(self, pe_config: PeArrayConfig, kv_config: KvConfig | None):
        self.pe_config, self.kv_config = pe_config, kv_config

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def linear(self, a: torch.Tensor, bw: BitmodWeights, s_a=None, name: str | None = None) -> LinearResult:
        check_inputs(self.pe_config, a, bw)         # the same input checks as the hardware's
        acc, er = _golden_acc(a, bw, self.pe_config)
        return LinearResult(_output(acc, er, bw, s_a, self.pe_config))

    def kv_pack(self, x, kind, value_format, salient=None) -> tuple[dict[str, PackedKV], int | None]:
        check_run_inputs(self.kv_config, x, kind, salient, value_format)
        return _golden_kv(self.kv_config, x, kind, value_format, salient), None

    def kv_unpack(self, packed) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        check_packed(self.kv_config, packed)
        tokens, positions = dequantize_packed(packed, self.kv_config.frac_bits)
        return tokens, positions, None


def rtl_options(simulator: str, harness: str | None, stall) -> tuple[str, str, float]:
    """``(simulator, harness, stall)`` of an RTL run, checked (ValueError naming the option);
    the harness defaults to ``fast`` on Verilator and ``cocotb`` on Icarus."""
    if simulator not in ("verilator", "icarus"):
        raise ValueError(f"simulator must be 'verilator' or 'icarus', not {simulator!r}")
    harness = harness or ("fast" if simulator == "verilator" else "cocotb")
    if harness not in ("fast", "cocotb"):
        raise ValueError(f"harness must be 'fast' or 'cocotb', not {harness!r}")
    if harness == "fast" and simulator != "verilator":
        raise ValueError(f"the fast harness runs on verilator, not {simulator!r} (use harness='cocotb')")
    return simulator, harness, check_stall(stall)


class RtlKernels:
    """The generated Verilog of ``pe_array`` (``pe_params``) and, unless ``kv_params`` is
    None, of ``kv_quant`` and ``kv_dequant`` (``kv_params``, with ``frac_bits`` for the latter).

    ``simulator`` is ``verilator`` or ``icarus``; ``harness`` is ``fast`` (Verilator only:
    :class:`sim.fast.FastSim`, one process a design for the whole run; the default there) or
    ``cocotb`` (the regressions' runners, one simulator process a call: slow, for
    cross-checks; the default on Icarus).
    ``stall`` is the probability of a stall per cycle on every stream (0: none).
    """

    name = "rtl"

    def __init__(self, pe_params: dict, kv_params: dict | None, *, simulator: str = "verilator",
                 harness: str | None = None, stall: float = 0.0, seed: int = 1, check: bool = True):
        self.simulator, self.harness, self.stall = rtl_options(simulator, harness, stall)
        self.seed, self.check = seed, check
        self.pe_params = get_design("pe_array").resolve(dict(pe_params))
        self.pe_config = get_design("pe_array").config(self.pe_params)
        self.kv_params = None if kv_params is None else get_design("kv_dequant").resolve(dict(kv_params))
        self.kv_config = None if kv_params is None else get_design("kv_dequant").config(self.kv_params)
        self._sims: dict[str, object] = {}
        self._jobs = 0

    def _quant_params(self) -> dict:
        return {k: v for k, v in self.kv_params.items() if k != "frac_bits"}

    def __enter__(self) -> RtlKernels:
        if self.harness == "fast":
            designs = {"pe_array": self.pe_params}
            if self.kv_params is not None:
                designs |= {"kv_quant": self._quant_params(), "kv_dequant": self.kv_params}
            try:
                for name, params in designs.items():
                    self._sims[name] = FastSim(name, params).__enter__()
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc) -> None:
        for sim in self._sims.values():
            sim.__exit__()
        self._sims.clear()

    def _next_seed(self) -> int:
        self._jobs += 1
        return self.seed * 1_000_003 + self._jobs

    # ---- PE array
    def _array_beats(self, jobs) -> tuple[list[list[int]], int]:
        sim = self._sims["pe_array"]
        beats, cycles = [], 0
        for job in jobs:
            config = {"family": job.family, "groups": job.groups, "col_tiles": job.col_tiles}
            if "fp16" in sim.config_inputs:
                config["fp16"] = int(job.fp16)
            run = sim.run(config, {"act": job.act, "w": job.weights}, {"o": job.results},
                          stall=self.stall, seed=self._next_seed())
            beats.append(run.beats["o"])
            cycles += run.cycles
        return beats, cycles

    def linear(self, a: torch.Tensor, bw: BitmodWeights, s_a=None, name: str | None = None) -> LinearResult:
        config = self.pe_config
        jobs = plan_jobs(config, a, bw)
        m, n = a.shape[0], bw.shape[0]
        er = None
        if self.harness == "fast":
            beats, cycles = self._array_beats(jobs)
            acc = assemble(config, m, n, jobs, beats)
            if a.dtype == torch.float16:
                er, invalid = assemble_tags(config, m, jobs, beats)
                if invalid.any():
                    raise KernelMismatch(f"the array flagged token {int(invalid.nonzero()[0])} invalid, but its "
                                         f"activations are finite")
        else:
            run = run_pe_array_detailed(self.pe_params, a, bw, self.simulator, stall=self.stall,
                                        seed=self._next_seed())
            acc, er, cycles = run.acc, run.exponent, run.cycles
        if self.check:
            want, want_er = _golden_acc(a, bw, config)
            mismatch = first_mismatch(acc, want, a, bw)
            if mismatch is None and er is not None and not torch.equal(er, want_er):
                token = int((er != want_er).nonzero()[0])
                mismatch = f"token {token}: exponent er {int(er[token])}, golden {int(want_er[token])}"
            if mismatch is not None:
                raise KernelMismatch(f"PE array ({self.simulator}): {mismatch}")
        return LinearResult(_output(acc, er, bw, s_a, config), cycles, len(jobs))

    # ---- KV engines
    def kv_pack(self, x, kind, value_format, salient=None) -> tuple[dict[str, PackedKV], int]:
        config = self.kv_config
        check_run_inputs(config, x, kind, salient, value_format)
        if self.harness == "fast":
            job = sim_kv_quant.make_job(config, x, kind, value_format, salient, stall=self.stall, seed=0)
            sim = self._sims["kv_quant"]
            run = sim.run({k: int(v) for k, v in job["mode"].items()}, {"i": job["beats"]}, {"o": job["expect"]},
                          stall=self.stall, seed=self._next_seed())
            sim.reset()                        # the incomplete groups' tokens stay in the engine
            beats = [(w >> 32, w & 0xFFFFFFFF) for w in run.beats["o"]]
            packed, cycles = parse_job_beats(config, beats, value_format, salient is not None), run.cycles
        else:
            run = sim_kv_quant.run_kv_quantizer_detailed(self._quant_params(), x, kind, salient=salient,
                                                         value_format=value_format, simulator=self.simulator,
                                                         stall=self.stall, seed=self._next_seed())
            packed, cycles = run.packed, run.cycles
        if self.check:
            want = _golden_kv(config, x, kind, value_format, salient)
            difference = sim_kv_quant.first_difference(packed, want, x)
            if difference is not None:
                raise KernelMismatch(f"KV quantize engine ({self.simulator}, {kind}): {difference}")
        return packed, cycles

    def kv_unpack(self, packed) -> tuple[torch.Tensor, torch.Tensor, int]:
        config = self.kv_config
        check_packed(config, packed)
        if self.harness == "fast":
            job = sim_kv_dequant.make_job(config, packed, stall=self.stall, seed=0)
            sim = self._sims["kv_dequant"]
            sim.reset()                        # positions count from 0 again, as in a run of its own
            run = sim.run({k: int(v) for k, v in job["mode"].items()}, {"i": job["beats"]}, {"o": job["expect"]},
                          stall=self.stall, seed=self._next_seed())
            if run.outputs.get("error"):
                raise KernelMismatch("KV dequantize engine: its error output is set after a well-formed stream")
            tokens, positions = unpack_output(config, run.beats["o"])
            order = torch.argsort(positions)
            tokens, positions, cycles = tokens[order], positions[order], run.cycles
        else:
            run = sim_kv_dequant.run_kv_dequantizer_detailed(self.kv_params, packed, simulator=self.simulator,
                                                             stall=self.stall, seed=self._next_seed())
            tokens, positions, cycles = run.tokens, run.positions, run.cycles
        if self.check:
            difference = sim_kv_dequant.check_tokens_against_golden(config, packed, tokens, positions)
            if difference is not None:
                raise KernelMismatch(f"KV dequantize engine ({self.simulator}): {difference}")
        return tokens, positions, cycles


class BoardKernels:
    """An accelerator behind its UART: ``host.driver.Accelerator`` on ``port`` (a serial
    device or the path of a simulated board). A Linear layer whose weights do not fit the
    build's weight memory (or whose results do not fit its result buffer) runs in slices
    of output columns, each loaded in turn. ``linears`` (names) limits the board to those
    Linear layers, the others run on golden (a slow line, a simulated board: one layer's
    worth is a test)."""

    name = "board"

    def __init__(self, accelerator, linears=None):
        self.acc = accelerator
        self.pe_config = accelerator.pe_config
        self.kv_config = accelerator.kv_config if accelerator.info["engines"] & 2 else None
        self.linears = None if linears is None else set(linears)
        self._golden = GoldenKernels(self.pe_config, self.kv_config)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


    def linear(self, a: torch.Tensor, bw: BitmodWeights, s_a=None, name: str | None = None) -> LinearResult:
        if self.linears is not None and name not in self.linears:
            return self._golden.linear(a, bw, s_a, name)
        config = self.pe_config
        info = self.acc.info
        step = config.cols * tiles_per_load(config, bw.family, bw.shape[1], info["weight_beats"],
                                            info["result_beats"])
        parts, cycles, jobs = [], 0, 0
        for first in range(0, bw.shape[0], step):
            part = replace(bw, **{field: getattr(bw, field)[first:first + step]
                                  for field in ("codes", "dt", "sg", "sq", "cs")})
            self.acc.load_weights(part)
            parts.append(self.acc.gemm(a))
            cycles += self.acc.run_cycles
            jobs += -(-a.shape[0] // config.rows)
        y = torch.cat(parts, dim=1)
        if a.dtype != torch.float16:
            y = int8_output(y, bw.cs, s_a)
        return LinearResult(y, cycles, jobs)

    def kv_pack(self, x, kind, value_format, salient=None):
        return self.acc.quantize_kv(x, kind, salient, value_format), None

    def kv_unpack(self, packed):
        tokens, positions = self.acc.dequantize_kv(packed)
        order = torch.argsort(positions)
        return tokens[order], positions[order], None
