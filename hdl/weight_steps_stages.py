"""Stages 2 to 4 of a column's weight front end (:class:`hdl.weight_steps.ColumnSteps`), and their handshake.

Stage 2 cuts the emitted step into one code per lane (:class:`CodeCut`), stage 3
decodes each code into its radix-4 digits (:class:`CodeDecode`), stage 4 turns each
digit into a lane select with the group sign folded in (:class:`LaneSelects`).
:class:`StageValids` holds the stages' valid flags and their take enables.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import family
from arch.pe_array_config import PeArrayConfig

from .decoder import decode_terms
from .replica import REPLICA_ATTR
from .weight_steps_common import (
    booth_bits,
    decoded_layout,
    flag_names,
    held_layout,
    lane_flags,
    mark_control,
    neg_halves,
    split_layout,
    step_layout,
)

__all__ = ["StageValids", "CodeCut", "CodeDecode", "LaneSelects"]


def _flags_port(config: PeArrayConfig) -> In:
    """The port of each lane's family flags (:func:`hdl.weight_steps_common.flag_names`), ``cols * lanes``."""
    return In(data.ArrayLayout(len(flag_names(config)), config.cols * config.lanes))


class StageValids(wiring.Component):
    """The valid flags of the registers ``held``, ``split``, ``decoded`` and the output, and their take enables.

    Each stage takes a step only into an empty register, so no ready signal ripples
    back through the stages; a stage passes one step per two cycles. ``held`` takes a
    step at the clock edge after an ``emit`` (``load``); ``split``, ``decoded`` and the
    output take their predecessor's step at a clock edge with ``take_held``,
    ``take_split``, ``take_decoded`` high (registers: the predecessor holds a step and
    the register is empty, as of that cycle). The output's step leaves at a clock edge
    with ``out_valid & out_ready``: the output is a stream whose ``valid`` is
    ``out_valid``, latency 4 cycles from ``emit`` at the least. After reset all
    registers are empty.

    Parameters
    ----------
    replicated : bool
        Mark the registers as replicas.

    Members
    -------
    emit : In(1)
        A step leaves the window at this clock edge.
    out_ready : In(1)
        The output stream's ``ready``.
    load, take_held, take_split, take_decoded : Out(1)
        The take enables of ``held``, ``split``, ``decoded`` and the output.
    out_valid : Out(1)
        The output holds a step.
    busy_next : Out(1)
        After this clock edge ``held`` and ``split`` both hold a step (no emit may be decided).
    """

    def __init__(self, replicated: bool = False):
        self.replicated = replicated
        super().__init__({
            "emit": In(1), "out_ready": In(1),
            "load": Out(1), "take_held": Out(1), "take_split": Out(1), "take_decoded": Out(1),
            "out_valid": Out(1), "busy_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        emit_d, held_valid, split_valid, decoded_valid = Signal(), Signal(), Signal(), Signal()
        out_valid = Signal(name="out_valid")
        take_held, take_split, take_decoded = Signal(), Signal(), Signal()
        mark_control(self.replicated, emit_d, held_valid, split_valid, decoded_valid, take_held, take_split,
                     take_decoded, out_valid)
        m.d.sync += emit_d.eq(self.emit)
        # A register fills when it takes the step before it and empties when its own is
        # taken; each take enable is registered from the next valid flags.
        held_valid_next = emit_d | (held_valid & ~take_held)
        split_valid_next = take_held | (split_valid & ~take_split)
        decoded_valid_next = take_split | (decoded_valid & ~take_decoded)
        out_valid_next = take_decoded | (out_valid & ~self.out_ready)
        m.d.sync += [
            held_valid.eq(held_valid_next),
            split_valid.eq(split_valid_next),
            decoded_valid.eq(decoded_valid_next),
            out_valid.eq(out_valid_next),
            take_held.eq(held_valid_next & ~split_valid_next),
            take_split.eq(split_valid_next & ~decoded_valid_next),
            take_decoded.eq(decoded_valid_next & ~out_valid_next),
        ]
        m.d.comb += [
            self.load.eq(emit_d), self.take_held.eq(take_held), self.take_split.eq(take_split),
            self.take_decoded.eq(take_decoded), self.out_valid.eq(out_valid),
            self.busy_next.eq(held_valid_next & split_valid_next),
        ]
        return m


class CodeCut(wiring.Component):
    """Stage 2: the emitted step cut into one code per lane (each int code also sign-extended).

    At a clock edge with ``take`` high ``split`` takes ``held``, each lane's code cut by
    the family's code width (an AND-OR over the families: the flags are one-hot, all
    low for a family not built, giving code 0), and ``dt`` takes each column's data
    type, a copy per lane; both hold until the next ``take`` (latency 1 cycle).

    Members
    -------
    held : In(held_layout(config))
        The emitted step (:class:`hdl.weight_steps_window.CodeWindow`).
    take : In(1)
    flags : In(ArrayLayout(len(flag_names(config)), cols * lanes))
        Each lane's family flags.
    split : Out(split_layout(config))
    dt : Out(ArrayLayout(ArrayLayout(1, lanes), cols))
        Each column's data type bit, per lane.
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        super().__init__({
            "held": In(held_layout(config)), "take": In(1), "flags": _flags_port(config),
            "split": Out(split_layout(config)),
            "dt": Out(data.ArrayLayout(data.ArrayLayout(1, config.lanes), config.cols)),
        })

    def elaborate(self, platform):
        m = Module()
        config, held = self.config, self.held
        cols, lanes, extended_bits = config.cols, config.lanes, booth_bits(config)
        selected = lane_flags(config, self.flags)
        split = Signal(split_layout(config), reset_less=True)
        split_dt = [[Signal(name=f"split_dt{c}_{lane}", reset_less=True, attrs={REPLICA_ATTR: 1})
                     for lane in range(lanes)] for c in range(cols)]    # a copy per lane's decoder
        with m.If(self.take):
            m.d.sync += [lane_dt.eq(held.dt[c]) for c in range(cols) for lane_dt in split_dt[c]]
            m.d.sync += [split.sg.eq(held.sg), split.sq.eq(held.sq),
                         split.last_group.eq(held.last_group), split.last_tile.eq(held.last_tile)]
            # Each lane's code: an AND-OR over the families (the flags are one-hot).
            for c in range(cols):
                for lane in range(lanes):
                    flags, codes, extended = selected[c][lane], [], []
                    for name in config.families:
                        bits = family(name).bits
                        code = held.codes[c][lane * bits:(lane + 1) * bits]
                        codes.append(code & flags[name].replicate(bits))
                        if family(name).kind == "int":
                            extended.append(code.as_signed() & flags[name].replicate(extended_bits))
                    m.d.sync += split.codes[c][lane].eq(functools.reduce(operator.or_, codes))
                    if extended:
                        m.d.sync += split.extended[c][lane].eq(functools.reduce(operator.or_, extended))
        m.d.comb += self.split.eq(split)
        m.d.comb += [self.dt[c][lane].eq(split_dt[c][lane]) for c in range(cols) for lane in range(lanes)]
        return m


class CodeDecode(wiring.Component):
    """Stage 3's logic: every lane's code decoded into its radix-4 digits (:func:`hdl.decoder.decode_terms`).

    Combinational (latency 0): ``digits`` are valid in the cycle ``split`` and ``dt``
    are; :class:`LaneSelects` registers them. A family not built (all flags low)
    gives all-zero digits.

    Members
    -------
    split : In(split_layout(config))
    dt : In(ArrayLayout(ArrayLayout(1, lanes), cols))
        :class:`CodeCut`'s outputs.
    flags : In(ArrayLayout(len(flag_names(config)), cols * lanes))
        Each lane's family flags.
    digits : Out(ArrayLayout(ArrayLayout(ArrayLayout(term_layout(shift_bits), terms), lanes), cols))
        Each column's and lane's digits (the ``digits`` field of :func:`hdl.weight_steps_common.decoded_layout`).
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        super().__init__({
            "split": In(split_layout(config)),
            "dt": In(data.ArrayLayout(data.ArrayLayout(1, config.lanes), config.cols)),
            "flags": _flags_port(config),
            "digits": Out(decoded_layout(config)["digits"].shape),
        })

    def elaborate(self, platform):
        m = Module()
        config, split = self.config, self.split
        int_built = booth_bits(config) > 0
        selected = lane_flags(config, self.flags)
        for c in range(config.cols):
            for lane in range(config.lanes):
                # The flags stand for the family ID, and the int codes come sign-extended.
                terms = decode_terms(m, config.families, None, split.codes[c][lane], self.dt[c][lane],
                                     extended=split.extended[c][lane] if int_built else None,
                                     selected=selected[c][lane], int_selected=selected[c][lane]["int"])
                m.d.comb += self.digits[c].terms[lane].eq(terms)
        return m


class LaneSelects(wiring.Component):
    """Stage 3's register and stage 4: each digit as a lane select (group sign folded in), negative counts.

    At a clock edge with ``take_split`` high ``decoded`` takes :class:`CodeDecode`'s
    digits and ``split``'s group sign, scale and last flags (latency 1 cycle); at a
    clock edge with ``take_decoded`` high ``payload`` takes the step made of
    ``decoded`` (see :func:`hdl.weight_steps_common.step_layout`, latency 1 cycle).
    Each holds until its next take. (``decoded`` is a register here and not an output
    of :class:`CodeDecode`: yosys stops at the init value of a register port whose bits
    are constant, as some digits' are, once the design is flattened.)

    Members
    -------
    digits : In(decoded_layout(config)["digits"].shape)
        :class:`CodeDecode`'s digits.
    split : In(split_layout(config))
        :class:`CodeCut`'s step (its group sign, scale and last flags).
    take_split, take_decoded : In(1)
    payload : Out(step_layout(config))
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        super().__init__({
            "digits": In(decoded_layout(config)["digits"].shape), "split": In(split_layout(config)),
            "take_split": In(1), "take_decoded": In(1), "payload": Out(step_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        config, split = self.config, self.split
        decoded = Signal(decoded_layout(config), reset_less=True)
        with m.If(self.take_split):
            m.d.sync += [
                decoded.sg.eq(split.sg),
                decoded.last_group.eq(split.last_group),
                decoded.last_tile.eq(split.last_tile),
            ]
        for c in range(config.cols):
            for lane in range(config.lanes):
                with m.If(self.take_split):
                    m.d.sync += decoded.digits[c].terms[lane].eq(self.digits[c].terms[lane])
            with m.If(self.take_split):
                m.d.sync += decoded.sq[c].eq(split.sq[c])
        step = Signal(step_layout(config))  # not "selects", the instance's own name (Verilator: VARHIDDEN)
        for c in range(config.cols):
            for t in range(config.terms):
                negatives = []
                for lane in range(config.lanes):
                    term, sel = decoded.digits[c].terms[lane][t], step.sel[c][t][lane]
                    # Separate signals: summing fields of `step` into `step` is a false
                    # combinational loop for Verilator.
                    neg = Signal(name=f"neg{c}_{t}_{lane}")
                    m.d.comb += neg.eq(term.nonzero & (term.negative ^ decoded.sg[c]))
                    for shift in range(config.max_shift + 1):
                        m.d.comb += sel.e[shift].eq(term.nonzero & (term.shift == shift))
                    m.d.comb += sel.neg.eq(neg)
                    negatives.append(neg)
                for half, lanes_of_half in enumerate(neg_halves(config.lanes)):
                    m.d.comb += step.neg_halves[c][t][half].eq(sum(negatives[lane] for lane in lanes_of_half))
            m.d.comb += step.sq[c].eq(decoded.sq[c])
        m.d.comb += [
            step.last_group.eq(decoded.last_group),
            step.last_tile.eq(decoded.last_tile),
        ]
        with m.If(self.take_decoded):
            m.d.sync += self.payload.eq(step)
        return m
