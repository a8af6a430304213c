"""all-MiniLM-L6-v2 end to end on the generated hardware: :func:`run_model`.

Every Linear layer (36) runs on the PE array: its weights quantized by
``golden.bitmod.quantize`` with one family (or per layer, ``mixed``, the family of the
same width with the smaller weight error), its input as FP16 tokens (the array's FP16
path) or per-token int8 tokens; the bias is added on the host. Every attention head's
K and V go through the KV quantize engine and back through the dequantize engine: the
head's values scaled to signed ``in_bits`` integers (one scale per head and sentence),
the engine's whole groups of ``group_tokens`` tokens quantized, the shorter tail kept at
full precision as the engine keeps it, and the dequantized fixed point scaled back.
Embeddings, attention, softmax, LayerNorm, GELU and the mean pooling stay on the host
in float32 torch, the same code for every backend, so a run on the RTL and one on the
golden models give the same bits when the kernels do.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from tqdm import tqdm

from arch import bitmod as arch_bitmod
from arch.bitmod import family as family_info
from arch.vidkv import KV_CACHE_FORMATS
from gateware.designs import get_design
from gateware.toolchain import cache_dir
from golden import bitmod as golden_bitmod
from golden import minilm
from golden.bitmod import BitmodWeights, dequantize, quantize, quantize_activations
from golden.fp16 import check_fp16
from golden.vidkv_stream import stream_beats

from .kernels import GoldenKernels, RtlKernels, rtl_options

__all__ = ["run_model", "ModelRun", "LinearStats", "HeadStats", "DEFAULT_PE", "DEFAULT_KV", "SALIENT_FRACTION",
           "check_sentences", "quantized_weights", "pe_params", "kv_params"]

#: The run's PE array: 16 tokens a job (a 16-32 token sentence in one or two jobs), every
#: family, K up to MiniLM's 1536. Under the fast harness it simulates a sentence faster
#: than smaller arrays (fewer cycles; the model's cost per cycle grows more slowly).
DEFAULT_PE = {"rows": 16, "cols": 4, "lanes": 8, "max_k": 2048}
#: The run's KV engines: MiniLM's head dimension, the smallest group (16 tokens), 16-bit
#: inputs, 4 fraction bits out, the salient-token path built (one build serves the formats
#: with and without STP). ``f`` comes from the KV format.
DEFAULT_KV = {"d": 32, "group_tokens": 16, "in_bits": 16, "lanes": 8, "ternary_layout": "i2", "fft": False,
              "frac_bits": 4, "stp": True}
#: STP: the fraction of a head's tokens that receive the most attention (salient).
SALIENT_FRACTION = 0.2
_LINEAR_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")


@dataclass
class LinearStats:
    """One Linear layer of one sentence."""

    name: str
    family: str
    m: int
    n: int
    k: int
    cycles: int | None
    jobs: int | None
    utilization: float | None


@dataclass
class HeadStats:
    """One head's K or V of one sentence through the KV engines."""

    layer: int
    head: int
    kind: str
    tokens: int
    quantized: int
    cycles: int | None
    bits: float
    #: Beats of the packed groups (the quantize engine's output, the dequantize engine's input).
    packed_beats: int = 0


