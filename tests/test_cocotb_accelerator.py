"""cocotb regression of the accelerator top on both simulators: the host driver over a bit-level UART."""


import pytest

from sim.board_sim import SMALL_BOARD
from sim.runner import build_design, run_regression
from sim.tools import SIMULATORS


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_accelerator_regression(simulator, seed):
    build, params = build_design("accelerator", SMALL_BOARD, simulator)
    assert run_regression(build, "sim.tb_accelerator", params, seed=seed) == 1
