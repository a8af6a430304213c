"""The all-family baseline: a bit-parallel int8 x int8 array with the PE array's streams and protocol.

The competitor of BitMoD's array that runs the same workloads: every lane multiplies
its int8 activation by a whole weight in one cycle, for any of the built families
(chosen per job by ``family``, like :class:`hdl.pe_array.PeArray`). Per column the
weight front end :class:`hdl.parallel_steps.ParallelSteps` gives one step of
``lanes`` codes per cycle; each code is decoded with its group's ``dt`` and ``sg``
(``arch.bitmod.code_values``) and multiplied by the activation:

* ``multiplier="dsp"``: the decoder gives the value ``v`` (``|v| <= max_abs_value``,
  128 with int8: 9 bits signed) and the lane computes ``a * v`` with ``*`` (one
  MULT18X18D on ECP5);
* ``multiplier="lut"``: the decoder of :func:`hdl.decoder.decode_terms` gives the
  weight's radix-4 digits (Booth digits for the int families, two digits of
  ``{0, +-1, +-2, +-4}`` for fp), each a partial product that the lane selects
  (``a``, ``2a``, ``4a``) and inverts, and the lane adds them (:class:`hdl.parallel_array.ParallelPE`).

The decoders sit once per column and are shared by the rows, as in the int4 baseline.
Group accumulation, bit-serial dequantization, activation buffer and result stream
are the int4 baseline's (:func:`hdl.parallel_array.parallel_results`).
"""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring

from arch.bitmod import FAMILY_IDS, code_values, family, max_abs_value, signed_bits
from arch.pe_array_config import PeArrayConfig

from .array_io import JobControl, array_members
from .decoder import decode_terms
from .parallel_array import ParallelPE, check_multiplier, neg_weight, parallel_results
from .parallel_steps import step_sequencer
from .pe import lane_select_layout
from .replica import REPLICA_ATTR

__all__ = ["family_parallel_config", "decode_value", "FamilyParallelArray"]


def family_parallel_config(config: PeArrayConfig) -> PeArrayConfig:
    """Check that ``config`` suits the all-family bit-parallel array; return it."""
    group_cycles = config.group_size // config.lanes
    if group_cycles <= config.scale_bits:
        raise ValueError(f"group_size={config.group_size} with lanes={config.lanes} gives groups of "
                         f"{group_cycles} cycles, too few for the bit-serial dequantization of "
                         f"scale_bits={config.scale_bits}")
    return config


def decode_value(m: Module, families, selected: dict, code, dt, bits: int) -> Signal:
    """The value ``v(code, dt)`` of the family whose flag in ``selected`` is high, ``bits`` signed (0 if none).

    Int codes are sign-extended; fp codes are looked up in ``arch.bitmod.code_values``.
    """
    candidates = []
    for name in families:
        fam = family(name)
        value = Signal(signed(bits), name=f"{name}_value")
        if fam.kind == "int":
            m.d.comb += value.eq(code[:fam.bits].as_signed())
        else:
            with m.Switch(Cat(code[:fam.bits], dt)):
                for dt_value in (0, 1):
                    for code_value, v in enumerate(code_values(name, dt_value)):
                        with m.Case(code_value | dt_value << fam.bits):
                            m.d.comb += value.eq(v)
        candidates.append(value.as_unsigned() & selected[name].replicate(bits))
    decoded = Signal(signed(bits))
    m.d.comb += decoded.eq(functools.reduce(operator.or_, candidates))
    return decoded


