"""The PE array's weight front end: packed words in, one step of decoded digits out.

A beat of the weight stream is word ``w`` of the ``cols`` records of one group (see
``golden.bitmod_pack.weight_beats``). Per group the front end takes the metadata beat
(``dt``, ``sg``, ``sq`` of each column), then appends code words to a per-column bit
window and emits a step whenever the window holds ``lanes`` codes. All columns move in
lockstep; each has its own copy of the control (counters, fill level), so that in a wide
array no control net crosses the columns (:class:`WeightSteps` over one
:class:`ColumnSteps` per column). Later stages cut the window into one code per lane, decode each code into its
radix-4 digits with the group sign ``sg`` folded in, and turn each digit into a lane
select (:func:`hdl.pe.lane_select_layout`) plus the column's count of negative lanes.
"""

from __future__ import annotations

import dataclasses

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import FAMILY_ID_BITS, FAMILY_IDS, WORD_BITS, family, pack_layout
from arch.pe_array_config import PeArrayConfig

from .replica import replicas
from .weight_steps_common import (
    THRESHOLDS,
    constant_shapes,
    mark_control,
    neg_halves,
    step_layout,
    window_steps,
)
from .weight_steps_skid import SkidBuffer
from .weight_steps_stages import CodeCut, CodeDecode, LaneSelects, StageValids
from .weight_steps_window import CodeWindow, WindowControl

__all__ = ["neg_halves", "step_layout", "WeightSteps", "ColumnSteps"]


def _members(config: PeArrayConfig, layout: data.StructLayout, per_column: bool) -> dict:
    """The members of :class:`WeightSteps` and :class:`ColumnSteps` (steps of ``layout``).

    ``per_column``: ``family``, ``groups`` and ``tiles`` are arrays of a copy per column.
    """

    def job(bits):
        return In(data.ArrayLayout(bits, config.cols) if per_column else bits)

    return {
        "words": In(stream.Signature(config.weight_beat_bits)),
        "steps": Out(stream.Signature(layout)),
        "family": job(FAMILY_ID_BITS),
        "groups": job(config.groups_bits),
        "tiles": job(config.tile_count_bits),
        "start": In(1),
    }