@dataclass
class ModelRun:
    """What :func:`run_model` returns (``as_dict`` is its JSON)."""

    sentences: list[str]
    tokens: list[int]
    embeddings: torch.Tensor
    cosine_fp32: list[float]
    backend: str
    family: str
    mixed: bool
    kv: str
    activations: str
    pe_params: dict
    kv_params: dict | None
    families: dict[str, str]
    linears: list[LinearStats] = field(default_factory=list)
    heads: list[HeadStats] = field(default_factory=list)
    wall_s: float = 0.0
    #: The RTL's streams stalled at random with this probability: its cycles are not the hardware's.
    stall: float = 0.0

    @property
    def array_cycles(self) -> int | None:
        cycles = [s.cycles for s in self.linears]
        return None if None in cycles else sum(cycles)

    @property
    def kv_cycles(self) -> int | None:
        cycles = [h.cycles for h in self.heads]
        return None if None in cycles else sum(cycles)

    @property
    def cycles(self) -> int | None:
        """Every kernel's cycles, one after the other (the array, then the KV engines)."""
        if self.array_cycles is None or self.kv_cycles is None:
            return None
        return self.array_cycles + self.kv_cycles

    @property
    def kv_quantized_tokens(self) -> int:
        """K/V tokens (over layers, heads, K and V) that went through the quantized path."""
        return sum(h.quantized for h in self.heads)

    @property
    def kv_residual_tokens(self) -> int:
        return sum(h.tokens - h.quantized for h in self.heads)

    def kv_bits_per_element(self) -> float | None:
        """Bits per element of the whole K/V cache, residual tokens (``in_bits``) included."""
        elements = sum(h.tokens for h in self.heads)
        return sum(h.bits * h.tokens for h in self.heads) / elements if elements else None

    def as_dict(self) -> dict:
        return {
            "sentences": self.sentences, "tokens": self.tokens,
            "embeddings": [[float(v) for v in row] for row in self.embeddings],
            "cosine_fp32": self.cosine_fp32, "backend": self.backend, "family": self.family, "mixed": self.mixed,
            "kv": self.kv, "activations": self.activations, "pe_params": _plain(self.pe_params),
            "kv_params": _plain(self.kv_params), "families": self.families,
            "cycles": self.cycles, "array_cycles": self.array_cycles, "kv_cycles": self.kv_cycles,
            "kv_quantized_tokens": self.kv_quantized_tokens, "kv_residual_tokens": self.kv_residual_tokens,
            "kv_bits_per_element": self.kv_bits_per_element(), "wall_s": round(self.wall_s, 3),
            "stall": self.stall,
            "linears": [vars(s) for s in self.linears], "heads": [vars(h) for h in self.heads],
        }


def _plain(params: dict | None) -> dict | None:
    return None if params is None else {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def pe_params(activations: str = "fp16", given: dict | None = None) -> dict:
    """The run's PE-array parameters: :data:`DEFAULT_PE`, ``activations``, then ``given``."""
    return get_design("pe_array").resolve({**DEFAULT_PE, "activations": activations, **(given or {})})


def kv_params(kv: str, given: dict | None = None) -> dict | None:
    """The run's KV-engine parameters for format ``kv`` (None for ``off``): :data:`DEFAULT_KV`,
    the format's ``f``, then ``given``; ValueError if the engines so built lack the format."""
    fmt = _kv_format(kv)
    if fmt is None:
        if given:
            raise ValueError(f"KV engine parameters ({', '.join(given)}) have no effect with kv 'off'")
        return None
    params = get_design("kv_dequant").resolve({**DEFAULT_KV, "f": fmt.f, **(given or {})})
    if params["f"] != fmt.f:
        raise ValueError(f"kv {kv!r} needs keys with f = {fmt.f}; the engine is built with f = {params['f']}")
    if fmt.stp and not params["stp"]:
        raise ValueError(f"kv {kv!r} needs salient-token protection; the engine is built with stp = false")
    return params


def _kv_format(kv: str):
    if kv not in KV_CACHE_FORMATS:
        raise ValueError(f"kv must be one of {', '.join(KV_CACHE_FORMATS)}, not {kv!r}")
    return KV_CACHE_FORMATS[kv]


def check_sentences(sentences, tokenizer, max_tokens: int) -> list[torch.Tensor]:
    """Each sentence's token ids; ValueError naming the sentence for an empty or too long one."""
    if isinstance(sentences, str) or not isinstance(sentences, Sequence) or not sentences:
        raise ValueError(f"sentences must be a non-empty list of strings, not {sentences!r}")
    ids = []
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str) or not sentence.strip():
            raise ValueError(f"sentence {index + 1} is empty: {sentence!r}")
        tokens = tokenizer(sentence, return_tensors="pt", verbose=False)["input_ids"][0]
        if len(tokens) > max_tokens:
            raise ValueError(f"sentence {index + 1} has {len(tokens)} tokens; at most {max_tokens} fit")
        ids.append(tokens)
    return ids


