"""The hardware a model run's latency is projected onto (``mixbit run-model``'s summary):
the ULX3S board build at its PLL clock and UART baud, then the large ECP5 arrays."""

from __future__ import annotations

from workloads.report import ARRAY_TARGETS, Target

from .boards import BOARDS, board_clock, board_params

__all__ = ["board_target", "model_targets"]


def board_target(name: str) -> Target:
    """A board build as a projection target: its PE array, its clock and its link."""
    clk_hz, baud = board_clock(name)
    params = board_params(BOARDS[name], {})
    pe = {k.removeprefix("pe_"): v for k, v in params.items() if k.startswith("pe_")}
    link = {"baud": baud, **{k: params[k] for k in ("max_payload", "weight_beats", "result_beats")}}
    return Target(f"{name} build (mixbit build --board {name})", pe, clk_hz / 1e6, "the build's PLL clock", link)


def model_targets() -> tuple[Target, ...]:
    """The ULX3S-85F build, then :data:`workloads.report.ARRAY_TARGETS`."""
    return (board_target("ulx3s-85f"), *ARRAY_TARGETS)
