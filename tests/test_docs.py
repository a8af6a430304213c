"""docs/formats.md states the same facts as arch.bitmod and hdl.decoder."""

import re
from pathlib import Path

import pytest

from arch.bitmod import FAMILIES, code_values, family
from arch.measurements import LARGE_FP16_ARRAY, LARGE_INT8_ARRAY
from hdl.decoder import decoder_widths

DOC = (Path(__file__).parent.parent / "docs" / "formats.md").read_text()


def _rows(header_start):
    table = DOC[DOC.index(header_start):].split("\n\n")[0].splitlines()[2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in table]


def test_family_table_matches_tables():
    rows = _rows("| family | bits |")
    assert [row[0] for row in rows] == list(FAMILIES)
    for name, bits, kind, terms, values, special in rows:
        fam = family(name)
        assert (int(bits), kind, int(terms)) == (fam.bits, fam.kind, fam.terms)
        if fam.kind == "fp":
            assert values == ", ".join(map(str, code_values(name, 0)))
            assert special == f"0b{fam.special_code:b}: {fam.specials[0]}, {fam.specials[1]}"
        else:
            low, high = min(code_values(name, 0)), max(code_values(name, 0))
            assert values == f"two's complement {low}..{high}"


@pytest.mark.parametrize("row", _rows("| families built in |"))
def test_width_table_matches_decoder_widths(row):
    label, *numbers = row
    families = FAMILIES if label == "all six" else [f.strip() for f in label.split(",")]
    widths = decoder_widths(families)
    keys = ["code_bits", "terms", "shift_bits", "term_bits", "output_bits"]
    assert [int(n) for n in numbers] == [widths[k] for k in keys]


def test_family_ids_are_the_table_order():
    ids = re.search(r"fp4 = 0, fp3 = 1, int4 = 2, int3 = 3, int6 = 4, int8 = 5", DOC)
    assert ids and list(FAMILIES) == ["fp4", "fp3", "int4", "int3", "int6", "int8"]


def test_worked_example_of_the_packed_stream():
    import torch

    from golden.bitmod import quantize
    from golden.bitmod_pack import pack

    w = torch.tensor([[0.30, -0.12, 0.05, 0.0] + [0.01] * 28 + [0.0] * 32])
    bw = quantize(w, "fp4", group_size=32)
    assert (bw.dt.tolist(), bw.sg.tolist(), bw.sq.tolist()) == ([[1, 0]], [[0, 0]], [[255, 0]])
    assert f"{bw.cs.item():.7e}" in DOC
    words = [f"0x{x:x}" for x in pack(bw).words.tolist()]
    assert words == ["0x3fd", "0x111103d8"] + ["0x11111111"] * 3 + ["0x0"] * 5
    assert "`0x3fd`" in DOC and "`0x111103d8`" in DOC


def test_accumulator_width_table():
    from arch.bitmod import FAMILIES, accumulator_widths

    widths = accumulator_widths(4096, 128, 8, FAMILIES)
    for key in ("product", "group_sum", "scaled_group", "acc"):
        assert f"{widths[f'max_abs_{key}']} -> {widths[f'{key}_bits']} bits" in DOC


def test_fp16_width_table():
    from arch.bitmod import FAMILIES
    from arch.fp16 import DEFAULT_ALIGN_BITS, fp16_widths

    widths = fp16_widths(4096, 128, 8, FAMILIES, DEFAULT_ALIGN_BITS)
    for key in ("aligned", "product", "group_sum", "scaled_group", "acc"):
        assert f"{widths[f'max_abs_{key}']} -> {widths[f'{key}_bits']} bits" in DOC
    assert f"default {DEFAULT_ALIGN_BITS}):" in DOC and f"B = {DEFAULT_ALIGN_BITS}, max K = 4096" in DOC


def test_engine_stream_beat_counts_match_golden():
    from golden.vidkv_stream import beats_per_group

    key = beats_per_group("key", d=128, group_tokens=32, n_hi=64)
    v2 = beats_per_group("value", d=128, group_tokens=32, value_format="2bit")
    b3 = beats_per_group("value", d=128, group_tokens=32, ternary_layout="b3")
    assert f"f = 1/2: {key}; V2: {v2}; V1.58 `b3`: {b3}; STP adds Tg" in " ".join(DOC.split())


ROOT = Path(__file__).parent.parent
_PACKAGES = "docs|arch|golden|hdl|host|gateware|sim|synth|mixbit|benchmarks|tests"
_PATH = re.compile(rf"\b(?:{_PACKAGES})/[\w./-]+\.(?:py|md|cpp|vlt|png)\b")
_LINK = re.compile(r"\]\(([\w./-]+\.(?:md|png|py))(?:#[\w-]*)?\)")


def _texts():
    for pattern in ("*.md", "*/*.md", "*/*.py", "*.toml"):
        for path in sorted(ROOT.glob(pattern)):
            yield path, path.read_text()


def test_every_file_the_repository_names_exists():
    missing = [f"{path.relative_to(ROOT)} names {name}" for path, text in _texts()
               for name in _PATH.findall(text) if not (ROOT / name).exists()]
    missing += [f"{path.relative_to(ROOT)} links {link}" for path, text in _texts()
                for link in _LINK.findall(text) if not (path.parent / link).exists()]
    assert not missing, "\n".join(missing)


def test_no_file_points_outside_the_repository():
    words = ("../" + "shared", "spec/" + "bitmod.md", "spec/" + "vidkv.md", "TOOLCHAIN" + ".md")
    outside = [f"{path.relative_to(ROOT)}: {word}" for path, text in _texts() for word in words if word in text]
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("measured", [LARGE_INT8_ARRAY, LARGE_FP16_ARRAY], ids=lambda m: m.shape)
def test_every_quoted_clock_is_a_measured_row_of_the_performance_page(measured):
    """arch.measurements' clocks (what projections run at) are rows of docs/performance.md:
    each seed's Fmax on a line of the same array, and the commit beside the array."""
    lines = (ROOT / "docs" / "performance.md").read_text().splitlines()
    shaped = [line for line in lines if line.startswith("|") and measured.shape in line]
    for seed, mhz in measured.fmax_by_seed.items():
        assert any(f"{mhz:.2f}" in line for line in shaped), f"{measured.shape}: {mhz:.2f} MHz (seed {seed})"
    assert any(measured.commit in line for line in shaped), f"{measured.shape}: commit {measured.commit}"
