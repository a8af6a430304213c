"""The KV engine's tagged output stream: golden's beats parse back to golden's packed groups."""

import pytest
import torch

from golden.vidkv import n_high
from golden.vidkv_stream import HEADER, META, group_beats, pack_tokens, parse_beats


def same_packed(a, b) -> str | None:
    """None when two PackedKV are equal, else the first differing field."""
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, dict):
            if x.keys() != y.keys() or any(not torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor)
                                           else x[k] != y[k] for k in x):
                return name
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if x is None or y is None or x.shape != y.shape or not torch.equal(x, y):
                return name
        elif x != y:
            return name
    return None


def stream(packed: dict) -> list:
    return [beat for path, p in packed.items() for g in range(p.groups) for beat in group_beats(p, g, path == "salient")]


CASES = [
    ("key", {"f": 0.5}), ("key", {"f": 0.0}), ("key", {"f": 1.0}), ("key", {"f": 0.25}),
    ("key", {"f": 0.5, "fft": True}), ("key", {"f": 0.0, "fft": True}), ("key", {"f": 0.75, "fft": True}),
    ("key", {"f": 1.0, "fft": True}),
    ("value", {"value_format": "2bit"}), ("value", {"ternary_layout": "i2"}), ("value", {"ternary_layout": "b3"}),
    ("value", {"stp": True, "ternary_layout": "b3"}), ("value", {"stp": True, "value_format": "2bit"}),
]


@pytest.mark.parametrize("tg,d", [(16, 32), (32, 64), (64, 128)])
@pytest.mark.parametrize("kind,options", CASES)
def test_beats_parse_back_to_golden(kind, options, tg, d):
    gen = torch.Generator().manual_seed(tg + d)
    x = torch.randint(-(1 << 15), 1 << 15, (3 * tg + 5, d), generator=gen)
    salient = torch.rand(x.shape[0], generator=gen) < 0.3 if options.get("stp") else None
    packed = pack_tokens(x, kind, group_tokens=tg, salient=salient, **options)
    parsed = parse_beats(stream(packed), d=d, group_tokens=tg, n_hi=n_high(d, options.get("f", 0.5)),
                         **{k: v for k, v in options.items() if k != "f"})
    assert parsed.keys() == packed.keys()
    for path in packed:
        assert same_packed(parsed[path], packed[path]) is None, (path, same_packed(parsed[path], packed[path]))


def test_missing_and_extra_beats_are_errors():
    x = torch.randint(-100, 100, (32, 32), generator=torch.Generator().manual_seed(1))
    packed = pack_tokens(x, "value", value_format="2bit")
    beats = stream(packed)
    with pytest.raises(ValueError, match="meta beats, expected more"):
        parse_beats(beats[:-1], d=32, group_tokens=32, value_format="2bit")
    with pytest.raises(ValueError, match="meta beats, expected 32"):
        parse_beats(beats + [(META, 0)], d=32, group_tokens=32, value_format="2bit")
    with pytest.raises(ValueError, match="before the first header"):
        parse_beats(beats[1:], d=32, group_tokens=32, value_format="2bit")
    with pytest.raises(ValueError, match="tag 7"):
        parse_beats([(HEADER, 2), (7, 0)], d=32, group_tokens=32, value_format="2bit")


@pytest.mark.parametrize("kind,options", CASES)
def test_beat_counts_match_the_stream(kind, options):
    from golden.vidkv_stream import beats_per_group, group_counts

    tg, d = 16, 64
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-500, 500, (5 * tg + 3, d), generator=gen)
    salient = torch.rand(x.shape[0], generator=gen) < 0.3 if options.get("stp") else None
    packed = pack_tokens(x, kind, group_tokens=tg, salient=salient, **options)
    counts = group_counts(kind, x.shape[0], tg, salient)
    assert {p: n for p, n in counts.items() if n} == {p: v.groups for p, v in packed.items()}
    expected = sum(n * beats_per_group(p, d=d, group_tokens=tg, n_hi=n_high(d, options.get("f", 0.5)),
                                       **{k: v for k, v in options.items() if k not in ("f", "fft")})
                   for p, n in counts.items())
    assert expected == len(stream(packed))
