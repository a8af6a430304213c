"""The generated KV dequantize engine on Verilator and Icarus, and quantize -> dequantize round trips."""

import pytest
import torch

from arch.kv_config import KvConfig
from golden.vidkv import KEY_FRACTIONS
from golden.vidkv_cache import QuantizedKVCache
from golden.vidkv_stream import pack_tokens
from host.kv_beats import corner_tokens
from sim.kv_dequant import check_tokens_against_golden, run_kv_dequantizer, run_kv_dequantizer_detailed
from sim.kv_quant import run_kv_quantizer_detailed
from sim.tools import SIMULATORS

BUILDS = [
    {"d": 32, "group_tokens": 16, "lanes": 8, "ternary_layout": "b3"},
    {"d": 64, "group_tokens": 32, "lanes": 4, "ternary_layout": "i2", "in_bits": 8, "frac_bits": 0},
]


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("build", range(len(BUILDS)))
def test_every_mode_against_golden_dequantization(simulator, build):
    """K at every f (one build serves them all), V2, V1.58 (i2 or b3), V1.66 STP; random stalls."""
    params = BUILDS[build]
    config = KvConfig.from_params(params)
    cases = [("key", "ternary", False, f) for f in KEY_FRACTIONS]
    cases += [("value", "2bit", False, 0), ("value", "ternary", False, 0), ("value", "ternary", True, 0)]
    for number, (kind, value_format, stp, f) in enumerate(cases):
        x = corner_tokens(config, 2 * config.group_tokens + 3, seed=number)
        salient = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(number)) < 0.35 if stp else None
        packed = pack_tokens(x, kind, f=f, stp=stp, salient=salient, **config.golden_options(value_format))
        run = run_kv_dequantizer_detailed(params, packed, simulator=simulator, stall=0.3, seed=number)
        problem = check_tokens_against_golden(config, packed, run.tokens, run.positions)
        assert problem is None, f"{kind} {value_format} stp={stp} f={f}: {problem}"


def _golden_cache(kind, x, config, f=0.5, value_format="ternary", salient=None):
    cache = QuantizedKVCache(kind, config.d, config.group_tokens, config.in_bits, config.frac_bits, f=f,
                             value_format=value_format, stp=salient is not None)
    cache.append(x, salient)
    return cache.dequantize()


def test_round_trip_through_both_engines_equals_golden_dequantize():
    """1030 tokens through the quantize engine, then the dequantize engine, stalls on every
    stream (on Verilator: long stalled runs take one simulator; the others cover Icarus)."""
    simulator = "verilator"
    params = {"d": 32, "group_tokens": 16, "lanes": 8, "ternary_layout": "b3", "in_bits": 12}
    config = KvConfig.from_params(params)
    gen = torch.Generator().manual_seed(9)
    x = torch.randint(-2048, 2048, (1030, 32), generator=gen)
    salient = torch.rand(x.shape[0], generator=gen) < 0.2
    for kind, s in (("key", None), ("value", salient)):
        quantized = run_kv_quantizer_detailed(params, x, kind, salient=s, simulator=simulator, stall=0.3, seed=3)
        run = run_kv_dequantizer_detailed(params, quantized.packed, simulator=simulator, stall=0.3, seed=4)
        want = _golden_cache(kind, x, config, salient=s)
        assert torch.equal(run.tokens, want[run.positions]), kind
        assert len(set(run.positions.tolist())) == run.positions.shape[0]


def test_run_kv_dequantizer_returns_tokens_in_order_and_cycles():
    params = BUILDS[0]
    config = KvConfig.from_params(params)
    x = torch.randint(-500, 500, (40, 32), generator=torch.Generator().manual_seed(1))
    packed = pack_tokens(x, "key", f=0.25, **config.golden_options())
    tokens, cycles = run_kv_dequantizer(params, packed)
    assert torch.equal(tokens, _golden_cache("key", x, config, f=0.25)[:32])
    assert cycles >= 32 * config.blocks


@pytest.mark.parametrize("change,message", [
    (lambda p: {"key": p["key"]} | {"extra": 1}, "packed must be a non-empty dict"),
    (lambda p: {}, "packed must be a non-empty dict"),
    (lambda p: {"key": _with(p["key"], d=64)}, r"packed\['key'\].d = 64 does not match the engine's d = 32"),
    (lambda p: {"key": _with(p["key"], fft=True)}, "FFT option"),
])
def test_bad_packed_inputs_raise_clear_errors(change, message):
    x = torch.randint(-500, 500, (16, 32), generator=torch.Generator().manual_seed(1))
    packed = pack_tokens(x, "key", group_tokens=16)
    with pytest.raises((ValueError, TypeError), match=message):
        run_kv_dequantizer(BUILDS[0], change(packed))


def _with(p, **changes):
    from dataclasses import replace

    return replace(p, **changes)