def quantized_weights(model, family: str, mixed: bool, built: Sequence[str], group_size: int = 128,
                      scale_bits: int = 8) -> dict[str, BitmodWeights]:
    """Every Linear layer's BitMoD weights: ``family``, or with ``mixed`` per layer the family
    of the same width (fp/int) with the smaller squared error of the dequantized weights."""
    if family not in built:
        raise ValueError(f"family {family!r} is not built into the array (families: {', '.join(built)})")
    bits = family_info(family).bits
    choices = tuple(name for name in built if family_info(name).bits == bits) if mixed else (family,)
    path = _weights_path(model, choices, group_size, scale_bits)
    if path.exists():                   # quantized once per model, families and quantizer source
        return torch.load(path, weights_only=False)
    weights = {}
    for name, module in minilm.linear_layers(model):
        w = module.weight.detach()
        best = None
        for choice in choices:
            bw = quantize(w, choice, group_size, scale_bits)
            error = (dequantize(bw).double() - w.double()).pow(2).sum().item()
            if best is None or error < best[0]:
                best = (error, bw)
        weights[name] = best[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(weights, partial)
    partial.replace(path)
    return weights


def _weights_path(model, choices, group_size: int, scale_bits: int) -> Path:
    """Where :func:`quantized_weights` keeps its result: keyed by the weights themselves, the
    families and the quantizer's source."""
    digest = hashlib.sha256(repr((choices, group_size, scale_bits)).encode())
    for source in (golden_bitmod.__file__, arch_bitmod.__file__):
        digest.update(Path(source).read_bytes())
    for name, module in minilm.linear_layers(model):
        digest.update(name.encode())
        digest.update(module.weight.detach().contiguous().numpy().tobytes()[::4096])
        digest.update(str(float(module.weight.detach().double().sum())).encode())
    return cache_dir() / "minilm-weights" / f"{'-'.join(choices)}-{digest.hexdigest()[:16]}.pt"


def _utilization(stats: LinearStats, config) -> float | None:
    """Useful weight digits over what the array's PEs could take in its cycles."""
    if not stats.cycles:
        return None
    digits = stats.m * stats.n * stats.k * family_info(stats.family).terms
    return digits / (stats.cycles * config.peak_terms_per_cycle())


def _salient(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """STP's salient tokens of one head: the ``SALIENT_FRACTION`` that receive the most attention."""
    received = torch.softmax(q @ k.T / math.sqrt(k.shape[1]), dim=-1).sum(dim=0)
    flags = torch.zeros(k.shape[0], dtype=torch.bool)
    flags[received.topk(max(1, int(k.shape[0] * SALIENT_FRACTION))).indices] = True
    return flags


class _Pipeline:
    """One sentence through the encoder with the kernels in place of the Linear layers and the cache."""

    def __init__(self, model, depth, kernels, weights, activations, kv, kv_config):
        self.model, self.depth, self.kernels, self.weights = model, depth, kernels, weights
        self.activations, self.kv, self.kv_config = activations, kv, kv_config
        self.modules = dict(minilm.linear_layers(model))
        self.linears: list[LinearStats] = []
        self.heads: list[HeadStats] = []

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        module, bw = self.modules[name], self.weights[name]
        if self.activations == "fp16":
            a, s_a = x.to(torch.float16), None
            try:
                check_fp16(a, f"the input of {name}")
            except ValueError as error:
                raise ValueError(f"{error} (FP16 overflow; run with activations int8)") from None
        else:
            a, s_a = quantize_activations(x)
        result = self.kernels.linear(a, bw, s_a, name)
        stats = LinearStats(name, bw.family, x.shape[0], *bw.shape, result.cycles, result.jobs, None)
        stats.utilization = _utilization(stats, self.kernels.pe_config)
        self.linears.append(stats)
        return result.y + module.bias.detach()

    def cache(self, layer: int, head: int, kind: str, x: torch.Tensor, salient) -> torch.Tensor:
        """One head's K or V [T, d] after the KV engines (float32)."""
        config, fmt = self.kv_config, KV_CACHE_FORMATS[self.kv]
        limit = (1 << (config.in_bits - 1)) - 1
        peak = x.abs().max().item()
        scale = peak / limit if peak > 0 else 1.0
        x_int = torch.round(x.double() / scale).to(torch.int64)
        value_format = fmt.value_format if kind == "value" else "ternary"
        packed, cycles = self.kernels.kv_pack(x_int, kind, value_format, salient if kind == "value" else None)
        fixed = x_int << config.frac_bits                 # the residual: full precision, as the engine keeps it
        quantized, bits = 0, float(config.in_bits) * x.shape[0]
        if any(p.groups for p in packed.values()):
            tokens, positions, dequant_cycles = self.kernels.kv_unpack(packed)
            fixed[positions] = tokens
            quantized = len(positions)
            cycles = None if cycles is None or dequant_cycles is None else cycles + dequant_cycles
            bits += sum(p.bits_per_element() * p.groups * p.group_tokens for p in packed.values()) \
                - config.in_bits * quantized
        beats = len(stream_beats(packed))
        self.heads.append(HeadStats(layer, head, kind, x.shape[0], quantized, cycles, bits / x.shape[0], beats))
        return (fixed.double() / (1 << config.frac_bits) * scale).to(torch.float32)

    def attention(self, layer: int, q, k, v) -> torch.Tensor:
        heads = self.model.config.num_attention_heads
        t, width = q.shape
        qh, kh, vh = (x.reshape(t, heads, width // heads).transpose(0, 1) for x in (q, k, v))
        if self.kv != "off":
            fmt = KV_CACHE_FORMATS[self.kv]
            k_hat, v_hat = [], []
            for h in range(heads):
                salient = _salient(qh[h], kh[h]) if fmt.stp else None
                k_hat.append(self.cache(layer, h, "key", kh[h], None))
                v_hat.append(self.cache(layer, h, "value", vh[h], salient))
            kh, vh = torch.stack(k_hat), torch.stack(v_hat)
        probs = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(width // heads), dim=-1)
        return (probs @ vh).transpose(0, 1).reshape(t, width)

    @torch.no_grad()
    def embed(self, ids: torch.Tensor, on_layer: Callable[[], None] | None = None) -> torch.Tensor:
        h = self.model.embeddings(input_ids=ids[None])[0]
        for index, layer in enumerate(self.model.encoder.layer[:self.depth]):
            prefix = f"encoder.layer.{index}."
            q, k, v = (self.linear(prefix + part, h) for part in _LINEAR_PARTS[:3])
            context = self.attention(index, q, k, v)
            attended = layer.attention.output.LayerNorm(self.linear(prefix + _LINEAR_PARTS[3], context) + h)
            inner = layer.intermediate.intermediate_act_fn(self.linear(prefix + _LINEAR_PARTS[4], attended))
            h = layer.output.LayerNorm(self.linear(prefix + _LINEAR_PARTS[5], inner) + attended)
            if on_layer is not None:
                on_layer()
        return torch.nn.functional.normalize(h.mean(dim=0), dim=-1)


def run_model(sentences: Sequence[str], *, family: str = "fp4", mixed: bool = False, kv: str = "k1.5-v1.58",
              activations: str = "fp16", golden: bool = False, simulator: str = "verilator",
              harness: str | None = None,
              pe: dict | None = None, kv_engine: dict | None = None, stall: float = 0.0, layers: int | None = None,
              progress: bool = False, model=None, kernels=None) -> ModelRun:
    """Run all-MiniLM-L6-v2 on ``sentences`` with its kernels on the generated hardware.

    Parameters
    ----------
    sentences : list of str
        Each is embedded on its own (no padding); at most ``min(512, max_k)`` tokens each.
    family : str
        The BitMoD family of every Linear layer's weights (``fp4`` ...; built into the array).
    mixed : bool
        Per layer, the family of ``family``'s width (fp or int) with the smaller weight error.
    kv : str
        The KV cache format (``arch.vidkv.KV_CACHE_FORMATS``), ``off`` to leave K and V alone.
    activations : ``fp16`` or ``int8``
        The array's activation path (the array is built with it).
    golden : bool
        The golden models in place of the RTL (seconds): the same bits as the RTL.
    simulator, harness
        ``verilator`` with the ``fast`` C++ harness (the default), or the cocotb runners
        (``harness="cocotb"``; the default on ``icarus``; slow: for a layer, not a model).
    pe, kv_engine : dict
        Parameters over the run's PE array (:data:`DEFAULT_PE`) and KV engines
        (:data:`DEFAULT_KV`; ``f`` and ``stp`` follow ``kv``).
    stall : float
        The RTL's streams stall with this probability per cycle (the result must not change).
    layers : int, optional
        Run only the first ``layers`` encoder layers (a cut-down model for tests).
    model : ``(model, tokenizer)``, optional
        Already loaded (``golden.minilm.load()``).
    kernels : optional
        A kernels object (e.g. :class:`workloads.kernels.BoardKernels`) in place of the
        RTL or golden ones, already entered.

    Returns a :class:`ModelRun`: the embeddings, their cosine similarity with fp32
    MiniLM, per Linear layer and per head the cycles and what was quantized.
    """
    started = time.monotonic()
    if kernels is not None and golden:
        raise ValueError("golden=True and kernels: choose one (kernels runs the given hardware)")
    if kernels is None and not golden:
        simulator, harness, stall = rtl_options(simulator, harness, stall)
    if activations not in ("fp16", "int8"):
        raise ValueError(f"activations must be 'fp16' or 'int8', not {activations!r}")
    pe_p = pe_params(activations, pe)
    kv_p = kv_params(kv, kv_engine)
    net, tokenizer = model if model is not None else minilm.load()
    if kernels is not None:             # e.g. a board: its build decides
        pe_config, kv_config = kernels.pe_config, kernels.kv_config if kv_p is not None else None
        pe_p = get_design("pe_array").resolve(pe_config.params())
        if (activations == "fp16") != pe_config.fp16 and pe_config.activations != "both":
            raise ValueError(f"activations {activations!r}: the {kernels.name}'s array has activations "
                             f"{pe_config.activations}")
        if kv_p is not None:
            if kv_config is None:
                raise ValueError(f"kv {kv!r}: the {kernels.name} has no KV engines")
            kv_p = kv_params(kv, {f.name: getattr(kv_config, f.name) for f in fields(kv_config) if f.init})
    else:
        pe_config = get_design("pe_array").config(pe_p)
        kv_config = None if kv_p is None else get_design("kv_dequant").config(kv_p)
    if kv_config is not None and kv_config.d != net.config.hidden_size // net.config.num_attention_heads:
        raise ValueError(f"the KV engines are built for d = {kv_config.d}; MiniLM's heads have "
                         f"d = {net.config.hidden_size // net.config.num_attention_heads}")
    limit = min(net.config.max_position_embeddings, pe_config.max_k)
    ids = check_sentences(sentences, tokenizer, limit)
    depth = len(net.encoder.layer) if layers is None else layers
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= len(net.encoder.layer):
        raise ValueError(f"layers must be in 1..{len(net.encoder.layer)}, not {layers!r}")
    widest = max(module.in_features for _, module in minilm.linear_layers(net))
    if widest > pe_config.max_k:
        raise ValueError(f"K = {widest} exceeds the array's max_k = {pe_config.max_k}")
    weights = quantized_weights(net, family, mixed, pe_config.families, pe_config.group_size,
                                pe_config.scale_bits)
    owned = kernels is None             # else the caller's, already entered
    if owned:
        kernels = GoldenKernels(pe_config, kv_config) if golden else \
            RtlKernels(pe_p, kv_p, simulator=simulator, harness=harness, stall=stall)
    bar = _progress(progress, len(ids) * depth, kernels.name)
    embeddings, linears, heads = [], [], []
    with kernels if owned else contextlib.nullcontext():
        try:
            for sentence_ids in ids:
                pipeline = _Pipeline(net, depth, kernels, weights, activations, kv, kv_config)
                embeddings.append(pipeline.embed(sentence_ids, bar.update if bar else None))
                linears += pipeline.linears
                heads += pipeline.heads
        finally:
            if bar:
                bar.close()
    embeddings = torch.stack(embeddings)
    reference = torch.cat([_reference(net, depth, sentence_ids) for sentence_ids in ids])
    cosine = [round(float(c), 6) for c in (embeddings * reference).sum(dim=-1)]
    families = {name: bw.family for name, bw in weights.items()
                if int(name.split(".")[2]) < depth}
    return ModelRun(list(sentences), [len(i) for i in ids], embeddings, cosine, kernels.name, family, mixed, kv,
                    activations, pe_p, kv_p, families, linears, heads, time.monotonic() - started,
                    stall if owned and not golden else 0.0)


@torch.no_grad()
def _reference(model, depth: int, ids: torch.Tensor) -> torch.Tensor:
    """fp32 MiniLM's first ``depth`` layers on one sentence: mean pooling and L2 norm, as sentence-transformers."""
    hidden = model(input_ids=ids[None], output_hidden_states=True).hidden_states[depth]
    return torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)


def _progress(enabled: bool, total: int, what: str):
    if not enabled:
        return None
    return tqdm(total=total, desc=f"MiniLM layers ({what})", unit="layer", leave=False)
