"""The FFT option for normal key channels on Verilator and Icarus: both engines against golden."""

import pytest
import torch

from arch.kv_config import KvConfig
from golden.vidkv_cache import QuantizedKVCache
from golden.vidkv_stream import pack_tokens
from host.kv_beats import corner_tokens
from sim.kv_dequant import check_tokens_against_golden, run_kv_dequantizer_detailed
from sim.kv_quant import first_difference, run_kv_quantizer_detailed
from sim.tools import SIMULATORS

BUILDS = {
    "K1.5-FFT": {"d": 32, "group_tokens": 16, "lanes": 8, "f": 0.5, "fft": True, "fft_butterflies": 2,
                 "stp": False},
    "K1-FFT": {"d": 32, "group_tokens": 16, "lanes": 4, "f": 0.0, "fft": True, "fft_butterflies": 4,
               "in_bits": 12, "frac_bits": 3, "stp": False},
}


def _quantizer(params: dict) -> dict:
    """The quantize engine's parameters (it has no frac_bits)."""
    return {name: value for name, value in params.items() if name != "frac_bits"}


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", BUILDS)
def test_fft_keys_quantize_and_dequantize_like_golden(simulator, name):
    """Corner-case keys (extremes, all-equal and alternating channels) and random keys with
    stalls through the quantize engine, then golden's packing of them through the dequantize
    engine; values pass both engines untransformed."""
    params = BUILDS[name]
    config = KvConfig.from_params(params)
    x = corner_tokens(config, 3 * config.group_tokens + 5, seed=len(name))
    for kind in ("key", "value"):
        run = run_kv_quantizer_detailed(_quantizer(params), x, kind, simulator=simulator, stall=0.3, seed=5)
        want = pack_tokens(x, kind, f=config.f, **config.golden_options())
        difference = first_difference(run.packed, want, x)
        assert difference is None, f"{name} {kind}: {difference}"
        back = run_kv_dequantizer_detailed(params, want, simulator=simulator, stall=0.3, seed=6)
        problem = check_tokens_against_golden(config, want, back.tokens, back.positions)
        assert problem is None, f"{name} {kind}: {problem}"


def test_fft_key_round_trip_of_a_long_stream_equals_golden_dequantize():
    """1030 keys through both engines with stalls on every stream (on Verilator: long stalled
    runs take one simulator; the corner cases above cover Icarus)."""
    simulator = "verilator"
    params = BUILDS["K1.5-FFT"]
    config = KvConfig.from_params(params)
    high = 1 << (config.in_bits - 1)
    x = torch.randint(-high, high, (1030, config.d),
                      generator=torch.Generator().manual_seed(12))
    quantized = run_kv_quantizer_detailed(_quantizer(params), x, "key", simulator=simulator, stall=0.3, seed=7)
    run = run_kv_dequantizer_detailed(params, quantized.packed, simulator=simulator, stall=0.3, seed=8)
    cache = QuantizedKVCache("key", config.d, config.group_tokens, config.in_bits, config.frac_bits, f=config.f,
                             fft=True)
    cache.append(x)
    assert torch.equal(run.tokens, cache.dequantize()[run.positions])
