"""Board builds: configurations, parameter errors and the timing report (the bitstreams
themselves are built by .ci/run and benchmarks, not in the default test run)."""

import json

import pytest

from arch.accelerator_config import AcceleratorConfig
from mixbit.boards import (
    BOARDS,
    BoardTop,
    TimingNotMet,
    bitstream_name,
    board_params,
    check_timing,
    flow_target,
    read_report,
)
from mixbit.cli import main


@pytest.mark.parametrize("name", list(BOARDS))
def test_each_board_has_a_valid_configuration_that_elaborates(name):
    board = BOARDS[name]
    config = AcceleratorConfig.from_params(board_params(board, {}))
    assert config.clk_hz == board.clk_hz and config.divisor >= 4
    platform = board.make_platform()
    plan = platform.prepare(BoardTop(board, config), name="mixbit_accelerator")   # pins and clock resolve
    assert "mixbit_accelerator.il" in plan.files
    tool = "icepack" if bitstream_name(platform, "x") == "x.bin" else "ecppack"
    assert tool in plan.files["build_mixbit_accelerator.sh"]
    assert flow_target(platform) == ("ice40-up5k" if name.startswith("icebreaker") else "ecp5-85f")


def test_board_parameters_are_checked():
    with pytest.raises(ValueError, match="clk_hz is the board's clock"):
        board_params(BOARDS["icebreaker"], {"clk_hz": "24000000"})
    with pytest.raises(ValueError, match="pe_rows"):
        board_params(BOARDS["icebreaker"], {"pe_rows": "0"})


def test_cli_build_errors_are_one_line(capsys):
    assert main(["build", "--board", "icebreaker", "-p", "baud=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixbit: error:") and "baud" in err[0]


def _pnr(tmp_path, achieved):
    (tmp_path / "report.pnr.json").write_text(json.dumps({
        "fmax": {"clk": {"achieved": achieved, "constraint": 12.0}},
        "utilization": {"ICESTORM_LC": {"used": 100, "available": 5280}}}))


def test_report_and_timing_check(tmp_path):
    board = BOARDS["icebreaker"]
    params = board_params(board, {})
    _pnr(tmp_path, 11.5)
    report = read_report(board, params, tmp_path, "x.bin")
    assert not report["met"] and "ICESTORM_LC | 100 | 5280" in (tmp_path / "report.md").read_text()
    with pytest.raises(TimingNotMet, match=r"icebreaker: timing not met: Fmax 11.5 MHz < board clock 12.0 MHz"):
        check_timing(report, tmp_path)
    _pnr(tmp_path, 26.8)
    check_timing(read_report(board, params, tmp_path, "x.bin"), tmp_path)
