"""cocotb regressions of the generated decoder Verilog on both simulators."""


import pytest

from arch.bitmod import FAMILIES
from sim.runner import SimulationFailed, build_design, build_sources, run_regression
from sim.tools import SIMULATORS


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("families", [FAMILIES, ("fp3", "int6")])
def test_decoder_regression(simulator, families, seed):
    build, params = build_design("decoder", {"families": families}, simulator)
    assert run_regression(build, "sim.tb_decoder", params, seed=seed) == 2


def test_a_wrong_design_fails_with_the_first_mismatch():
    # Built with fp4 and int8 only (same output layout as all six), checked as if every
    # family were in: the other families' codes decode to 0.
    build, _ = build_design("decoder", {"families": ("fp4", "int8")}, "icarus")
    with pytest.raises(SimulationFailed, match=r"decoder_exhaustive: .*first mismatch at item \d+: "
                                               r"family=(fp3|int4|int3|int6) .* \(seed 7\)"):
        run_regression(build, "sim.tb_decoder", {"families": list(FAMILIES)}, seed=7,
                       testcase="decoder_exhaustive")


def test_build_is_cached():
    first, _ = build_design("decoder", {}, "icarus")
    again, _ = build_design("decoder", {"families": ",".join(FAMILIES)}, "icarus")
    assert again.directory == first.directory
    other, _ = build_design("decoder", {"families": "fp4"}, "icarus")
    assert other.directory != first.directory


def test_a_build_error_is_reported_with_its_log(tmp_path):
    broken = tmp_path / "broken.v"
    broken.write_text("module broken(input clk);\n  wire x = ;\nendmodule\n")
    with pytest.raises(SimulationFailed, match=r"icarus could not build broken \(log .*build.log\): .*error"):
        build_sources([broken], "broken", "icarus", name="broken")