class FamilyParallelArray(wiring.Component):
    """The bit-parallel all-family array with :class:`hdl.pe_array.PeArray`'s members.

    ``family``, ``groups``, ``col_tiles``, ``act``, ``w`` and ``o`` as in
    :class:`hdl.pe_array.PeArray`; a family ID that is not built in computes with zero
    weights. One step of ``lanes`` weights per column per cycle, as far as the weight
    stream (one word per column per cycle) delivers them.
    """

    def __init__(self, config: PeArrayConfig, multiplier: str = "lut"):
        self.config = family_parallel_config(config)
        check_multiplier(multiplier)
        self.multiplier = multiplier
        self.max_abs = max_abs_value(config.families)
        super().__init__(array_members(config))

    def elaborate(self, platform):
        m = Module()
        config = self.config
        rows, cols, lanes, terms = config.rows, config.cols, config.lanes, config.terms
        m.submodules.job = job = JobControl(config, self.act, self.family, self.groups, self.col_tiles)
        front, drained = step_sequencer(m, config, self.w, job)

        # ---- decoders (a cycle), then a bus register that meets the activations ------------------
        # The family flags (one-hot, all low for a family not built), a registered copy per column.
        int_names = [name for name in config.families if family(name).kind == "int"]
        booth_bits = 2 * max((family(name).terms for name in int_names), default=0)
        column_flags = []
        for c in range(cols):
            flags = {name: Signal(name=f"is_{name}_c{c}", attrs={REPLICA_ATTR: 1}) for name in config.families}
            flags["int"] = Signal(name=f"is_int_c{c}", attrs={REPLICA_ATTR: 1})
            m.d.sync += [flags[name].eq(job.family_id == FAMILY_IDS[name]) for name in config.families]
            m.d.sync += flags["int"].eq(Cat(job.family_id == FAMILY_IDS[name] for name in int_names).any())
            column_flags.append(flags)
        value_bits = signed_bits(self.max_abs)
        sel_layout = data.ArrayLayout(data.ArrayLayout(lane_select_layout(config.max_shift), terms), lanes)
        values = [Signal(data.ArrayLayout(signed(value_bits), lanes), name=f"v{c}") for c in range(cols)]
        selects = [Signal(sel_layout, name=f"sel{c}") for c in range(cols)]
        step_sq = [Signal(config.scale_bits, name=f"step_sq{c}") for c in range(cols)]
        bus_v, bus_sel, bus_sq = ([Signal.like(s, name=f"bus_{name}{c}") for c, s in enumerate(signals)]
                                  for name, signals in (("v", values), ("sel", selects), ("sq", step_sq)))
        # The column's count of inverted partial products, from the registered selects (its own cycle).
        bus_count = [Signal(range(neg_weight(terms) * lanes + 1), name=f"bus_count{c}") for c in range(cols)]
        for c in range(cols):
            for lane in range(lanes):
                code, dt, sg = front.codes[c][lane], front.dt[c], front.sg[c]
                if self.multiplier == "dsp":
                    value = decode_value(m, config.families, column_flags[c], code, dt, value_bits)
                    m.d.sync += values[c][lane].eq(Mux(sg, -value, value))
                    continue
                # The int code sign-extended for the Booth recoder (an AND-OR over the int families).
                extended = None
                if int_names:
                    extended = Signal(booth_bits, name=f"extended{c}_{lane}")
                    m.d.comb += extended.eq(functools.reduce(operator.or_, (
                        code[:family(name).bits].as_signed() & column_flags[c][name].replicate(booth_bits)
                        for name in int_names)))
                digits = decode_terms(m, config.families, None, code, dt, extended=extended,
                                      selected=column_flags[c], int_selected=column_flags[c]["int"])
                for t in range(terms):
                    digit, sel = digits[t], selects[c][lane][t]
                    m.d.sync += [sel.e[shift].eq(digit.nonzero & (digit.shift == shift))
                                 for shift in range(config.max_shift + 1)]
                    m.d.sync += sel.neg.eq(digit.nonzero & (digit.negative ^ sg))
            if self.multiplier == "lut":
                m.d.sync += bus_count[c].eq(sum(selects[c][lane][t].neg << (2 * t)
                                                for lane in range(lanes) for t in range(terms)))
            m.d.sync += [step_sq[c].eq(front.sq[c]), bus_v[c].eq(values[c]), bus_sel[c].eq(selects[c]),
                         bus_sq[c].eq(step_sq[c])]
        step_valid, step_last, step_tile_end = Signal(), Signal(), Signal()
        bus_valid, bus_last, bus_tile_end = Signal(), Signal(), Signal(name="bus_tile_end")
        m.d.sync += [
            step_valid.eq(front.emit), step_last.eq(front.emit & front.last_step),
            step_tile_end.eq(front.emit & front.tile_end),
            bus_valid.eq(step_valid), bus_last.eq(step_last), bus_tile_end.eq(step_tile_end),
        ]

        # ---- PEs, dequantization, results ------------------------------------------------------
        pes = [[ParallelPE(lanes, config.group_sum_bits, self.multiplier, max_abs=self.max_abs, terms=terms,
                           max_shift=config.max_shift) for _ in range(cols)] for _ in range(rows)]
        full, copy = parallel_results(m, config, self.o, job, pes, bus_sq, bus_tile_end, lambda r, c, pe: [
            pe.a.eq(job.activations[r][0]), pe.v.eq(bus_v[c]), pe.sel.eq(bus_sel[c]),
            pe.neg_count.eq(bus_count[c]), pe.valid.eq(bus_valid), pe.last.eq(bus_last)])
        drained(full, copy)
        return m
