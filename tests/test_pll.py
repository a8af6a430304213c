"""hdl.pll's divider search: known settings, every setting inside the primitive's ranges,
and clear errors for what no setting reaches."""

from fractions import Fraction

import pytest

from hdl.pll import PLLS, TOLERANCE, pll_setting, pll_settings

MHZ = 1_000_000


@pytest.mark.parametrize("primitive, in_mhz, out_mhz, dividers, vco_mhz", [
    # the board defaults
    ("EHXPLLL", 25, 45, {"CLKI_DIV": 5, "CLKFB_DIV": 9, "CLKOP_DIV": 13}, 585),
    ("SB_PLL40_PAD", 12, 21, {"DIVR": 0, "DIVF": 55, "DIVQ": 5, "FILTER_RANGE": 1}, 672),
    ("SB_PLL40_PAD", 12, 18, {"DIVR": 0, "DIVF": 47, "DIVQ": 5, "FILTER_RANGE": 1}, 576),
    # what ecppll / icepll give for the same request
    ("EHXPLLL", 12, 16, {"CLKI_DIV": 3, "CLKFB_DIV": 4, "CLKOP_DIV": 37}, 592),
    ("EHXPLLL", 25, 50, {"CLKI_DIV": 1, "CLKFB_DIV": 2, "CLKOP_DIV": 12}, 600),
    ("SB_PLL40_PAD", 12, 96, {"DIVR": 0, "DIVF": 63, "DIVQ": 3, "FILTER_RANGE": 1}, 768),
    ("SB_PLL40_PAD", 16, 50, {"DIVR": 0, "DIVF": 49, "DIVQ": 4, "FILTER_RANGE": 1}, 800),
    ("SB_PLL40_PAD", 96, 20, {"DIVR": 2, "DIVF": 19, "DIVQ": 5, "FILTER_RANGE": 3}, 640),
])
def test_known_settings(primitive, in_mhz, out_mhz, dividers, vco_mhz):
    setting = pll_setting(primitive, in_mhz * MHZ, out_mhz)
    assert setting.dividers == dividers and setting.out_hz == out_mhz * MHZ and setting.vco_hz == vco_mhz * MHZ
    assert setting.clk_hz == out_mhz * MHZ and setting.report()["out_mhz"] == out_mhz


def test_a_near_frequency_is_taken_within_the_tolerance():
    setting = pll_setting("EHXPLLL", 25 * MHZ, 33.3)          # 25 * 4 / 3
    assert setting.dividers["CLKFB_DIV"] * 3 == setting.dividers["CLKI_DIV"] * 4
    assert setting.clk_hz == 33_333_333 and abs(setting.out_hz - Fraction("33.3") * MHZ) <= TOLERANCE * 33 * MHZ
    with pytest.raises(ValueError, match=r"makes 33 MHz .* \(nearest: 32.1429 or 33.3333 MHz\)"):
        pll_setting("EHXPLLL", 25 * MHZ, 33)                   # 1.01 % away


def _formula(s):
    d = s.dividers
    if s.primitive == "EHXPLLL":
        assert 1 <= d["CLKI_DIV"] <= 128 and 1 <= d["CLKFB_DIV"] <= 80 and 1 <= d["CLKOP_DIV"] <= 128
        pfd = Fraction(s.in_hz, d["CLKI_DIV"])
        return pfd, pfd * d["CLKFB_DIV"] * d["CLKOP_DIV"], pfd * d["CLKFB_DIV"]
    assert 0 <= d["DIVR"] <= 15 and 0 <= d["DIVF"] <= 127 and 1 <= d["DIVQ"] <= 6 and 1 <= d["FILTER_RANGE"] <= 6
    pfd = Fraction(s.in_hz, d["DIVR"] + 1)
    vco = pfd * (d["DIVF"] + 1)
    return pfd, vco, vco / 2 ** d["DIVQ"]


@pytest.mark.parametrize("primitive, in_mhz", [("EHXPLLL", 25), ("EHXPLLL", 12), ("SB_PLL40_PAD", 12),
                                               ("SB_PLL40_PAD", 100)])
def test_every_setting_is_inside_the_documented_ranges(primitive, in_mhz):
    limits = PLLS[primitive]
    settings = list(pll_settings(primitive, in_mhz * MHZ))
    assert len(settings) > 50
    for s in settings:
        assert _formula(s) == (s.pfd_hz, s.vco_hz, s.out_hz)
        for name, hz in (("pfd", s.pfd_hz), ("vco", s.vco_hz), ("output", s.out_hz)):
            low, high = getattr(limits, name)
            assert low * MHZ <= hz <= high * MHZ, (name, s)


@pytest.mark.parametrize("primitive, in_hz, out_mhz, message", [
    ("EHXPLLL", 25 * MHZ, 500, r"no EHXPLLL setting makes 500 MHz from 25 MHz within 1% \(nearest: 400 MHz\)"),
    ("EHXPLLL", 25 * MHZ, 48, r"makes 48 MHz .* \(nearest: 46.875 or 50 MHz\)"),
    ("SB_PLL40_PAD", 12 * MHZ, 10, r"no SB_PLL40_PAD setting makes 10 MHz from 12 MHz .* \(nearest: 16.\d+ MHz\)"),
    ("SB_PLL40_PAD", 12 * MHZ, 0, "out_mhz must be a positive number of MHz, not 0"),
    ("SB_PLL40_PAD", 12 * MHZ, float("nan"), "out_mhz must be a positive number of MHz, not nan"),
    ("SB_PLL40_PAD", 12 * MHZ, "24", "out_mhz must be a positive number of MHz, not '24'"),
    ("SB_PLL40_PAD", 5 * MHZ, 24, "in_hz must be an integer in 10..133 MHz for SB_PLL40_PAD, not 5000000"),
    ("PLLE2_BASE", 12 * MHZ, 24, "primitive must be one of EHXPLLL, SB_PLL40_PAD, not 'PLLE2_BASE'"),
])
def test_impossible_requests_are_errors(primitive, in_hz, out_mhz, message):
    with pytest.raises(ValueError, match=message):
        pll_setting(primitive, in_hz, out_mhz)
