"""A board's core clock from the FPGA's PLL: divider settings for a target frequency, and
the clock domain they make.

:func:`pll_setting` is pure Python: it searches the primitive's dividers for the output
nearest the target within the documented ranges (:data:`PLLS`). :func:`add_pll_domain`
instantiates the primitive on a board's clock pin and drives the ``sync`` domain from
its output, held in reset until the PLL locks.

* ECP5 ``EHXPLLL`` (feedback from CLKOP): ``out = in / CLKI_DIV * CLKFB_DIV``, VCO =
  ``out * CLKOP_DIV``. Ranges of the ECP5 data sheet's sysCLOCK PLL timing (FPGA-DS-02012;
  TN-02200 describes the dividers; prjtrellis' ecppll searches the same): input 8..400
  MHz, phase detector 3.125..400 MHz, VCO 400..800 MHz, output 3.125..400 MHz; CLKI_DIV
  and CLKOP_DIV 1..128, CLKFB_DIV 1..80. The loop-filter attributes are Diamond's defaults.
* iCE40 ``SB_PLL40_PAD`` (SIMPLE feedback): ``out = in / (DIVR + 1) * (DIVF + 1) / 2**DIVQ``,
  VCO = ``out * 2**DIVQ``. Ranges of the iCE40 UltraPlus data sheet and TN1251 (iCE40
  sysCLOCK PLL Design and Usage Guide): input and phase detector 10..133 MHz, VCO
  533..1066 MHz, output 16..275 MHz; DIVR 0..15, DIVF 0..127, DIVQ 1..6 (icestorm's
  icepll searches the same). FILTER_RANGE follows the phase detector's frequency as
  icepll's table sets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from amaranth import ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.hdl import Instance
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

__all__ = ["PLLS", "PllRange", "PllSetting", "pll_settings", "pll_setting", "add_pll_domain", "TOLERANCE"]

MHZ = 1_000_000
#: The farthest a PLL clock may be from the asked frequency (the dividers are integers).
TOLERANCE = Fraction(1, 100)


@dataclass(frozen=True)
class PllRange:
    """A PLL primitive's documented frequency ranges in MHz, low..high inclusive."""

    input: tuple[Fraction, Fraction]
    pfd: tuple[Fraction, Fraction]           # the phase detector's input
    vco: tuple[Fraction, Fraction]
    output: tuple[Fraction, Fraction]

    def holds(self, name: str, hz: Fraction) -> bool:
        low, high = getattr(self, name)
        return low * MHZ <= hz <= high * MHZ


def _mhz(low, high) -> tuple[Fraction, Fraction]:
    return Fraction(low), Fraction(high)


#: Each supported primitive's ranges (the module docstring says where they come from).
PLLS = {
    "EHXPLLL": PllRange(input=_mhz(8, 400), pfd=_mhz("3.125", 400), vco=_mhz(400, 800), output=_mhz("3.125", 400)),
    "SB_PLL40_PAD": PllRange(input=_mhz(10, 133), pfd=_mhz(10, 133), vco=_mhz(533, 1066), output=_mhz(16, 275)),
}
#: SB_PLL40's FILTER_RANGE by phase-detector frequency: (below this many MHz, value).
_ICE40_FILTER = ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5))


@dataclass(frozen=True)
class PllSetting:
    """One divider setting of a PLL primitive and the frequencies it makes (Hz, exact)."""

    primitive: str
    in_hz: int
    out_hz: Fraction
    pfd_hz: Fraction
    vco_hz: Fraction
    #: The primitive's divider parameters by name, as its instance takes them.
    dividers: dict

    @property
    def clk_hz(self) -> int:
        """The output clock in whole Hz (what the accelerator's ``clk_hz`` gets)."""
        return round(self.out_hz)

    def report(self) -> dict:
        """The setting as JSON values (frequencies in MHz, to the Hz)."""
        def mhz(hz):
            return round(float(hz) / MHZ, 6)

        return {"primitive": self.primitive, "in_mhz": mhz(self.in_hz), "out_mhz": mhz(self.out_hz),
                "pfd_mhz": mhz(self.pfd_hz), "vco_mhz": mhz(self.vco_hz), **self.dividers}


def _check_primitive(primitive: str, in_hz) -> PllRange:
    if primitive not in PLLS:
        raise ValueError(f"primitive must be one of {', '.join(PLLS)}, not {primitive!r}")
    limits = PLLS[primitive]
    if isinstance(in_hz, bool) or not isinstance(in_hz, int) or not limits.holds("input", Fraction(in_hz)):
        raise ValueError(f"in_hz must be an integer in {limits.input[0]}..{limits.input[1]} MHz for {primitive}, "
                         f"not {in_hz!r}")
    return limits


