"""The registry of generatable designs: name, parameters, builder and regression."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from amaranth.lib import wiring

from arch.accelerator_config import ENGINES, LINK_RANGES, AcceleratorConfig
from arch.bitmod import GROUP_SIZES, SCALE_BITS_RANGE
from arch.fp16 import ACTIVATION_KINDS, ALIGN_BITS_RANGE, BASELINE_ACTIVATIONS
from arch.kv_config import MAX_LANES, KvConfig
from arch.pe_array_config import MAX_COLS, MAX_K, MAX_ROWS, PeArrayConfig
from arch.vidkv import FRAC_BITS_RANGE, GROUP_TOKENS, HEAD_DIMS, IN_BITS_RANGE, KEY_FRACTIONS, TERNARY_LAYOUTS
from hdl.decoder import WeightDecoder, decoder_widths
from hdl.fp16_mac_array import Fp16MacArray, fp16_mac_config
from hdl.kv_dequant import KvDequantizer
from hdl.kv_quant import KvQuantizer
from hdl.parallel_array import MULTIPLIERS, ParallelArray, parallel_config
from hdl.parallel_families import FamilyParallelArray, family_parallel_config
from hdl.pe_array import PeArray

from .accelerator import Accelerator
from .params import BoolParam, ChoiceParam, FamiliesParam, FractionParam, IntParam, Param, resolve_params

__all__ = ["Design", "DESIGNS", "get_design", "fp32_results"]


@dataclass(frozen=True)
class Design:
    """A design that ``mixbit generate/synth/sim`` can build.

    Attributes
    ----------
    name : str
        Command-line name; the Verilog top module is ``mixbit_<name>``.
    summary : str
        One line for ``mixbit list``.
    params : tuple of Param
        Generator parameters with defaults and ranges.
    build : callable
        ``build(params) -> wiring.Component``.
    widths : callable
        ``widths(params) -> dict`` of derived widths, for manifests and docs.
    regression : str
        Module holding the design's cocotb tests.
    check : callable, optional
        ``check(params)`` raising ValueError for combinations of valid values that do
        not go together.
    config : callable, optional
        ``config(params)``: the design's configuration object (PE arrays:
        :class:`arch.pe_array_config.PeArrayConfig`), for simulation drivers.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[[dict], wiring.Component]
    widths: Callable[[dict], dict]
    regression: str

    @property
    def top(self) -> str:
        """Name of the generated Verilog top module."""
        return f"mixbit_{self.name}"

    check: Callable[[dict], None] | None = None
    config: Callable[[dict], object] | None = None

    def resolve(self, given: Mapping[str, object] = {}) -> dict[str, object]:
        """Validated parameters: defaults overridden by ``given``."""
        return resolve_params(self.name, self.params, given, extra_check=self.check)


_PE_ARRAY_DEFAULTS = PeArrayConfig()
_PE_ARRAY_PARAMS = (
    IntParam("rows", help="PE rows: tokens per job", default=_PE_ARRAY_DEFAULTS.rows, low=1, high=MAX_ROWS),
    IntParam("cols", help="PE columns: output channels per tile", default=_PE_ARRAY_DEFAULTS.cols,
             low=1, high=MAX_COLS),
    IntParam("lanes", help="weights per PE per step (power of two)", default=_PE_ARRAY_DEFAULTS.lanes,
             low=1, high=max(GROUP_SIZES)),
    IntParam("group_size", help="G, weights per group", default=_PE_ARRAY_DEFAULTS.group_size,
             low=min(GROUP_SIZES), high=max(GROUP_SIZES)),
    IntParam("scale_bits", help="S, bits of the group scale sq", default=_PE_ARRAY_DEFAULTS.scale_bits,
             low=SCALE_BITS_RANGE.start, high=SCALE_BITS_RANGE.stop - 1),
    FamiliesParam("families", help="weight families built in (run-time selectable)"),
    IntParam("max_k", help="largest K (in-features) a job may have", default=_PE_ARRAY_DEFAULTS.max_k,
             low=min(GROUP_SIZES), high=MAX_K),
)

