"""The registry of generatable designs: name, parameters, builder and regression."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from amaranth.lib import wiring

from hdl.decoder import WeightDecoder, decoder_widths

from .params import FamiliesParam, Param, resolve_params

__all__ = ["Design", "DESIGNS", "get_design"]


@dataclass(frozen=True)
class Design:
    """A design that ``mixbit generate/synth/sim`` can build.

    Attributes
    ----------
    name : str
        Command-line name; the Verilog top module is ``mixbit_<name>``.
    summary : str
        One line for ``mixbit list``.
    params : tuple of Param
        Generator parameters with defaults and ranges.
    build : callable
        ``build(params) -> wiring.Component``.
    widths : callable
        ``widths(params) -> dict`` of derived widths, for manifests and docs.
    regression : str
        Module holding the design's cocotb tests.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[[dict], wiring.Component]
    widths: Callable[[dict], dict]
    regression: str

    @property
    def top(self) -> str:
        """Name of the generated Verilog top module."""
        return f"mixbit_{self.name}"

    def resolve(self, given: Mapping[str, object] = {}) -> dict[str, object]:
        """Validated parameters: defaults overridden by ``given``."""
        return resolve_params(self.name, self.params, given)


DESIGNS: dict[str, Design] = {
    design.name: design
    for design in [
        Design(
            name="decoder",
            summary="BitMoD mixed-datatype weight decoder: code word -> signed power-of-two terms",
            params=(FamiliesParam("families", help="weight families built in (run-time selectable)"),),
            build=lambda p: WeightDecoder(p["families"]),
            widths=lambda p: decoder_widths(p["families"]),
            regression="sim.tb_decoder",
        ),
    ]
}


def get_design(name: str) -> Design:
    """The design called ``name``; ValueError naming the known designs otherwise."""
    try:
        return DESIGNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown design {name!r} (known: {', '.join(DESIGNS)})") from None