def pll_settings(primitive: str, in_hz: int):
    """Every setting of ``primitive`` from an ``in_hz`` clock whose frequencies are in range.

    For each output frequency one output divider is given: the one that puts the VCO
    nearest the middle of its range.
    """
    limits = _check_primitive(primitive, in_hz)
    vco_mid = (limits.vco[0] + limits.vco[1]) / 2 * MHZ
    if primitive == "EHXPLLL":
        for clki in range(1, 129):
            pfd = Fraction(in_hz, clki)
            if not limits.holds("pfd", pfd):
                continue
            for clkfb in range(1, 81):
                out = pfd * clkfb
                low = max(1, math.ceil(limits.vco[0] * MHZ / out))
                high = min(128, math.floor(limits.vco[1] * MHZ / out))
                if low > high or not limits.holds("output", out):
                    continue
                op = min(range(low, high + 1), key=lambda op: abs(out * op - vco_mid))
                yield PllSetting(primitive, in_hz, out, pfd, out * op,
                                 {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": op})
    else:
        for divr in range(16):
            pfd = Fraction(in_hz, divr + 1)
            if not limits.holds("pfd", pfd):
                continue
            filter_range = next((value for below, value in _ICE40_FILTER if pfd < below * MHZ), 6)
            for divf in range(128):
                vco = pfd * (divf + 1)
                if not limits.holds("vco", vco):
                    continue
                for divq in range(1, 7):
                    out = vco / 2 ** divq
                    if limits.holds("output", out):
                        yield PllSetting(primitive, in_hz, out, pfd, vco,
                                         {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range})


def pll_setting(primitive: str, in_hz: int, out_mhz) -> PllSetting:
    """The setting of ``primitive`` whose output is nearest ``out_mhz`` MHz from ``in_hz``.

    Ties go to the highest phase-detector frequency, then the VCO nearest mid-range.
    ValueError, naming the nearest outputs, when none is within :data:`TOLERANCE`.
    """
    if isinstance(out_mhz, bool) or not isinstance(out_mhz, (int, float, Fraction)) or not math.isfinite(out_mhz) \
            or out_mhz <= 0:
        raise ValueError(f"out_mhz must be a positive number of MHz, not {out_mhz!r}")
    target = Fraction(out_mhz) * MHZ
    limits = _check_primitive(primitive, in_hz)
    vco_mid = (limits.vco[0] + limits.vco[1]) / 2 * MHZ
    settings = list(pll_settings(primitive, in_hz))
    best = min(settings, key=lambda s: (abs(s.out_hz - target), -s.pfd_hz, abs(s.vco_hz - vco_mid)))
    if abs(best.out_hz - target) > TOLERANCE * target:
        below = max((s.out_hz for s in settings if s.out_hz < target), default=None)
        above = min((s.out_hz for s in settings if s.out_hz > target), default=None)
        nearest = " or ".join(f"{float(f) / MHZ:g}" for f in (below, above) if f is not None)
        raise ValueError(f"no {primitive} setting makes {float(target) / MHZ:g} MHz from {in_hz / MHZ:g} MHz "
                         f"within {float(TOLERANCE):.0%} (nearest: {nearest} MHz)")
    return best


def add_pll_domain(m: Module, setting: PllSetting, pin, platform) -> Signal:
    """Define the ``sync`` domain in ``m`` (the top module) on the output of ``setting``'s
    PLL, fed by the board's clock pin; return the PLL's output clock.

    ``pin`` is the clock resource requested raw (``platform.request(name, 0, dir="-")``).
    The domain stays in reset until the PLL reports lock (ECP5: through the global
    set/reset, as amaranth's default ECP5 domain does; iCE40: a synchronous reset that
    also waits out the block RAMs' first microseconds after configuration, as amaranth's
    default iCE40 domain does). The output net gets a clock constraint of the PLL's
    frequency; nextpnr derives the same one from the pin's, and warns if they differ.
    """
    s = setting
    clk, locked = Signal(name="pll_clk"), Signal(name="pll_locked")
    if s.primitive == "EHXPLLL":
        m.submodules.pll_clk_buf = clk_buf = io.Buffer("i", pin)
        d = s.dividers
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_FEEDBK_PATH="CLKOP", p_CLKI_DIV=d["CLKI_DIV"], p_CLKFB_DIV=d["CLKFB_DIV"],
            p_CLKOP_DIV=d["CLKOP_DIV"], p_CLKOP_CPHASE=d["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
            i_CLKI=clk_buf.i, i_CLKFB=clk, o_CLKOP=clk, o_LOCK=locked,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
            i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        gsr = Signal(2, name="pll_gsr")           # the GSR is held (low) until two clocks after lock
        m.submodules.pll_gsr0 = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clk, i_D=locked, o_Q=gsr[0])
        m.submodules.pll_gsr1 = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clk, i_D=gsr[0], o_Q=gsr[1])
        m.submodules.pll_sgsr = Instance("SGSR", i_CLK=clk, i_GSR=gsr[1])
        m.domains.sync = ClockDomain("sync", reset_less=True)
    else:
        d = s.dividers
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
            p_DIVR=d["DIVR"], p_DIVF=d["DIVF"], p_DIVQ=d["DIVQ"], p_FILTER_RANGE=d["FILTER_RANGE"],
            i_PACKAGEPIN=pin.io, o_PLLOUTGLOBAL=clk, o_LOCK=locked, i_RESETB=1, i_BYPASS=0)
        m.domains.pll_por = ClockDomain("pll_por", reset_less=True, local=True)
        m.d.comb += ClockSignal("pll_por").eq(clk)
        locked_sync = Signal(name="pll_locked_sync")
        m.submodules.pll_lock_sync = FFSynchronizer(locked, locked_sync, o_domain="pll_por")
        delay = int(15e-6 * s.clk_hz)         # BRAMs read zero for ~3 us after configuration
        timer = Signal(range(delay + 1), name="pll_por_timer")
        ready = Signal(name="pll_ready")
        with m.If(~locked_sync):
            m.d.pll_por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == delay):
            m.d.pll_por += ready.eq(1)
        with m.Else():
            m.d.pll_por += timer.eq(timer + 1)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ResetSignal("sync").eq(~ready)
    m.d.comb += ClockSignal("sync").eq(clk)
    platform.add_clock_constraint(clk, s.clk_hz)
    return clk
