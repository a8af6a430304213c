"""arch.bitmod and golden.formats against docs/bitmod_contract.md section 1."""

import pytest
import torch

from arch import bitmod as tables  # the family tables
from golden import formats

# The POS grids as the contract's section 1 lists them, written out independently of arch/bitmod.py.
SPEC_GRIDS = {
    ("fp4", 0): {-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 10, 12},
    ("fp4", 1): {-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12, 16},
    ("fp3", 0): {-4, -2, -1, 0, 1, 2, 3, 4},
    ("fp3", 1): {-4, -2, -1, 0, 1, 2, 4, 6},
}


@pytest.mark.parametrize("name,dt", list(SPEC_GRIDS))
def test_fp_grids_match_spec(name, dt):
    assert set(tables.code_values(name, dt)) == SPEC_GRIDS[name, dt]
    assert set(formats.grid(name, dt).tolist()) == SPEC_GRIDS[name, dt]


def test_fp_code_words_are_sign_magnitude_with_special_minus_zero():
    assert tables.code_values("fp4", 0)[0b0111] == 12
    assert tables.code_values("fp4", 0)[0b1111] == -12
    assert tables.code_values("fp4", 0)[0b1000] == 10
    assert tables.code_values("fp4", 1)[0b1000] == 16
    assert tables.code_values("fp3", 0)[0b100] == 3
    assert tables.code_values("fp3", 1)[0b100] == 6
    assert tables.code_values("fp3", 1)[0b111] == -4


@pytest.mark.parametrize("name,bits", [("int3", 3), ("int4", 4), ("int6", 6), ("int8", 8)])
def test_int_code_words_are_twos_complement(name, bits):
    for dt in (0, 1):
        values = tables.code_values(name, dt)
        assert list(values) == [c - (1 << bits) if c >= 1 << (bits - 1) else c for c in range(1 << bits)]


def test_every_fp_value_is_at_most_two_power_of_two_terms():
    for name in ("fp3", "fp4"):
        for dt in (0, 1):
            assert all(bin(abs(v)).count("1") <= 2 for v in tables.code_values(name, dt))


def test_terms_and_widths():
    assert [tables.family(f).terms for f in tables.FAMILIES] == [2, 2, 2, 2, 3, 4]
    assert tables.max_terms(["fp4", "int6"]) == 3
    assert tables.max_digit_shift(["fp4", "int8"]) == 2  # 16 = 4 * 4
    assert tables.max_digit_shift(["int8", "int3"]) == 1  # Booth digits are 0, +-1, +-2
    assert tables.max_code_bits(["fp3", "int6"]) == 6
    assert tables.FAMILY_ID_BITS == 3


@pytest.mark.parametrize("name", tables.FAMILIES)
def test_decode_encode_round_trip_every_code(name):
    codes = torch.arange(1 << tables.family(name).bits)
    for dt in (0, 1):
        values = formats.decode(codes, name, dt)
        assert values.dtype == torch.int64
        assert values.tolist() == list(tables.code_values(name, dt))
        assert torch.equal(formats.encode(values, name, dt), codes)
        assert torch.equal(formats.encode(values.double(), name, dt), codes)


def test_dt_broadcasts_per_element():
    codes = torch.tensor([[8, 8], [1, 15]])
    dt = torch.tensor([0, 1])
    assert formats.decode(codes, "fp4", dt).tolist() == [[10, 16], [1, -12]]
    assert formats.encode(torch.tensor([[10, 16]]), "fp4", dt).tolist() == [[8, 8]]


def test_decode_runs_on_the_input_device():
    codes = torch.arange(16, device="cpu")
    assert formats.decode(codes, "int4").device == codes.device


@pytest.mark.parametrize("call,error,message", [
    (lambda: formats.decode(torch.tensor([0, 16]), "fp4"), ValueError, r"codes must lie in 0\.\.15 for fp4; codes\[1\] = 16"),
    (lambda: formats.decode(torch.tensor([-1]), "int3"), ValueError, r"codes\[0\] = -1"),
    (lambda: formats.decode(torch.tensor([1.0]), "fp4"), TypeError, "codes must be an integer tensor, not dtype torch.float32"),
    (lambda: formats.decode([1, 2], "fp4"), TypeError, "codes must be a torch.Tensor, not list"),
    (lambda: formats.decode(torch.tensor([1]), "fp5"), ValueError, "family must be one of .*not 'fp5'"),
    (lambda: formats.decode(torch.tensor([1]), "fp4", 2), ValueError, "dt must be 0 or 1, found 2"),
    (lambda: formats.decode(torch.tensor([1]), "fp4", 0.5), TypeError, "dt must be an integer"),
    (lambda: formats.encode(torch.tensor([1, 5]), "fp4", 0), ValueError,
     r"values\[1\] = 5 is not on the fp4 ER \(dt=0\) grid"),
    (lambda: formats.encode(torch.tensor([16]), "fp4", 0), ValueError, r"values\[0\] = 16 is not on the fp4 ER"),
    (lambda: formats.encode(torch.tensor([10]), "fp4", 1), ValueError, r"values\[0\] = 10 is not on the fp4 EA"),
    (lambda: formats.encode(torch.tensor([200]), "int8"), ValueError, r"values\[0\] = 200 is not on the int8 grid"),
    (lambda: formats.encode(torch.tensor([1.5]), "int4"), ValueError, r"values must be integers in code units; values\[0\] = 1.5"),
    (lambda: formats.encode(torch.tensor([float("nan")]), "int4"), ValueError, r"values must be finite; values\[0\] = nan"),
    (lambda: formats.encode(torch.tensor([float("inf")]), "int4"), ValueError, r"values must be finite"),
    (lambda: formats.encode(torch.tensor([True]), "int4"), TypeError, "values must be an integer or float tensor"),
])
def test_errors_name_the_argument_and_value(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("families,message", [
    ([], "families must name at least one family"),
    (["fp4", "fp4"], "families must not repeat a family"),
    (["fp4", "bf16"], "'bf16' is unknown"),
    (7, "families must be an iterable of family names, not 7"),
])
def test_check_families_errors(families, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tables.check_families(families)


def test_check_families_orders_by_family_id_and_parses_text():
    assert tables.check_families("int8, fp3") == ("fp3", "int8")


def test_fp_digits_cover_every_fp_value():
    for name in ("fp4", "fp3"):
        for dt in (0, 1):
            for value in tables.code_values(name, dt):
                low, high = tables.fp_digits(value)
                assert low + 4 * high == value
                assert low in tables.DIGIT_VALUES and high in tables.DIGIT_VALUES
    assert tables.fp_digits(3) == (-1, 1)
    assert tables.fp_digits(-16) == (0, -4)
    with pytest.raises(ValueError, match="value 11 has no two-digit radix-4 form"):
        tables.fp_digits(11)
