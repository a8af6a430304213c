"""The generated KV quantize engine on Verilator and Icarus, bit for bit against golden's packed groups."""

import pytest
import torch

from arch.kv_config import KvConfig
from golden.vidkv import KEY_FRACTIONS
from golden.vidkv_stream import pack_tokens
from host.kv_beats import corner_tokens
from sim.kv_quant import first_difference, run_kv_quantizer, run_kv_quantizer_detailed
from sim.tools import SIMULATORS

SMALL = {"d": 32, "group_tokens": 16, "lanes": 8}
MODES = [("key", "ternary", False), ("value", "2bit", False), ("value", "ternary", False), ("value", "ternary", True)]


def check(params, x, kind, value_format="ternary", salient=None, *, simulator, stall=0.3, seed=1):
    config = KvConfig.from_params(params)
    run = run_kv_quantizer_detailed(params, x, kind, salient=salient, value_format=value_format,
                                    simulator=simulator, stall=stall, seed=seed)
    want = pack_tokens(x, kind, f=config.f, stp=salient is not None, salient=salient,
                       **config.golden_options(value_format))
    difference = first_difference(run.packed, want, x)
    assert difference is None, f"{kind} {value_format} stp={salient is not None}: {difference} (seed {seed})"
    return run


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("f", KEY_FRACTIONS)
def test_every_mode_at_each_key_fraction(simulator, f):
    """K2 (f = 1), K1 (f = 0), K1.5 and the other fractions; V2, V1.58 (i2 or b3), V1.66 STP."""
    params = {**SMALL, "f": f, "ternary_layout": "i2" if KEY_FRACTIONS.index(f) % 2 else "b3"}
    config = KvConfig.from_params(params)
    gen = torch.Generator().manual_seed(int(f * 4))
    for kind, value_format, stp in MODES:
        x = corner_tokens(config, 3 * config.group_tokens + 5, seed=int(f * 8) + len(kind))
        salient = torch.rand(x.shape[0], generator=gen) < 0.35 if stp else None
        check(params, x, kind, value_format, salient, simulator=simulator)


def test_long_streams_with_stalls_lose_nothing():
    """1024+ tokens with random stalls on both streams: keys, and values with STP in b3 (on
    Verilator: long stalled runs take one simulator; the others cover Icarus)."""
    simulator = "verilator"
    params = {**SMALL, "ternary_layout": "b3", "in_bits": 12}
    config = KvConfig.from_params(params)
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(-2048, 2048, (1030, config.d), generator=gen)
    check(params, x, "key", simulator=simulator, stall=0.4, seed=11)
    salient = torch.rand(x.shape[0], generator=gen) < 0.2
    check(params, x, "value", salient=salient, simulator=simulator, stall=0.4, seed=12)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_extremes_and_all_equal_groups(simulator):
    """Full-scale inputs, all-equal groups (every range 0: the ranking is all ties), wide lanes."""
    params = {"d": 32, "group_tokens": 32, "lanes": 32, "f": 0.75, "stp": False}
    config = KvConfig.from_params(params)
    high = 1 << 15
    x = torch.full((3 * config.group_tokens, config.d), -high)
    x[config.group_tokens:2 * config.group_tokens] = high - 1
    x[2 * config.group_tokens:, ::2] = high - 1
    for kind, value_format, _ in MODES[:3]:
        check(params, x, kind, value_format, simulator=simulator)


def test_run_kv_quantizer_returns_golden_packing_and_cycles():
    params = {**SMALL, "f": 0.5}
    x = torch.randint(-1000, 1000, (40, 32), generator=torch.Generator().manual_seed(2))
    packed, cycles = run_kv_quantizer(params, x, "key")
    want = pack_tokens(x, "key", group_tokens=16, f=0.5)
    assert first_difference(packed, want, x) is None
    assert packed["key"].groups == 2 and cycles >= 40 * 4


@pytest.mark.parametrize("kwargs,message", [
    ({"x": torch.zeros((4, 32))}, "x must be an integer tensor"),
    ({"x": torch.zeros((4, 64), dtype=torch.int64)}, r"x must have shape \[T, 32\]"),
    ({"x": torch.full((4, 32), 1 << 15)}, "outside the 16-bit range"),
    ({"kind": "query"}, "kind must be 'key' or 'value'"),
    ({"salient": torch.zeros(4, dtype=torch.bool)}, "salient applies to values"),
    ({"kind": "value", "salient": torch.zeros(3, dtype=torch.bool)}, r"salient must be a bool tensor of shape \[4\]"),
    ({"kind": "value", "value_format": "3bit"}, "value_format must be"),
])
def test_bad_inputs_raise_clear_errors(kwargs, message):
    args = {"x": torch.zeros((4, 32), dtype=torch.int64), "kind": "key", **kwargs}
    with pytest.raises(ValueError, match=message):
        run_kv_quantizer(SMALL, args.pop("x"), args.pop("kind"), **args)
