"""docs/formats.md states the same facts as golden.tables and hdl.decoder."""

import re
from pathlib import Path

import pytest

from golden.tables import FAMILIES, code_values, family
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
