"""Board builds: configurations, parameter errors and the timing report (the bitstreams
themselves are built by .ci/run and benchmarks, not in the default test run)."""

import json

import pytest

from arch.accelerator_config import AcceleratorConfig
from arch.link import BOARD_BAUD
from mixbit.boards import (
    BOARDS,
    BoardTop,
    TimingNotMet,
    bitstream_name,
    board_clock,
    board_params,
    board_pll,
    check_timing,
    flow_target,
    read_report,
)
from mixbit.cli import main


@pytest.mark.parametrize("name", list(BOARDS))
def test_each_board_has_a_valid_configuration_that_elaborates_with_its_pll(name):
    board = BOARDS[name]
    config = AcceleratorConfig.from_params(board_params(board, {}))
    pll = board_pll(board)
    assert (config.clk_hz, config.baud) == board_clock(name) == (board.freq_mhz * 1_000_000, BOARD_BAUD)
    assert config.clk_hz % config.baud == 0 and config.divisor >= 4      # an exact UART divisor
    platform = board.make_platform()
    assert pll.in_hz == board.osc_hz == platform.default_clk_frequency
    plan = platform.prepare(BoardTop(board, config, pll), name="mixbit_accelerator")   # pins and clock resolve
    rtlil = plan.files["mixbit_accelerator.il"]
    assert f"cell \\{board.pll} " in rtlil and all(f"parameter \\{k} {v}\n" in rtlil for k, v in pll.dividers.items())
    constraints = plan.files["mixbit_accelerator.pcf" if board.pll == "SB_PLL40_PAD" else "mixbit_accelerator.lpf"]
    assert (f"set_frequency pll_clk {board.freq_mhz:.1f}" in constraints if board.pll == "SB_PLL40_PAD" else
            f'FREQUENCY NET "pll_clk" {config.clk_hz:.1f} HZ;' in constraints)        # the PLL's output
    tool = "icepack" if bitstream_name(platform, "x") == "x.bin" else "ecppack"
    assert tool in plan.files["build_mixbit_accelerator.sh"]
    assert flow_target(platform) == ("ice40-up5k" if name.startswith("icebreaker") else "ecp5-85f")


def test_board_clock_follows_freq():
    assert board_clock("ulx3s-85f", 60) == (60_000_000, BOARD_BAUD)
    assert board_clock("icebreaker", 24) == (24_000_000, BOARD_BAUD)
    assert board_clock("ulx3s-85f", 33.3) == (33_333_333, BOARD_BAUD)     # 25 * 4 / 3: divisor 11, 1 % off
    with pytest.raises(ValueError, match=r"^ulx3s-85f: --freq 48: no EHXPLLL setting makes 48 MHz"):
        board_clock("ulx3s-85f", 48)
    with pytest.raises(ValueError, match=r"^icebreaker at 19.875 MHz: baud 3000000 is 5.4% off"):
        board_clock("icebreaker", 20)
    with pytest.raises(ValueError, match="unknown board 'icestick'"):
        board_clock("icestick")


def test_board_parameters_are_checked():
    with pytest.raises(ValueError, match=r"clk_hz is the board's PLL clock \(21 MHz on icebreaker by default\); "
                                         r"set it with --freq MHZ"):
        board_params(BOARDS["icebreaker"], {"clk_hz": "24000000"})
    with pytest.raises(ValueError, match="pe_rows"):
        board_params(BOARDS["icebreaker"], {"pe_rows": "0"})


@pytest.mark.parametrize("args, message", [
    (["-p", "baud=7"], "baud"),
    (["--freq", "fast"], "--freq expects a clock in MHz (a positive number), not 'fast'"),
    (["--freq=-24"], "--freq expects a clock in MHz (a positive number), not '-24'"),
    (["--freq", "inf"], "--freq expects a clock in MHz (a positive number), not 'inf'"),
    (["--freq", "900"], "icebreaker: --freq 900: no SB_PLL40_PAD setting makes 900 MHz from 12 MHz within 1% "
                        "(nearest: 270 MHz)"),
    (["--freq", "20"], "icebreaker at 19.875 MHz: baud 3000000 is 5.4% off what clk_hz 19875000 can make"),
])
def test_cli_build_errors_are_one_line(capsys, args, message):
    assert main(["build", "--board", "icebreaker", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixbit: error:") and message in err[0]


def _pnr(tmp_path, achieved, constraint=21.0):
    (tmp_path / "report.pnr.json").write_text(json.dumps({
        "fmax": {"clk": {"achieved": achieved, "constraint": constraint}},
        "utilization": {"ICESTORM_LC": {"used": 100, "available": 5280}}}))


def test_report_and_timing_check(tmp_path):
    board = BOARDS["icebreaker"]
    params, pll = board_params(board, {}), board_pll(board)
    _pnr(tmp_path, 20.5)
    report = read_report(board, params, pll, tmp_path, "x.bin")
    assert not report["met"] and "ICESTORM_LC | 100 | 5280" in (tmp_path / "report.md").read_text()
    assert (report["clk_mhz"], report["osc_mhz"], report["pll_net"]) == (21.0, 12.0, "clk")
    assert report["pll"] == {"primitive": "SB_PLL40_PAD", "in_mhz": 12.0, "out_mhz": 21.0, "pfd_mhz": 12.0,
                             "vco_mhz": 672.0, "DIVR": 0, "DIVF": 55, "DIVQ": 5, "FILTER_RANGE": 1}
    assert "Clock 21 MHz from the 12 MHz oscillator by the SB_PLL40_PAD (DIVR 0, DIVF 55, DIVQ 5, FILTER_RANGE 1; VCO 672 MHz); nextpnr Fmax 20.5 MHz on `clk` (NOT met)" in (tmp_path / "report.md").read_text()
    with pytest.raises(TimingNotMet, match=r"icebreaker: timing not met: Fmax 20.5 MHz < PLL clock 21.0 MHz"):
        check_timing(report, tmp_path)
    _pnr(tmp_path, 26.8, constraint=12.0)              # the clock nextpnr timed is not the PLL's
    with pytest.raises(TimingNotMet, match=r"icebreaker: nextpnr timed no clock at the PLL's 21.0 MHz"):
        check_timing(read_report(board, params, pll, tmp_path, "x.bin"), tmp_path)
    _pnr(tmp_path, 26.8)
    check_timing(read_report(board, params, pll, tmp_path, "x.bin"), tmp_path)