class WeightSteps(wiring.Component):
    """Packed weight beats in, decoded steps out (four pipeline stages), for ``config.cols`` columns.

    One :class:`ColumnSteps` per column, each with its own copy of the control: all
    copies take the same decisions in the same cycles (the columns move in lockstep),
    and each column's windows, cuts and decoders see only their own column's control
    registers, so no control net crosses the columns. The copies' control registers
    carry the replica attribute (:mod:`hdl.replica`), or yosys would merge them back.
    Same members as :class:`ColumnSteps`, but ``family``, ``groups`` and ``tiles`` are
    arrays with a copy per column (equal values, registers placed near each column).
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        self.layout = step_layout(config)
        super().__init__(_members(config, self.layout, per_column=True))

    def elaborate(self, platform):
        m = Module()
        cols = self.config.cols
        column_config = dataclasses.replace(self.config, cols=1)
        columns = []
        for c in range(cols):
            column = ColumnSteps(column_config, replicated=cols > 1)
            m.submodules[f"column{c}"] = column
            m.d.comb += [
                column.words.payload.eq(self.words.payload[c * WORD_BITS:(c + 1) * WORD_BITS]),
                column.words.valid.eq(self.words.valid),
                column.steps.ready.eq(self.steps.ready),
                column.family.eq(self.family[c]), column.groups.eq(self.groups[c]),
                column.tiles.eq(self.tiles[c]),
                column.start.eq(self.start),
                self.steps.payload.sel[c].eq(column.steps.payload.sel[0]),
                self.steps.payload.neg_halves[c].eq(column.steps.payload.neg_halves[0]),
                self.steps.payload.sq[c].eq(column.steps.payload.sq[0]),
            ]
            columns.append(column)
        m.d.comb += [
            self.words.ready.eq(columns[0].words.ready),
            self.steps.valid.eq(columns[0].steps.valid),
            self.steps.payload.last_group.eq(columns[0].steps.payload.last_group),
            self.steps.payload.last_tile.eq(columns[0].steps.payload.last_tile),
        ]
        return m


class ColumnSteps(wiring.Component):
    """The front end of the columns of ``config`` under one control (in PeArray: one column).

    Packed weight beats in, decoded steps out, in four pipeline stages: a skid buffer
    (:class:`hdl.weight_steps_skid.SkidBuffer`), the code windows
    (:class:`~hdl.weight_steps_window.WindowControl`, :class:`~hdl.weight_steps_window.CodeWindow`),
    the code cut, the decoders and the lane selects (:class:`~hdl.weight_steps_stages.CodeCut`,
    :class:`~hdl.weight_steps_stages.CodeDecode`, :class:`~hdl.weight_steps_stages.LaneSelects`,
    handshake in :class:`~hdl.weight_steps_stages.StageValids`). Here: the family's registered
    constants and flags, which those see instead of the ``family`` input. ``replicated``
    marks the control registers as replicas (one copy among several).

    ``words`` is a stream whose ``ready`` only depends on the skid buffer's fill.
    ``steps`` is a stream with a registered payload: a step is held until taken, and
    each stage passes one step per two cycles.

    ``start`` (one cycle, while idle) begins a job of ``tiles`` column tiles of
    ``groups`` groups each; ``family``, ``groups`` and ``tiles`` must hold still until
    the job's last step has left (``family`` reaches the columns through two registers,
    which the first code meets four cycles after ``start`` at the earliest). A family
    ID that was not built in reads the stream with the first built family's layout and
    gives all-zero digits.
    """

    def __init__(self, config: PeArrayConfig, replicated: bool = False):
        self.config, self.replicated = config, replicated
        self.layout = step_layout(config)
        super().__init__(_members(config, self.layout, per_column=False))

    def _family_constants(self, m: Module, name_of_unbuilt: str) -> dict[str, Signal]:
        """The family's constants (:func:`hdl.weight_steps_common.constant_shapes`), registered."""
        config = self.config
        constants = {name: Signal(shape, name=name) for name, shape in constant_shapes(config).items()}
        fill_bits = len(constants["used_minus_need"])

        def assign(name):
            layout = pack_layout(name, config.group_size, config.scale_bits)
            used = layout["codes_per_word"] * layout["code_bits"]
            need = config.lanes * layout["code_bits"]
            m.d.sync += [
                constants["mask"].eq((1 << used) - 1),
                constants["bits"].eq(layout["code_bits"]),
                constants["used"].eq(used),
                constants["need"].eq(need),
                constants["code_words"].eq(layout["code_words"]),
                constants["used_minus_need"].eq((used - need) % (1 << fill_bits)),
            ]
            m.d.sync += [constants[key].eq(max(0, times * need + sign * used))
                         for key, (times, sign) in THRESHOLDS.items()]

        with m.Switch(self.family):
            for name in config.families:
                with m.Case(FAMILY_IDS[name]):
                    assign(name)
            with m.Default():
                assign(name_of_unbuilt)
        mark_control(self.replicated, *constants.values())
        return constants

    def _family_flags(self, m: Module) -> tuple[list[Signal], Signal]:
        """Each lane's family flags, registered twice, and the window's step flags, registered.

        A lane's flags: one-hot over the built families, then "an int family" (all low:
        a family not built). The step flags: one-hot over the window's distinct shifts
        (a family not built shifts by the first built family's step).
        """
        config = self.config
        is_family = {name: self.family == FAMILY_IDS[name] for name in config.families}
        int_names = [name for name in config.families if family(name).kind == "int"]
        flags = Cat(*is_family.values(), Cat(*(is_family[name] for name in int_names)).any())
        flags_1 = Signal.like(flags, name="family_flags")
        steps = window_steps(config)
        step_flags = Signal(len(steps), name="step_flags")
        mark_control(self.replicated, flags_1, step_flags)
        m.d.sync += flags_1.eq(flags)
        for index, step_bits in enumerate(steps):
            hit = Cat(*(is_family[name] for name in config.families
                        if config.lanes * family(name).bits == step_bits))
            if step_bits == config.lanes * family(config.families[0]).bits:
                hit = Cat(hit, ~Cat(*is_family.values()).any())
            m.d.sync += step_flags[index].eq(hit.any())
        return replicas(m, flags_1, config.cols * config.lanes, "family_flags"), step_flags

    def elaborate(self, platform):
        m = Module()
        config = self.config
        constants = Cat(*self._family_constants(m, config.families[0]).values())
        lane_flags, step_flags = self._family_flags(m)
        m.submodules.skid = skid = SkidBuffer(config.weight_beat_bits, self.replicated)
        m.submodules.control = control = WindowControl(config, self.replicated)
        m.submodules.window = window = CodeWindow(config)
        m.submodules.cut = cut = CodeCut(config)
        m.submodules.decode = decode = CodeDecode(config)
        m.submodules.selects = selects = LaneSelects(config)
        m.submodules.valids = valids = StageValids(self.replicated)

        wiring.connect(m, wiring.flipped(self.words), skid.words)
        m.d.comb += [
            skid.pop.eq(control.pop), skid.pop_entries.eq(control.pop_entries),
            control.k.eq(constants), control.start.eq(self.start),
            control.groups.eq(self.groups), control.tiles.eq(self.tiles),
            control.head_valid.eq(skid.head_valid), control.head_valid_next.eq(skid.head_valid_next),
            control.busy_next.eq(valids.busy_next),
            window.k.eq(constants), window.head.eq(skid.head), window.step_flags.eq(step_flags),
            window.load.eq(valids.load),
            valids.emit.eq(control.emit), valids.out_ready.eq(self.steps.ready),
            cut.held.eq(window.held), cut.take.eq(valids.take_held),
            decode.split.eq(cut.split), decode.dt.eq(cut.dt),
            selects.digits.eq(decode.digits), selects.split.eq(cut.split),
            selects.take_split.eq(valids.take_split), selects.take_decoded.eq(valids.take_decoded),
            self.steps.payload.eq(selects.payload), self.steps.valid.eq(valids.out_valid),
        ]
        for name in ("take_meta", "emit", "emit_window", "append_window", "last_step", "last_group",
                     "fill", "fill_emitted"):
            m.d.comb += getattr(window, name).eq(getattr(control, name))
        for index, flags in enumerate(lane_flags):
            m.d.comb += [cut.flags[index].eq(flags), decode.flags[index].eq(flags)]
        return m
