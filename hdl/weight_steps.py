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
import functools
import operator

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import FAMILY_ID_BITS, FAMILY_IDS, WORD_BITS, family, pack_layout
from arch.pe_array_config import PeArrayConfig

from .decoder import decode_terms, term_layout
from .pe import lane_select_layout
from .replica import REPLICA_ATTR, replicas

__all__ = ["neg_halves", "step_layout", "WeightSteps", "ColumnSteps"]

#: Window bits per copy of the window's selects, position flags and clock enable (:class:`ColumnSteps`).
WINDOW_SLICE = 16


def neg_halves(lanes: int) -> list[range]:
    """The lanes of each half whose count of negative digits a step carries."""
    return [range(0, -(-lanes // 2)), range(-(-lanes // 2), lanes)]


def step_layout(config: PeArrayConfig) -> data.StructLayout:
    """One step for the whole array: per column, per digit index, per lane.

    ``neg_halves[c][t][h]`` counts the negative digits among the lanes of
    ``neg_halves(lanes)[h]``: the consumer adds the two (a popcount of every lane
    behind the decoders would be the front end's deepest logic).
    """
    lanes = config.lanes
    half_bits = len(neg_halves(lanes)[0]).bit_length()
    return data.StructLayout({
        "sel": data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(lane_select_layout(config.max_shift), lanes),
                                                 config.terms), config.cols),
        "neg_halves": data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(half_bits, 2), config.terms),
                                       config.cols),
        "sq": data.ArrayLayout(config.scale_bits, config.cols),
        "last_group": 1,     # the group's last step
        "last_tile": 1,      # ... of the tile's last group
    })


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
        "groups": job(config.max_groups.bit_length()),
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

    Packed weight beats in, decoded steps out, in four pipeline stages. ``replicated``
    marks the control registers as replicas (one copy among several).

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

    def _control(self, *registers):
        """Mark control registers as replicas when this is one of several copies."""
        if self.replicated:
            for register in registers:
                register.attrs[REPLICA_ATTR] = 1

    def _family_constants(self, m: Module, name_of_unbuilt: str) -> dict[str, Signal]:
        config = self.config
        lanes = config.lanes
        fill_bits = config.window_bits.bit_length()     # the width of `fill`
        constants = {
            "bits": Signal(range(9)),
            "used": Signal(range(WORD_BITS + 1)),
            "need": Signal(range(lanes * 8 + 1)),
            "code_words": Signal(range(config.words_per_group)),
            "mask": Signal(WORD_BITS),
            # used - need modulo the fill level's width: `fill - need + used` with one adder.
            "used-need": Signal(fill_bits, name="used_minus_need"),
        }
        # Fill-level thresholds (see `settle` in elaborate), clamped at 0: `fill < 0` is false.
        thresholds = {"2need-used": (2, -1), "3need-used": (3, -1), "3need": (3, 0), "need-used": (1, -1)}
        for name in thresholds:
            constants[name] = Signal(range(3 * lanes * 8 + 1), name=f"below_{name.replace('-', '_')}")

        # The family holds still for a whole job: registered constants keep it off every path.
        def assign(name):
            layout = pack_layout(name, config.group_size, config.scale_bits)
            used = layout["codes_per_word"] * layout["code_bits"]
            need = lanes * layout["code_bits"]
            m.d.sync += [
                constants["mask"].eq((1 << used) - 1),
                constants["bits"].eq(layout["code_bits"]),
                constants["used"].eq(used),
                constants["need"].eq(need),
                constants["code_words"].eq(layout["code_words"]),
                constants["used-need"].eq((used - need) % (1 << fill_bits)),
            ]
            m.d.sync += [constants[key].eq(max(0, times * need + sign * used))
                         for key, (times, sign) in thresholds.items()]

        with m.Switch(self.family):
            for name in config.families:
                with m.Case(FAMILY_IDS[name]):
                    assign(name)
            with m.Default():
                assign(name_of_unbuilt)
        self._control(*constants.values())
        return constants

    def elaborate(self, platform):
        m = Module()
        config = self.config
        cols, lanes = config.cols, config.lanes
        k = self._family_constants(m, config.families[0])
        # One-hot family flags and an "int family" flag, registered twice, with a copy per
        # lane (of each column): the family holds still for a job, and the first code
        # reaches the windows several cycles after `start`, so the code cut and the
        # decoders never see the family input itself, and each lane's decoder sees flags
        # of its own. All low: a family not built.
        is_family = {name: self.family == FAMILY_IDS[name] for name in config.families}
        int_names = [name for name in config.families if family(name).kind == "int"]
        flags = Cat(*is_family.values(), Cat(*(is_family[name] for name in int_names)).any())
        flags_1 = Signal.like(flags, name="family_flags")
        self._control(flags_1)
        m.d.sync += flags_1.eq(flags)
        lane_flags = replicas(m, flags_1, cols * lanes, "family_flags")
        selected = [[dict(zip([*config.families, "int"], lane_flags[c * lanes + lane], strict=True))
                     for lane in range(lanes)] for c in range(cols)]
        # The window's shift after an emit, one flag per distinct step (lanes * bits); a
        # family not built reads with the first built family's layout.
        steps = sorted({lanes * family(name).bits for name in config.families})
        step_flags = Signal(len(steps), name="step_flags")
        self._control(step_flags)
        for index, step_bits in enumerate(steps):
            hit = Cat(*(is_family[name] for name in config.families if lanes * family(name).bits == step_bits))
            if step_bits == lanes * family(config.families[0]).bits:
                hit = Cat(hit, ~Cat(*is_family.values()).any())
            m.d.sync += step_flags[index].eq(hit.any())
        window_bits = config.window_bits
        code_field = lanes * config.code_bits

        # ---- stage 0: a two-entry skid buffer, so that `words.ready` only depends on its fill
        # The fill is one-hot-ish flip-flops (`head_valid` = count >= 1, `full` = count == 2)
        # and each entry's data comes from flip-flops alone; `pop`, the late signal, only
        # reaches the head's enable. An entry that holds nothing takes the payload in
        # every cycle, beat or not (the fill says what counts), so neither enable waits
        # for `words.valid`.
        head_valid, full = Signal(), Signal()
        entries = [Signal(config.weight_beat_bits, name=f"skid{i}", reset_less=True) for i in range(2)]
        head = entries[0]
        pop, pop_skid = Signal(), Signal()      # equal: the control's and the entries' copy
        push = self.words.valid & self.words.ready
        m.d.comb += self.words.ready.eq(~full)
        with m.If(pop_skid | ~head_valid):
            m.d.sync += entries[0].eq(Mux(full, entries[1], self.words.payload))
        with m.If(~full):
            m.d.sync += entries[1].eq(self.words.payload)
        head_valid_next = Mux(pop & ~push, full, Mux(push & ~pop, 1, head_valid))
        m.d.sync += [head_valid.eq(head_valid_next),
                     full.eq(Mux(pop & ~push, 0, Mux(push & ~pop, head_valid, full)))]

        # ---- stage 1: metadata and code windows -------------------------------------------
        in_meta, in_codes = Signal(), Signal()   # the phase, one-hot (neither: idle)
        group = Signal.like(self.groups)
        tile = Signal.like(self.tiles)
        step = Signal(range(config.steps_per_group))
        words_left = Signal(range(config.words_per_group))
        fill = Signal(range(window_bits + 1))
        assert len(fill) == len(k["used-need"])
        windows = [Signal(window_bits, name=f"window{c}") for c in range(cols)]
        dt = [Signal(name=f"dt{c}") for c in range(cols)]
        sg = [Signal(name=f"sg{c}") for c in range(cols)]
        sq = [Signal(config.scale_bits, name=f"sq{c}") for c in range(cols)]

        raw = data.StructLayout({
            "codes": data.ArrayLayout(code_field, cols), "dt": cols, "sg": cols,
            "sq": data.ArrayLayout(config.scale_bits, cols), "last_group": 1, "last_tile": 1,
        })
        # Data registers carry no reset here (a valid flag says when they count), so the
        # reset net reaches only the control.
        held = Signal(raw, reset_less=True)
        held_valid = Signal()
        split_valid = Signal()                   # stage 2 holds a step (it takes `held` when not)
        decoded_valid = Signal()                 # stage 3 holds a step (it takes `split` when not)

        # The emit/append decisions are flip-flops: they are functions of the control's
        # state (the fill level's comparisons, `last_step`, `words_left != 0` and the
        # phase are registered flags), so each is computed from the state's next values
        # a cycle ahead, with a registered copy for each group of its loads (the control,
        # the skid entries, the window's selects).
        #   low            fill < need           (no step can leave)
        #   low_after_emit fill - need < need    (after a step leaves, a word must come in)
        #   last_step      this group's last step
        low, low_after_emit = Signal(init=1), Signal(init=1)
        last_step, words_left_nonzero = Signal(), Signal()
        emit_next, append_next = Signal(), Signal()
        emit, emit_window = replicas(m, emit_next, 2, "emit")
        append, append_skid, append_window = replicas(m, append_next, 3, "append")
        emit_d = Signal()
        self._control(head_valid, full, in_meta, in_codes, group, tile, step, words_left, fill, held_valid,
                      split_valid, decoded_valid, low, low_after_emit, last_step, words_left_nonzero, emit_d)
        # Each stage takes a step only into an empty register, so no ready signal ripples
        # back through the stages; a stage still passes one step per two cycles, which is
        # the most the PEs take (a step lasts terms >= 2 cycles).
        # The window itself lags the decisions by a cycle (see below): an emit needs `held`
        # free by the next cycle, and no emit in the cycle before.
        # `can_emit` (= ~emit_d & ~(held_valid & split_valid)) is computed at the end
        # from the stages' next valid flags, with their take enables.
        #   emit   = in_codes & ~low & can_emit
        #   append = in_codes & head_valid & words_left != 0 & Mux(emit, low_after_emit, low) & ~(emit & last_step)
        #          = in_codes & head_valid & words_left != 0 & (low | (can_emit & low_after_emit & ~last_step))
        # of the state as it is in the cycle they act in: here, of its next values.
        can_emit_next = Signal()
        in_codes_next, last_step_next, words_left_nonzero_next = Signal(), Signal(), Signal()
        m.d.comb += [
            in_codes_next.eq(in_codes), last_step_next.eq(last_step),
            words_left_nonzero_next.eq(words_left_nonzero),
            pop.eq((in_meta & head_valid) | append),
            pop_skid.eq((in_meta & head_valid) | append_skid),
        ]
        m.d.sync += [in_codes.eq(in_codes_next), last_step.eq(last_step_next),
                     words_left_nonzero.eq(words_left_nonzero_next)]

        # The fill level's candidates (their comparisons are in `settle`, below).
        need, used = k["need"], k["used"]
        fill_emitted, fill_appended, fill_both = (Signal.like(fill, name=n) for n in
                                                  ("fill_emitted", "fill_appended", "fill_both"))
        m.d.comb += [
            fill_emitted.eq(fill - need),
            fill_appended.eq(fill + used),
            fill_both.eq(fill + k["used-need"]),          # = fill - need + used
        ]
        fill_next = Signal.like(fill)
        low_next, low_after_emit_next = Signal(), Signal()

        # The next fill level and its two comparisons (`< need`, `< 2 * need`). Each
        # comparison of a candidate is one of `fill` with a registered family constant,
        # in parallel with the decisions, not one after the adders.
        def settle(value, low_value, low_after_emit_value):
            return [fill_next.eq(value), low_next.eq(low_value), low_after_emit_next.eq(low_after_emit_value)]

        starting = ~in_meta & ~in_codes & self.start
        m.d.comb += settle(fill, low, low_after_emit)
        with m.If((emit & last_step) | starting):
            m.d.comb += settle(0, 1, 1)
        with m.Elif(emit & append):         # fill - need + used
            m.d.comb += settle(fill_both, fill < k["2need-used"], fill < k["3need-used"])
        with m.Elif(emit):                  # fill - need
            m.d.comb += settle(fill_emitted, low_after_emit, fill < k["3need"])
        with m.Elif(append):                # fill + used
            m.d.comb += settle(fill_appended, fill < k["need-used"], fill < k["2need-used"])
        m.d.sync += [fill.eq(fill_next), low.eq(low_next), low_after_emit.eq(low_after_emit_next)]

        # The stages' take enables (each the clock enable of a stage's data) are
        # flip-flops, set at the end from the stages' next valid flags.
        take_held = Signal()                     # = held_valid & ~split_valid: stage 2 takes `held`
        take_split, take_decoded = Signal(), Signal()
        self._control(take_held, take_split, take_decoded)

        with m.If(starting):
            m.d.sync += [in_meta.eq(1), group.eq(0), tile.eq(0), step.eq(0)]
            m.d.comb += last_step_next.eq(config.steps_per_group == 1)
        with m.If(in_meta & head_valid):
            layout = pack_layout(config.families[0], config.group_size, config.scale_bits)
            for c in range(cols):
                meta = head[c * WORD_BITS:(c + 1) * WORD_BITS]
                m.d.sync += [
                    dt[c].eq(meta[layout["dt_bit"]]),
                    sg[c].eq(meta[layout["sg_bit"]]),
                    sq[c].eq(meta[layout["sq_shift"]:layout["sq_shift"] + config.scale_bits]),
                ]
            m.d.sync += [in_meta.eq(0), words_left.eq(k["code_words"])]
            m.d.comb += [in_codes_next.eq(1), words_left_nonzero_next.eq(k["code_words"] != 0)]

        # `group == groups - 1` and `tile == tiles - 1` as registered flags, set when the
        # counters move: the emit decision then sees no comparator. What they become
        # then (`group + 2 == groups`, ...) is compared in every cycle into a register of
        # its own: a counter moves at a group's last step, and the next one is at least
        # two steps later, so the register has caught up by then.
        group_last, tile_last = Signal(), Signal()
        group_penult, tile_penult = Signal(), Signal()
        # (the inputs hold still during a job: `groups - 2` and `tiles - 2` are registers
        # too, and each flag is an equality of two registers, no adder before it)
        groups_2, tiles_2 = Signal.like(self.groups, name="groups_2"), Signal.like(self.tiles, name="tiles_2")
        self._control(group_last, tile_last, group_penult, tile_penult, groups_2, tiles_2)
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

        # The windows apply the decisions one cycle later, from registers: the word is
        # placed by registered one-hot position flags (the fill level after the emit),
        # not behind the emit/append logic. Decisions only depend on the fill level,
        # never on data. Every family's step (lanes * bits) is a multiple of 2**aligned,
        # so the fill level's low `aligned` bits are the same before and after an emit:
        # the word is shifted by them as it is registered (a small multiplexer behind
        # the fill flip-flops), and the window places it at a multiple of 2**aligned.
        aligned = min(min((lanes * family(name).bits & -(lanes * family(name).bits)).bit_length() - 1
                          for name in config.families), 5)
        words_d = [Signal(WORD_BITS + (1 << aligned) - 1, name=f"word_d{c}", reset_less=True) for c in range(cols)]
        step_d = Signal(raw, reset_less=True)    # everything of the emitted step but its codes
        m.d.sync += emit_d.eq(emit)
        for c in range(cols):
            m.d.sync += words_d[c].eq((head[c * WORD_BITS:(c + 1) * WORD_BITS] & k["mask"]) << fill[:aligned])
        with m.If(emit):
            m.d.sync += [
                step_d.dt.eq(Cat(*dt)), step_d.sg.eq(Cat(*sg)), step_d.sq.eq(Cat(*sq)),
                step_d.last_group.eq(last_step), step_d.last_tile.eq(last_group),
            ]
        with m.If(emit_d):
            m.d.sync += [held.dt.eq(step_d.dt), held.sg.eq(step_d.sg), held.sq.eq(step_d.sq),
                         held.last_group.eq(step_d.last_group), held.last_tile.eq(step_d.last_tile)]
            for c in range(cols):
                m.d.sync += held.codes[c].eq(windows[c][:code_field])
        # The window's next value is an AND-OR of its candidates, each under a registered
        # select decided with emit/append: the window kept (append alone) or shifted by
        # the family's step (emit, one-hot), and the word placed at the fill level
        # after the emit (append; a flag per position, one-hot). After the group's last
        # step all are low.
        # The selects and the clock enable have a copy per WINDOW_SLICE bits of each
        # window (replicas, so that yosys keeps them apart; a slice has the position
        # flags of the positions that reach it): one register reached all of a window's bits.
        emit_more = emit_window & ~last_step
        place = append_window & (~emit_window | emit_more)
        position = Mux(emit_window, fill_emitted, fill)[aligned:]
        selects = Cat(~emit_window, step_flags & emit_more.replicate(len(steps)))
        lows = range(0, window_bits, WINDOW_SLICE)
        for c in range(cols):
            slice_selects = replicas(m, selects, len(lows), f"window_selects{c}")
            slice_enables = replicas(m, emit_window | append_window, len(lows), f"window_enable{c}")
            for low, flags, enable in zip(lows, slice_selects, slice_enables, strict=True):
                high = min(low + WINDOW_SLICE, window_bits)
                keep, shift_by = flags[0], flags[1:]
                candidates = [(windows[c], keep)]
                candidates += [(windows[c] >> step_bits, shift_by[index]) for index, step_bits in enumerate(steps)]
                reaching = [at for at in range((window_bits >> aligned) + 1)
                            if (at << aligned) < high and (at << aligned) + len(words_d[c]) > low]
                places, = replicas(m, Cat(*(place & (position == at) for at in reaching)), 1,
                                   f"window_place{c}_{low}")
                candidates += [(Cat(C(0, at << aligned), words_d[c]), places[index])
                               for index, at in enumerate(reaching)]
                with m.If(enable):                   # emitted or appended a cycle ago
                    m.d.sync += windows[c][low:high].eq(functools.reduce(operator.or_, (
                        value[low:high] & flag.replicate(high - low) for value, flag in candidates)))

        # ---- stage 2: cut the window into one code per lane --------------------------------
        int_built = any(family(name).kind == "int" for name in config.families)
        booth_bits = 2 * max((family(name).terms for name in config.families if family(name).kind == "int"),
                             default=0)
        split_layout = data.StructLayout({
            "codes": data.ArrayLayout(data.ArrayLayout(config.code_bits, lanes), cols),
            "extended": data.ArrayLayout(data.ArrayLayout(max(booth_bits, 1), lanes), cols),
            "sg": cols,
            "sq": data.ArrayLayout(config.scale_bits, cols), "last_group": 1, "last_tile": 1,
        })
        split = Signal(split_layout, reset_less=True)
        # The group's data type, a copy per lane: one register reached every lane's decoder.
        split_dt = [[Signal(name=f"split_dt{c}_{lane}", reset_less=True, attrs={REPLICA_ATTR: 1})
                     for lane in range(lanes)] for c in range(cols)]
        with m.If(take_held):
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
                            extended.append(code.as_signed() & flags[name].replicate(booth_bits))
                    m.d.sync += split.codes[c][lane].eq(functools.reduce(operator.or_, codes))
                    if extended:
                        m.d.sync += split.extended[c][lane].eq(functools.reduce(operator.or_, extended))

        # ---- stage 3: decode every lane of every column -----------------------------------------
        digits = data.ArrayLayout(term_layout(config.max_shift.bit_length()), config.terms)
        digit_layout = data.StructLayout({"terms": data.ArrayLayout(digits, lanes)})
        decoded_layout = data.StructLayout({
            "digits": data.ArrayLayout(digit_layout, cols), "sg": cols,
            "sq": data.ArrayLayout(config.scale_bits, cols),
            "last_group": 1, "last_tile": 1,
        })
        decoded = Signal(decoded_layout, reset_less=True)   # taken when take_split = split_valid & ~decoded_valid
        with m.If(take_split):
            m.d.sync += [
                decoded.sg.eq(split.sg),
                decoded.last_group.eq(split.last_group),
                decoded.last_tile.eq(split.last_tile),
            ]
        for c in range(cols):
            for lane in range(lanes):
                terms = decode_terms(m, config.families, self.family, split.codes[c][lane], split_dt[c][lane],
                                     extended=split.extended[c][lane] if int_built else None,
                                     selected=selected[c][lane], int_selected=selected[c][lane]["int"])
                with m.If(take_split):
                    m.d.sync += decoded.digits[c].terms[lane].eq(terms)
            with m.If(take_split):
                m.d.sync += decoded.sq[c].eq(split.sq[c])

        # ---- stage 4: lane selects (group sign folded in), each column's count of negative lanes
        out, out_valid = self.steps, Signal(name="out_valid")
        self._control(out_valid)
        m.d.comb += out.valid.eq(out_valid)      # `take_decoded` = decoded_valid & ~out_valid
        selects = Signal(self.layout)
        for c in range(cols):
            for t in range(config.terms):
                negatives = []
                for lane in range(lanes):
                    term, sel = decoded.digits[c].terms[lane][t], selects.sel[c][t][lane]
                    # Separate signals: summing fields of `selects` into `selects` is a false
                    # combinational loop for Verilator.
                    neg = Signal(name=f"neg{c}_{t}_{lane}")
                    m.d.comb += neg.eq(term.nonzero & (term.negative ^ decoded.sg[c]))
                    for shift in range(config.max_shift + 1):
                        m.d.comb += sel.e[shift].eq(term.nonzero & (term.shift == shift))
                    m.d.comb += sel.neg.eq(neg)
                    negatives.append(neg)
                for half, lanes_of_half in enumerate(neg_halves(lanes)):
                    m.d.comb += selects.neg_halves[c][t][half].eq(sum(negatives[lane] for lane in lanes_of_half))
            m.d.comb += selects.sq[c].eq(decoded.sq[c])
        m.d.comb += [
            selects.last_group.eq(decoded.last_group),
            selects.last_tile.eq(decoded.last_tile),
        ]
        with m.If(take_decoded):
            m.d.sync += out.payload.eq(selects)

        # The stages' valid flags (a stage fills when it takes the step before it and
        # empties when the next stage or the output takes its step), and from their next
        # values the registered take enables and the next cycle's decisions: what they
        # would be as combinational functions of the flags, one cycle ahead.
        held_valid_next = emit_d | (held_valid & ~take_held)
        split_valid_next = take_held | (split_valid & ~take_split)
        decoded_valid_next = take_split | (decoded_valid & ~take_decoded)
        out_valid_next = take_decoded | (out_valid & ~out.ready)
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
            can_emit_next.eq(~emit & ~(held_valid_next & split_valid_next)),
            emit_next.eq(in_codes_next & ~low_next & can_emit_next),
            append_next.eq(in_codes_next & head_valid_next & words_left_nonzero_next
                           & (low_next | (can_emit_next & low_after_emit_next & ~last_step_next))),
        ]
        return m
