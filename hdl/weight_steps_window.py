"""Stage 1 of a column's weight front end (:class:`hdl.weight_steps.ColumnSteps`): the code windows.

Stage 1 appends code words to each column's bit window and emits a step whenever the window
holds ``lanes`` codes: :class:`WindowControl` (with :class:`FillLevel`) decides, a
cycle ahead, when a step leaves and when a word comes in; :class:`CodeWindow` applies
the decisions to the windows and registers the emitted step.
"""

from __future__ import annotations

import functools
import operator

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import WORD_BITS, family, pack_layout
from arch.pe_array_config import PeArrayConfig

from .replica import replicas
from .weight_steps_common import constants_layout, held_layout, mark_control, window_steps

__all__ = ["WINDOW_SLICE", "FillLevel", "WindowControl", "CodeWindow"]

#: Window bits per copy of the window's selects, position flags and clock enable (:class:`CodeWindow`).
WINDOW_SLICE = 16


class FillLevel(wiring.Component):
    """The window's fill level in bits, and its comparisons with one and two steps.

    Sampled at every clock edge: ``clear`` (the group's last step leaves, or a job
    starts) empties the window, else ``emit`` takes ``need`` bits out and ``append``
    puts ``used`` bits in (both: ``fill - need + used``). The ``*_next`` outputs are
    this cycle's combinational results, what the registers become at the clock edge.
    After reset the window is empty.

    Parameters
    ----------
    config : PeArrayConfig
    replicated : bool
        Mark the registers as replicas.

    Members
    -------
    k : In(constants_layout(config))
        The family constants (registered, still during a job).
    clear, emit, append : In(1)
        The clock edge's decisions.
    fill : Out(range(config.window_bits + 1))
        The fill level.
    fill_emitted : Out(range(config.window_bits + 1))
        ``fill - need``: the fill level after an emit.
    low_next : Out(1)
        The next fill level is below ``need`` (no step can leave).
    low_after_emit_next : Out(1)
        The next fill level is below ``2 * need`` (after a step leaves, a word must come in).
    """

    def __init__(self, config: PeArrayConfig, replicated: bool = False):
        self.config, self.replicated = config, replicated
        fill_shape = range(config.window_bits + 1)
        super().__init__({
            "k": In(constants_layout(config)),
            "clear": In(1), "emit": In(1), "append": In(1),
            "fill": Out(fill_shape), "fill_emitted": Out(fill_shape),
            "low_next": Out(1), "low_after_emit_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        k, emit, append = self.k, self.emit, self.append
        fill = Signal.like(self.fill, name="fill")
        low, low_after_emit = Signal(init=1), Signal(init=1)
        mark_control(self.replicated, fill, low, low_after_emit)
        assert len(fill) == len(k.used_minus_need)
        fill_emitted, fill_appended, fill_both = (Signal.like(fill, name=n) for n in
                                                  ("fill_emitted", "fill_appended", "fill_both"))
        m.d.comb += [
            fill_emitted.eq(fill - k.need),
            fill_appended.eq(fill + k.used),
            fill_both.eq(fill + k.used_minus_need),          # = fill - need + used
        ]
        fill_next = Signal.like(fill)
        low_next, low_after_emit_next = self.low_next, self.low_after_emit_next

        # Each candidate's comparisons are of `fill` with a registered family constant.
        def settle(value, low_value, low_after_emit_value):
            return [fill_next.eq(value), low_next.eq(low_value), low_after_emit_next.eq(low_after_emit_value)]

        m.d.comb += settle(fill, low, low_after_emit)
        with m.If(self.clear):
            m.d.comb += settle(0, 1, 1)
        with m.Elif(emit & append):         # fill - need + used
            m.d.comb += settle(fill_both, fill < k.below_2need_used, fill < k.below_3need_used)
        with m.Elif(emit):                  # fill - need
            m.d.comb += settle(fill_emitted, low_after_emit, fill < k.below_3need)
        with m.Elif(append):                # fill + used
            m.d.comb += settle(fill_appended, fill < k.below_need_used, fill < k.below_2need_used)
        m.d.sync += [fill.eq(fill_next), low.eq(low_next), low_after_emit.eq(low_after_emit_next)]
        m.d.comb += [self.fill.eq(fill), self.fill_emitted.eq(fill_emitted)]
        return m


class WindowControl(wiring.Component):
    """Stage 1's control: a job's phases and counters, and the emit/append decisions.

    ``start`` is sampled while idle (neither reading metadata nor codes): it begins a
    job of ``tiles`` column tiles of ``groups`` groups each, which must hold still
    until the job's last step has left. Per group the control takes the head beat as
    metadata (``take_meta``), then code words, and emits the group's steps. The
    decisions are registers, each set a cycle ahead from the state's next values
    (:class:`FillLevel`'s among them):

    * ``emit`` = in codes, the window holds a step, and no emit in the cycle before
      nor ``held`` and ``split`` both full (``busy_next``): a step leaves the window,
      and ``held`` takes it a cycle later (:class:`CodeWindow`);
    * ``append`` = in codes, a head beat, a code word left in the group, and the window
      short of a step (or of two after an emit that is not the group's last): the
      head beat's word comes in.

    ``pop`` (the head leaves) is ``take_meta | append``. The outputs are valid in the
    cycle they are computed for; ``last_step`` and ``last_group`` describe the step an
    ``emit`` of the same cycle takes out.

    Parameters
    ----------
    config : PeArrayConfig
    replicated : bool
        Mark the control registers as replicas.

    Members
    -------
    k : In(constants_layout(config))
        The family constants.
    start : In(1)
    groups : In(config.groups_bits)
    tiles : In(config.tile_count_bits)
    head_valid, head_valid_next : In(1)
        :class:`hdl.weight_steps_skid.SkidBuffer`'s fill, now and at the next clock edge.
    busy_next : In(1)
        After this clock edge ``held`` and ``split`` both hold a step
        (:class:`hdl.weight_steps_stages.StageValids`).
    take_meta : Out(1)
        The head is the group's metadata beat, taken at this clock edge.
    pop, pop_entries : Out(1)
        The head leaves at this clock edge (two equal copies: the skid's control, its entries).
    emit, emit_window, append_window : Out(1)
        The decisions (``emit_window`` and ``append_window``: the window's copies).
    last_step, last_group : Out(1)
        This is the group's last step; ... of the tile's last group.
    fill, fill_emitted : Out(range(config.window_bits + 1))
        :class:`FillLevel`'s fill level, before and after an emit.
    """

    def __init__(self, config: PeArrayConfig, replicated: bool = False):
        self.config, self.replicated = config, replicated
        fill_shape = range(config.window_bits + 1)
        super().__init__({
            "k": In(constants_layout(config)),
            "start": In(1), "groups": In(config.groups_bits), "tiles": In(config.tile_count_bits),
            "head_valid": In(1), "head_valid_next": In(1), "busy_next": In(1),
            "take_meta": Out(1), "pop": Out(1), "pop_entries": Out(1),
            "emit": Out(1), "emit_window": Out(1), "append_window": Out(1),
            "last_step": Out(1), "last_group": Out(1),
            "fill": Out(fill_shape), "fill_emitted": Out(fill_shape),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.fill = level = FillLevel(config, self.replicated)
        in_meta, in_codes = Signal(), Signal()   # the phase, one-hot (neither: idle)
        group, tile = Signal.like(self.groups, name="group"), Signal.like(self.tiles, name="tile")
        step = Signal(range(config.steps_per_group))
        words_left = Signal(range(config.words_per_group))
        last_step, words_left_nonzero = Signal(), Signal()
        # `group == groups - 1` and `tile == tiles - 1`, and what they become when the counters move.
        group_last, tile_last = Signal(), Signal()
        group_penult, tile_penult = Signal(), Signal()
        groups_2, tiles_2 = Signal.like(self.groups, name="groups_2"), Signal.like(self.tiles, name="tiles_2")
        emit_next, append_next = Signal(), Signal()
        emit, emit_window = replicas(m, emit_next, 2, "emit")
        append, append_skid, append_window = replicas(m, append_next, 3, "append")
        mark_control(self.replicated, in_meta, in_codes, group, tile, step, words_left, last_step,
                     words_left_nonzero, group_last, tile_last, group_penult, tile_penult, groups_2, tiles_2)

        # The state's next values, from which the decisions are registered.
        can_emit_next = Signal()
        in_codes_next, last_step_next, words_left_nonzero_next = Signal(), Signal(), Signal()
        starting = ~in_meta & ~in_codes & self.start
        take_meta = in_meta & self.head_valid
        m.d.comb += [
            in_codes_next.eq(in_codes), last_step_next.eq(last_step),
            words_left_nonzero_next.eq(words_left_nonzero),
            self.pop.eq(take_meta | append),
            self.pop_entries.eq(take_meta | append_skid),
            level.k.eq(self.k), level.emit.eq(emit), level.append.eq(append),
            level.clear.eq((emit & last_step) | starting),
        ]
        m.d.sync += [in_codes.eq(in_codes_next), last_step.eq(last_step_next),
                     words_left_nonzero.eq(words_left_nonzero_next)]

        with m.If(starting):
            m.d.sync += [in_meta.eq(1), group.eq(0), tile.eq(0), step.eq(0)]
            m.d.comb += last_step_next.eq(config.steps_per_group == 1)
        with m.If(take_meta):
            m.d.sync += [in_meta.eq(0), words_left.eq(self.k.code_words)]
            m.d.comb += [in_codes_next.eq(1), words_left_nonzero_next.eq(self.k.code_words != 0)]

        m.d.sync += [groups_2.eq(self.groups - 2), tiles_2.eq(self.tiles - 2),
                     group_penult.eq(group == groups_2), tile_penult.eq(tile == tiles_2)]
        with m.If(starting):
            m.d.sync += [group_last.eq(self.groups == 1), tile_last.eq(self.tiles == 1)]
        last_group = last_step & group_last
        last_tile = last_group & tile_last
        with m.If(emit):
            m.d.sync += step.eq(step + 1)
            m.d.comb += last_step_next.eq(step == config.steps_per_group - 2)
            with m.If(last_step):
                m.d.sync += [step.eq(0), in_meta.eq(~last_tile), group.eq(group + 1), group_last.eq(group_penult)]
                m.d.comb += [last_step_next.eq(config.steps_per_group == 1), in_codes_next.eq(0)]
                with m.If(last_group):
                    m.d.sync += [group.eq(0), group_last.eq(self.groups == 1), tile.eq(tile + 1),
                                 tile_last.eq(tile_penult)]
        with m.If(append):
            m.d.sync += words_left.eq(words_left - 1)
            m.d.comb += words_left_nonzero_next.eq(words_left != 1)

        #   emit   = in_codes & ~low & can_emit, with can_emit = ~emit_d & ~(held_valid & split_valid)
        #   append = in_codes & head_valid & words_left != 0 & (low | (can_emit & low_after_emit & ~last_step))
        # of the state as it is in the cycle they act in: here, of its next values.
        m.d.comb += [
            can_emit_next.eq(~emit & ~self.busy_next),
            emit_next.eq(in_codes_next & ~level.low_next & can_emit_next),
            append_next.eq(in_codes_next & self.head_valid_next & words_left_nonzero_next
                           & (level.low_next | (can_emit_next & level.low_after_emit_next & ~last_step_next))),
            self.take_meta.eq(take_meta),
            self.emit.eq(emit), self.emit_window.eq(emit_window), self.append_window.eq(append_window),
            self.last_step.eq(last_step), self.last_group.eq(last_group),
            self.fill.eq(level.fill), self.fill_emitted.eq(level.fill_emitted),
        ]
        return m


class CodeWindow(wiring.Component):
    """Stage 1's data: each column's metadata, its code window, and the emitted step (``held``).

    At a clock edge with ``take_meta`` the head beat's metadata (``dt``, ``sg``, ``sq``
    of each column) is registered. The window applies :class:`WindowControl`'s
    decisions one cycle after they are made, from registers: at the clock edge after an
    ``emit`` it shifts by the family's step (``step_flags``, one-hot; after the group's
    last step it empties), and at the clock edge after an ``append`` it places the head
    beat's word at the fill level after the emit. ``held`` takes the window's codes and
    the step's metadata at the clock edge with ``load`` high (one cycle after the
    ``emit``, the window not yet shifted), and holds them until the next ``load``.

    Parameters
    ----------
    config : PeArrayConfig

    Members
    -------
    k : In(constants_layout(config))
        The family constants (``mask``: the used bits of a code word).
    head : In(config.weight_beat_bits)
        :class:`hdl.weight_steps_skid.SkidBuffer`'s head beat.
    take_meta, emit, emit_window, append_window, last_step, last_group : In(1)
    fill, fill_emitted : In(range(config.window_bits + 1))
        :class:`WindowControl`'s outputs.
    step_flags : In(len(window_steps(config)))
        The family's shift after an emit, one-hot over :func:`hdl.weight_steps_common.window_steps`.
    load : In(1)
        ``held`` takes the step emitted a cycle ago.
    held : Out(held_layout(config))
        The emitted step.
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        fill_shape = range(config.window_bits + 1)
        super().__init__({
            "k": In(constants_layout(config)), "head": In(config.weight_beat_bits),
            "take_meta": In(1), "emit": In(1), "emit_window": In(1), "append_window": In(1),
            "last_step": In(1), "last_group": In(1),
            "fill": In(fill_shape), "fill_emitted": In(fill_shape),
            "step_flags": In(len(window_steps(config))), "load": In(1),
            "held": Out(held_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        cols, lanes = config.cols, config.lanes
        words = [self.head[c * WORD_BITS:(c + 1) * WORD_BITS] for c in range(cols)]
        dt = [Signal(name=f"dt{c}") for c in range(cols)]
        sg = [Signal(name=f"sg{c}") for c in range(cols)]
        sq = [Signal(config.scale_bits, name=f"sq{c}") for c in range(cols)]
        with m.If(self.take_meta):
            layout = pack_layout(config.families[0], config.group_size, config.scale_bits)
            for c in range(cols):
                m.d.sync += [
                    dt[c].eq(words[c][layout["dt_bit"]]),
                    sg[c].eq(words[c][layout["sg_bit"]]),
                    sq[c].eq(words[c][layout["sq_shift"]:layout["sq_shift"] + config.scale_bits]),
                ]

        # Every family's step is a multiple of 2**aligned: the word is shifted by the fill
        # level's low `aligned` bits as it is registered, and placed at a multiple of 2**aligned.
        aligned = min(min((lanes * family(name).bits & -(lanes * family(name).bits)).bit_length() - 1
                          for name in config.families), 5)
        words_d = [Signal(WORD_BITS + (1 << aligned) - 1, name=f"word_d{c}", reset_less=True) for c in range(cols)]
        windows = [Signal(config.window_bits, name=f"window{c}") for c in range(cols)]
        # Data registers have no reset: a valid flag says when they count.
        held = Signal(held_layout(config), reset_less=True)
        step_d = Signal(held_layout(config), reset_less=True)    # everything of the emitted step but its codes
        for c in range(cols):
            m.d.sync += words_d[c].eq((words[c] & self.k.mask) << self.fill[:aligned])
        with m.If(self.emit):
            m.d.sync += [
                step_d.dt.eq(Cat(*dt)), step_d.sg.eq(Cat(*sg)), step_d.sq.eq(Cat(*sq)),
                step_d.last_group.eq(self.last_step), step_d.last_tile.eq(self.last_group),
            ]
        with m.If(self.load):
            m.d.sync += [held.dt.eq(step_d.dt), held.sg.eq(step_d.sg), held.sq.eq(step_d.sq),
                         held.last_group.eq(step_d.last_group), held.last_tile.eq(step_d.last_tile)]
            for c in range(cols):
                m.d.sync += held.codes[c].eq(windows[c][:lanes * config.code_bits])

        # The window's next value: an AND-OR of its candidates under registered selects (one-hot):
        # kept, shifted by the family's step, or the word placed at a position. All low after
        # the group's last step.
        emit_more = self.emit_window & ~self.last_step
        place = self.append_window & (~self.emit_window | emit_more)
        position = Mux(self.emit_window, self.fill_emitted, self.fill)[aligned:]
        selects = Cat(~self.emit_window, self.step_flags & emit_more.replicate(len(self.step_flags)))
        for c in range(cols):
            self._update(m, c, windows[c], words_d[c], selects, place, position, aligned)
        m.d.comb += self.held.eq(held)
        return m

    def _update(self, m: Module, c: int, window: Signal, word: Signal, selects, place, position, aligned: int):
        """Column ``c``'s window update, with a copy of the selects and enable per ``WINDOW_SLICE`` bits."""
        window_bits, steps = self.config.window_bits, window_steps(self.config)
        lows = range(0, window_bits, WINDOW_SLICE)
        slice_selects = replicas(m, selects, len(lows), f"window_selects{c}")
        slice_enables = replicas(m, self.emit_window | self.append_window, len(lows), f"window_enable{c}")
        for low, flags, enable in zip(lows, slice_selects, slice_enables, strict=True):
            high = min(low + WINDOW_SLICE, window_bits)
            keep, shift_by = flags[0], flags[1:]
            candidates = [(window, keep)]
            candidates += [(window >> step_bits, shift_by[index]) for index, step_bits in enumerate(steps)]
            # The positions whose word reaches this slice, each with a flag of its own.
            reaching = [at for at in range((window_bits >> aligned) + 1)
                        if (at << aligned) < high and (at << aligned) + len(word) > low]
            places, = replicas(m, Cat(*(place & (position == at) for at in reaching)), 1, f"window_place{c}_{low}")
            candidates += [(Cat(C(0, at << aligned), word), places[index]) for index, at in enumerate(reaching)]
            with m.If(enable):                   # emitted or appended a cycle ago
                m.d.sync += window[low:high].eq(functools.reduce(operator.or_, (
                    value[low:high] & flag.replicate(high - low) for value, flag in candidates)))