_PARALLEL_PARAMS = tuple(p if p.name != "families" else FamiliesParam(
    "families", help="int4 alone: the int8 x int4 array; any other set: a weight of any of them per lane "
    "and cycle (int8 x int8 with int8; run-time selectable)", default=("int4",)) for p in _PE_ARRAY_PARAMS) + (
    ChoiceParam("multiplier", help="lut: shifts and adds; dsp: '*' for the FPGA's multipliers", default="lut",
                choices=MULTIPLIERS),
    ChoiceParam("activations", help="int8: the int8 arrays above; fp16: the FP16 MAC array (FP16 weights "
                "sq * v, FP16 x FP16 products, FP32 accumulation)", default="int8", choices=BASELINE_ACTIVATIONS),
)


#: The FP16 path's parameters: pe_array and the accelerator's PE array (the baselines have their own).
_FP16_PARAMS = (
    ChoiceParam("activations", help="what the lanes take: int8, fp16 (binary16, exponent-matched per token) "
                "or both (chosen per job)", default=_PE_ARRAY_DEFAULTS.activations, choices=ACTIVATION_KINDS),
    IntParam("align_bits", help="B: bits an FP16 activation keeps below its token's largest significand",
             default=_PE_ARRAY_DEFAULTS.align_bits, low=ALIGN_BITS_RANGE.start, high=ALIGN_BITS_RANGE.stop - 1),
)


