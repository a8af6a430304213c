"""The PE array's step sequencer: each decoded step played to the columns as one digit per cycle.

A step of the weight front end (:func:`hdl.weight_steps.step_layout`) holds, for every
column, the lane selects of each digit index ``t`` of ``lanes`` weights. The PEs take
one digit index per cycle (bit-serial), so a step stays for ``T`` cycles, ``T`` the
digits per weight of the job's family, and the next step follows without a gap.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import FAMILY_ID_BITS, FAMILY_IDS, family
from arch.pe_array_config import PeArrayConfig

from .array_io import delay_line
from .fp16_align import ALIGN_LATENCY
from .pe import lane_select_layout, neg_count_bits
from .replica import replicas
from .weight_steps import step_layout

__all__ = ["DigitBus"]


class DigitBus(wiring.Component):
    """Steps in, the digit bus out: each step as ``T`` digits, one per cycle, to every column.

    A step taken in cycle ``n`` is on the bus as digit ``t`` (``t = 0..T-1``, ``T`` the
    digits of the job's family) in cycle ``n + 2 + t`` (``n + 1 + ALIGN_LATENCY + t`` in FP16
    builds, whose activations pass an aligner: ``hdl.fp16_align.ALIGN_LATENCY``), one step
    every ``T`` cycles with no gap between steps. The bus is registered, with a copy of its
    control per column (``t``, ``valid``, ``last``, ``tile_end`` are arrays of equal
    values, each column's placed next to it). Bus data (``sel``, ``neg_count``, ``sq``)
    has no reset: it counts only while ``valid`` is high.

    Members
    -------
    steps : In(stream(step_layout(config)))
        The front end's steps. ``steps.ready`` is high only in the cycle a step is
        taken: ``valid``, not ``loading``, no step held or the held one on its last
        digit, and, for a tile's last step, ``results_full`` low and the previous tile
        no longer closing (its last step taken, its results not yet copied): a tile ends
        only when the previous one has left the accumulators and the result registers;
        its other steps overlap the previous tile's dequantization and result beats.
    family : In(3)
        The job's family (``arch.bitmod.FAMILY_IDS``); its ``T`` is registered in every
        cycle, so it must hold from a cycle before the job's first step to its last.
    loading : In(1)
        The activations are being loaded: no step is taken.
    results_full : In(1)
        The result drain still holds a tile (see ``steps``).
    tile_copied : In(1)
        The drain copied a tile's results: the tile no longer closes from the next
        cycle on (this wins over a tile's last step taken in the same cycle).
    read_enable : Out(1)
        High in the cycle a step is taken (``steps.ready``): read its activations.
    read_addr : Out(range(act_depth))
        The activation address of the step being taken: counts the steps of a tile
        from 0, back to 0 after the tile's last step.
    read_addr_next : Out(range(act_depth))
        FP16 builds only: ``read_addr``'s value in the next cycle (the activation
        reader's alignment stage reads a cycle ahead with it).
    sel : Out(cols x lanes x lane_select_layout(max_shift))
        The bus: column ``c``'s lane selects of the current digit.
    neg_count : Out(cols x neg_count_bits(lanes))
        Column ``c``'s count of negative lanes of the current digit.
    sq : Out(cols x scale_bits)
        Column ``c``'s group scale of the current step.
    t : Out(cols x range(terms))
        The digit's index (column ``c``'s copy).
    valid : Out(cols)
        The bus holds a digit (column ``c``'s copy).
    last : Out(cols)
        The digit is its group's last (column ``c``'s copy; with ``valid``).
    tile_end : Out(cols)
        The digit is its tile's last (column ``c``'s copy; with ``valid``).
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        cols, lanes = config.cols, config.lanes
        members = {"read_addr_next": Out(range(config.act_depth))} if config.fp16 else {}
        super().__init__({
            **members,
            "steps": In(stream.Signature(step_layout(config))),
            "family": In(FAMILY_ID_BITS),
            "loading": In(1),
            "results_full": In(1),
            "tile_copied": In(1),
            "read_enable": Out(1),
            "read_addr": Out(range(config.act_depth)),
            "sel": Out(data.ArrayLayout(data.ArrayLayout(lane_select_layout(config.max_shift), lanes), cols)),
            "neg_count": Out(data.ArrayLayout(neg_count_bits(lanes), cols)),
            "sq": Out(data.ArrayLayout(config.scale_bits, cols)),
            "t": Out(data.ArrayLayout(range(config.terms), cols)),
            "valid": Out(cols),
            "last": Out(cols),
            "tile_end": Out(cols),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        cols, lanes = config.cols, config.lanes
        last_term = Signal(range(config.terms))     # terms - 1 of the job's family, registered
        with m.Switch(self.family):
            for name in config.families:
                with m.Case(FAMILY_IDS[name]):
                    m.d.sync += last_term.eq(family(name).terms - 1)
            with m.Default():
                m.d.sync += last_term.eq(family(config.families[0]).terms - 1)

        # ---- step sequencer: T cycles per step, one digit index per cycle ----------------------
        payload = self.steps.payload
        step = Signal(payload.shape(), name="step", reset_less=True)    # data: `holding` says when it counts
        holding = Signal()
        digit = Signal(range(config.terms))
        closing = Signal()                       # a tile's last step is in, its results not yet copied
        last_digit = digit == last_term
        free = Signal(init=1)                    # registered ~holding | last_digit: a step may come
        accept = Signal()
        m.d.comb += [
            accept.eq(self.steps.valid & ~self.loading & free
                      & ~(payload.last_tile & (closing | self.results_full))),
            self.steps.ready.eq(accept),
            self.read_enable.eq(accept),
        ]
        # `step` loads whenever a step may come (`holding` says whether it counts); its
        # clock enable is `free`, a flip-flop copied per column.
        free_next = Signal(init=1)
        m.d.comb += free_next.eq(Mux(accept, 0, Mux(holding, Mux(last_digit, 1, digit + 1 == last_term), free)))
        m.d.sync += free.eq(free_next)
        free_copies = replicas(m, free_next, cols, "free")
        # The step's counts of negative lanes, per column and digit (the front end gives them per half).
        step_neg = [[Signal(neg_count_bits(lanes), name=f"step_neg{c}_{t}", reset_less=True)
                     for t in range(config.terms)] for c in range(cols)]
        for c in range(cols):
            with m.If(free_copies[c]):
                m.d.sync += [step.sel[c].eq(payload.sel[c]), step.sq[c].eq(payload.sq[c])]
                m.d.sync += [step_neg[c][t].eq(halves[0] + halves[1])
                             for t, halves in enumerate(payload.neg_halves[c])]
        with m.If(free):
            m.d.sync += [step.last_group.eq(payload.last_group), step.last_tile.eq(payload.last_tile)]
        with m.If(accept):
            m.d.sync += [holding.eq(1), self.read_addr.eq(self.read_addr + 1)]
            with m.If(payload.last_tile):
                m.d.sync += [closing.eq(1), self.read_addr.eq(0)]
        with m.Elif(holding & last_digit):
            m.d.sync += holding.eq(0)
        with m.If(self.tile_copied):
            m.d.sync += closing.eq(0)
        if config.fp16:
            m.d.comb += self.read_addr_next.eq(Mux(accept, Mux(payload.last_tile, 0, self.read_addr + 1),
                                                   self.read_addr))
        # The digit index, and a copy of it per column for the column's digit multiplexers.
        digit_next = Signal.like(digit)
        m.d.comb += digit_next.eq(Mux(accept, 0, Mux(holding & ~last_digit, digit + 1, digit)))
        m.d.sync += digit.eq(digit_next)
        digit_copies = replicas(m, digit_next, cols, "digit")

        # ---- the digit bus: data registers without reset, control copied per column -----------
        # (FP16 builds: ALIGN_LATENCY - 1 more registers of each, cycles for the activations' aligner)
        def late(value: Value, name: str, reset_less: bool) -> Value:
            stages = ALIGN_LATENCY - 1 if config.fp16 else 0
            return delay_line(m, value, stages, f"{name}_late", reset_less=reset_less)

        for c in range(cols):
            bus_sel = Signal.like(self.sel[c], name=f"sel{c}", reset_less=True)
            bus_neg = Signal.like(self.neg_count[c], name=f"neg_count{c}", reset_less=True)
            bus_sq = Signal.like(self.sq[c], name=f"bus_sq{c}", reset_less=True)
            m.d.sync += [
                bus_sel.eq(Array(step.sel[c][t] for t in range(config.terms))[digit_copies[c]]),
                bus_neg.eq(Array(step_neg[c])[digit_copies[c]]),
                bus_sq.eq(step.sq[c]),
            ]
            m.d.comb += [self.sel[c].eq(late(bus_sel, f"sel{c}", True)),
                         self.neg_count[c].eq(late(bus_neg, f"neg_count{c}", True)),
                         self.sq[c].eq(late(bus_sq, f"bus_sq{c}", True))]
        for port, name, value, reset_less in (
                (self.t, "bus_t", digit, True), (self.valid, "bus_valid", holding, False),
                (self.last, "bus_last", holding & last_digit & step.last_group, False),
                (self.tile_end, "bus_tile_end", holding & last_digit & step.last_tile, False)):
            m.d.comb += [port[c].eq(late(copy, f"{name}{c}", reset_less)) for c, copy in
                         enumerate(replicas(m, value, cols, name, reset_less=reset_less))]
        return m
