"""The suite's tiers and seeds.

Tiers: every test that runs a simulator on generated Verilog, a synthesis or place and
route, the simulated board, or a real transformer is marked here: by file, in
test_cli.py and test_sweep.py by test, in test_readme.py by what each README command or
example runs (tests/readme.py), so that no test file carries these markers by hand:

==============  ==================================================================
``cocotb``      generated Verilog under Verilator or Icarus
``synthesis``   yosys / nextpnr flows (and simulation of their netlists)
``board``       board configurations and the simulated board behind its UART
``accuracy``    all-MiniLM-L6-v2 through the golden models, and through the RTL (mixbit run-model)
``formal``      SBY proofs of formal/properties.py and their mutation checks
``slow``        every test of the five tiers above
==============  ==================================================================

``pytest -m "not slow"`` is the fast tier (golden models, Amaranth-simulator unit tests
of every block, docs); plain ``pytest`` runs everything.

Seeds: every test gets a fixed seed derived from its test id, so a run is repeatable;
``--random-seeds`` (or ``MIXBIT_SEED=random``) draws fresh ones, ``MIXBIT_SEED=N`` forces
one. The ``seed`` fixture returns it, and before each test it also seeds the global
generators (Python's ``random``, torch's and numpy's), so a draw that names no generator
is replayed too. A failing test's report shows its seed.
"""

from __future__ import annotations

import os
import random
import zlib

import numpy
import pytest
import readme
import torch

#: The tier of each test file that belongs to one whole.
FILE_TIERS = {
    "test_cocotb_accelerator.py": "cocotb",
    "test_cocotb_decoder.py": "cocotb",
    "test_cocotb_kv_dequant.py": "cocotb",
    "test_cocotb_kv_fft.py": "cocotb",
    "test_cocotb_kv_quant.py": "cocotb",
    "test_cocotb_pe_array.py": "cocotb",
    "test_cocotb_pe_array_fp16.py": "cocotb",
    "test_netlist.py": "synthesis",
    "test_synth.py": "synthesis",
    "test_ecp5_bram.py": "synthesis",
    "test_dp16kd_model.py": "synthesis",
    "test_board_sim.py": "board",
    "test_boards.py": "board",
    "test_accuracy.py": "accuracy",
    "test_model_run.py": "accuracy",
    "test_formal.py": "formal",
}
#: test_cli.py mixes quick argument checks with runs of the simulators and the flow.
CLI_TIERS = {
    "test_generated_verilog_passes_verilator_lint": "cocotb",
    "test_sim_runs_the_regression": "cocotb",
    "test_sim_runs_the_pe_array_self_check": "cocotb",
    "test_synth_prints_area_and_fmax": "synthesis",
    "test_synth_fails_on_unmet_timing_like_build": "synthesis",
}
#: test_sweep.py: quick grid and argument checks, and two tests that synthesize.
SWEEP_TIERS = {
    "test_decoder_sweep_equals_mixbit_synth_survives_a_killed_worker_and_resumes": "synthesis",
    "test_a_point_that_does_not_fit_is_recorded_with_its_reason": "synthesis",
    "test_a_sweep_runs_on_a_cluster_started_as_docs_sweeps_says": "synthesis",
}
#: test_loose_inputs.py and test_link_faults.py: quick checks beside runs of the simulators.
TEST_TIERS = {
    "test_ctrl_c_ends_with_one_line_status_130_and_nothing_left_running": "cocotb",
    "test_sim_runs_are_quiet_and_keep_their_log": "cocotb",
    "test_a_failed_run_names_its_log": "cocotb",
    "test_mixbit_sim_is_quiet_unless_verbose": "cocotb",
    "test_gemm_and_kv_round_trip_stay_bit_exact_on_a_noisy_line": "board",
    "test_a_hopeless_line_on_the_simulated_board_ends_in_a_clear_error": "board",
}
#: test_model_run.py: the model's tests (accuracy) beside the board path and a cocotb run.
MODEL_RUN_TIERS = {
    "test_a_layer_through_the_driver_on_the_simulated_board_gives_the_same_bits": "board",
    "test_the_kernels_run_on_icarus_through_the_cocotb_runners_too": "cocotb",
    "test_the_fast_harness_turns_a_hang_and_bad_requests_into_clear_failures": "cocotb",
}
TIERS = ("cocotb", "synthesis", "board", "accuracy", "formal")


def pytest_addoption(parser):
    parser.addoption("--random-seeds", action="store_true",
                     help="draw a fresh random seed for every test that takes the seed fixture")


def pytest_configure(config):
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: a slow-tier test (set by tests/conftest.py)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = FILE_TIERS.get(item.path.name)
        if item.path.name == "test_cli.py":
            tier = CLI_TIERS.get(item.originalname)
        if item.path.name == "test_sweep.py":
            tier = SWEEP_TIERS.get(item.originalname)
        if item.path.name == "test_model_run.py":
            tier = MODEL_RUN_TIERS.get(item.originalname, tier)
        if item.path.name in ("test_loose_inputs.py", "test_link_faults.py"):
            tier = TEST_TIERS.get(item.originalname)
        if item.path.name == "test_readme.py":
            params = getattr(item, "callspec", None)
            tier = next((readme.tier(v) for v in (params.params.values() if params else ())
                         if isinstance(v, (readme.Command, readme.Block))), None)
        if tier:
            item.add_marker(tier)
            item.add_marker("slow")


def _test_seed(request) -> int:
    forced = os.environ.get("MIXBIT_SEED", "")
    if forced.isdigit():
        return int(forced)
    if forced == "random" or request.config.getoption("--random-seeds"):
        return random.SystemRandom().randrange(1 << 31)
    return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture(autouse=True)
def _seeded(request) -> int:
    """The test's seed (see the module docstring), recorded for its report; the global
    generators start from it."""
    value = _test_seed(request)
    request.node.user_properties.append(("seed", value))
    random.seed(value)
    torch.manual_seed(value)
    numpy.random.seed(value)
    return value


@pytest.fixture
def seed(_seeded) -> int:
    """The test's random seed: fixed per test id unless asked otherwise (see the module docstring)."""
    return _seeded


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for name, value in item.user_properties:
            if name == "seed":
                report.sections.append(("seed", f"seed = {value} (rerun with MIXBIT_SEED={value})"))
    return report