_KV_DEFAULTS = KvConfig()
_KV_PARAMS = (
    IntParam("d", help="head dimension D (32, 64 or 128)", default=_KV_DEFAULTS.d, low=min(HEAD_DIMS),
             high=max(HEAD_DIMS)),
    IntParam("group_tokens", help="Tg, tokens per group (16, 32 or 64)", default=_KV_DEFAULTS.group_tokens,
             low=min(GROUP_TOKENS), high=max(GROUP_TOKENS)),
    IntParam("in_bits", help="signed input element width", default=_KV_DEFAULTS.in_bits,
             low=IN_BITS_RANGE.start, high=IN_BITS_RANGE.stop - 1),
    IntParam("lanes", help="channels per cycle (a power of two dividing d)", default=_KV_DEFAULTS.lanes,
             low=1, high=MAX_LANES),
    FractionParam("f", help="fraction of 2-bit key channels", default=_KV_DEFAULTS.f, choices=KEY_FRACTIONS),
    ChoiceParam("ternary_layout", help="ternary value packing: i2 (2 bits) or b3 (5 trits a byte)",
                default=_KV_DEFAULTS.ternary_layout, choices=TERNARY_LAYOUTS),
    BoolParam("stp", help="build the salient-token (2-bit) path for values", default=_KV_DEFAULTS.stp),
    BoolParam("fft", help="keys: FFT of the normal channels (N = d - d*f a power of two)",
              default=_KV_DEFAULTS.fft),
    IntParam("fft_butterflies", help="butterfly units of the FFT core (power of two, at most N/2 used)",
             default=_KV_DEFAULTS.fft_butterflies, low=1, high=MAX_LANES // 2),
)
_KV_DEQUANT_PARAMS = _KV_PARAMS + (
    IntParam("frac_bits", help="fraction bits of the fixed-point outputs", default=_KV_DEFAULTS.frac_bits,
             low=FRAC_BITS_RANGE.start, high=FRAC_BITS_RANGE.stop - 1),
)


def _prefixed(prefix: str, params: tuple[Param, ...]) -> tuple[Param, ...]:
    return tuple(replace(p, name=prefix + p.name) for p in params)


_ACCEL_DEFAULTS = AcceleratorConfig()
_LINK_HELP = {
    "clk_hz": "clock frequency (Hz)",
    "baud": "UART bit rate (clk_hz / baud cycles a bit, >= 4)",
    "max_payload": "largest request payload (bytes): the frame buffer",
    "weight_beats": "weight memory depth (beats of pe_cols 32-bit words)",
    "result_beats": "result memory depth (one beat per row and column tile)",
    "kv_quant_fifo": "quantizer output buffer (beats)",
    "kv_dequant_fifo": "dequantizer output buffer (beats)",
    "byte_timeout_us": "a request pausing this long mid-frame is dropped (TRUNCATED)",
}


def _link_param(name: str) -> IntParam:
    low, high = LINK_RANGES[name]
    return IntParam(name, help=_LINK_HELP[name], default=getattr(_ACCEL_DEFAULTS, name), low=low, high=high)


_ACCELERATOR_PARAMS = _prefixed("pe_", _PE_ARRAY_PARAMS + _FP16_PARAMS) + _prefixed("kv_", _KV_DEQUANT_PARAMS) + (
    *(_link_param(name) for name in _LINK_HELP if name != "byte_timeout_us"),
    ChoiceParam("engines", help="all, or only the PE array (pe) or the KV engines (kv)",
                default=_ACCEL_DEFAULTS.engines, choices=ENGINES),
    _link_param("byte_timeout_us"),
)


def _configured(name: str, summary: str, params: tuple[Param, ...], config: Callable[[dict], object],
                build: Callable[[dict], wiring.Component], regression: str) -> Design:
    """A design whose parameters make a configuration object that validates them and holds its widths."""
    return Design(name=name, summary=summary, params=params, build=build, widths=lambda p: config(p).derived(),
                  regression=regression, check=config, config=config)


def _parallel(params: dict) -> PeArrayConfig:
    """The baseline's configuration: the FP16 MAC array for FP16 activations, else the int8 x int4
    array for int4 alone and the all-family one for any other set."""
    config = PeArrayConfig.from_params(params)
    if config.activations == "fp16":
        return fp16_mac_config(config)
    return parallel_config(config) if config.families == ("int4",) else family_parallel_config(config)


def _parallel_array(params: dict) -> wiring.Component:
    config = _parallel(params)
    if config.activations == "fp16":
        array = Fp16MacArray
    else:
        array = ParallelArray if config.families == ("int4",) else FamilyParallelArray
    return array(config, params["multiplier"])


def fp32_results(design: str, config: PeArrayConfig) -> bool:
    """The array's result fields are FP32 bits (the FP16 MAC baseline), not exact integer sums."""
    return design == "pe_array_parallel" and config.activations == "fp16"


DESIGNS: dict[str, Design] = {
    design.name: design
    for design in [
        Design(
            name="decoder",
            summary="BitMoD mixed-datatype weight decoder: code word -> radix-4 digits",
            params=(FamiliesParam("families", help="weight families built in (run-time selectable)"),),
            build=lambda p: WeightDecoder(p["families"]),
            widths=lambda p: decoder_widths(p["families"]),
            regression="sim.tb_decoder",
        ),
        _configured("pe_array",
                    "BitMoD bit-serial PE array: rows x cols PEs of lanes lanes, all datatypes at run time, "
                    "int8 or FP16 activations",
                    _PE_ARRAY_PARAMS + _FP16_PARAMS, PeArrayConfig.from_params,
                    lambda p: PeArray(PeArrayConfig.from_params(p)), "sim.tb_pe_array"),
        _configured("pe_array_parallel",
                    "baseline: bit-parallel int8 x int4 array (int8 x int8 for other families, FP16 x FP16 "
                    "with FP32 sums for fp16 activations) with pe_array's streams (LUT or DSP multipliers)",
                    _PARALLEL_PARAMS, _parallel, _parallel_array,
                    "sim.tb_pe_array"),
        _configured("kv_quant",
                    "VidKV KV-cache quantize engine: tokens in, packed 2/1/1.58-bit groups + metadata out",
                    _KV_PARAMS, KvConfig.from_params, lambda p: KvQuantizer(KvConfig.from_params(p)),
                    "sim.tb_kv_quant"),
        _configured("kv_dequant",
                    "VidKV KV-cache dequantize engine: packed groups in, fixed-point tokens (with positions) out",
                    _KV_DEQUANT_PARAMS, KvConfig.from_params, lambda p: KvDequantizer(KvConfig.from_params(p)),
                    "sim.tb_kv_dequant"),
        _configured("accelerator",
                    "complete accelerator: PE array + KV engines + buffers behind a UART command interface",
                    _ACCELERATOR_PARAMS, AcceleratorConfig.from_params,
                    lambda p: Accelerator(AcceleratorConfig.from_params(p)), "sim.tb_accelerator"),
    ]
}


def get_design(name: str) -> Design:
    """The design called ``name``; ValueError naming the known designs otherwise."""
    try:
        return DESIGNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown design {name!r} (known: {', '.join(DESIGNS)})") from None
