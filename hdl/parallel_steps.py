"""The bit-parallel all-family array's weight front end: packed words in, one step of L codes per cycle out.

:class:`hdl.weight_steps.WeightSteps` (the bit-serial array's) passes at most one step
every two cycles, which is all a PE that spends two or more cycles on a weight needs.
A bit-parallel PE takes a step every cycle, so its front end is this one: per column a
queue of code slots that takes a whole word's codes in one cycle and gives the oldest
``lanes`` codes in the same cycle; all columns share one control.

A group record is a metadata word and ``code_words`` words of ``codes_per_word``
codes each (``arch.bitmod.pack_layout``); a code never straddles two words. The
*appender* takes the metadata beat, then the code words; the *emitter* gives a step
whenever the queue holds ``lanes`` codes. The appender takes a word whenever the
queue, after this cycle's step, holds at most ``lanes`` codes (so a queue of ``lanes
+ codes_per_word`` slots never overflows). A group's last word adds only the group's
codes (its padding is overwritten), so the next group's codes follow at once, and a
two-entry FIFO holds the metadata of the group being sent and of the next one, so the
next group's metadata beat is taken as soon as it comes. A step never spans two
groups (G is a multiple of L). With ``lanes = 8`` and G = 128 a step therefore leaves
every cycle for fp3/int3 (14 beats per 16 steps), and the stream bounds the rest at one
beat per cycle: 17 beats per group of 16 steps for fp4/int4, 27 for int6, 33 for int8.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import FAMILY_ID_BITS, FAMILY_IDS, WORD_BITS, family, pack_layout
from arch.pe_array_config import PeArrayConfig

__all__ = ["queue_slots", "ParallelSteps", "step_sequencer"]


def _code_widths(config: PeArrayConfig) -> list[int]:
    """The distinct code widths of the built families, ascending."""
    return sorted({family(name).bits for name in config.families})


def queue_slots(config: PeArrayConfig) -> int:
    """Code slots of a column's queue: ``lanes`` left after a step plus a whole word of the narrowest codes."""
    return config.lanes + WORD_BITS // _code_widths(config)[0]


class ParallelSteps(wiring.Component):
    """Packed weight beats in, one step of ``lanes`` codes per column per cycle out.

    ``start`` (one cycle, while no job runs) begins a job of ``tiles`` column tiles of
    ``groups`` groups each, of family ``family``; all three must hold still until the
    job's last step has left, and ``family`` must have held for a cycle before
    ``start`` (its constants are registered). A family ID that is not built in reads
    the stream with the first built family's layout (its codes are whatever they are:
    the decoders give zero for such a family).

    Members
    -------
    words : In(stream(cols x 32 bits))
        The weight beats (``golden.bitmod_pack.weight_beats``). ``ready`` depends on the
        state and on ``hold`` only, never on ``valid``.
    start : In(1)
    family, groups, tiles : In
        The job's configuration.
    hold : In(1)
        While high, the tile's last step does not leave.
    emit : Out(1)
        A step leaves in this cycle: ``codes``, ``dt``, ``sg``, ``sq``, ``last_step`` and
        ``tile_end`` describe it (combinational, from registers).
    codes : Out(ArrayLayout(ArrayLayout(code_bits, lanes), cols))
        Each column's codes of the step (zero-extended to the widest built code).
    dt, sg : Out(cols)
    sq : Out(ArrayLayout(scale_bits, cols))
        The group's metadata per column.
    last_step : Out(1)
        The step is its group's last.
    tile_end : Out(1)
        ... of the tile's last group.
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        super().__init__({
            "words": In(stream.Signature(config.weight_beat_bits)),
            "start": In(1),
            "family": In(FAMILY_ID_BITS),
            "groups": In(config.groups_bits),
            "tiles": In(config.tile_count_bits),
            "hold": In(1),
            "emit": Out(1),
            "codes": Out(data.ArrayLayout(data.ArrayLayout(config.code_bits, config.lanes), config.cols)),
            "dt": Out(config.cols),
            "sg": Out(config.cols),
            "sq": Out(data.ArrayLayout(config.scale_bits, config.cols)),
            "last_step": Out(1),
            "tile_end": Out(1),
        })

    def _layout_constants(self, m: Module):
        """The family's codes per word, code words per group, codes in a group's last word, and a flag per
        code width (one-hot), registered."""
        config = self.config
        widths = _code_widths(config)
        max_per_word = WORD_BITS // widths[0]
        per_word = Signal(range(max_per_word + 1), name="codes_per_word")
        code_words = Signal(range(config.words_per_group), name="code_words")
        last_codes = Signal(range(max_per_word + 1), name="last_codes")
        width_flags = Signal(len(widths), name="width_flags")

        def assign(name):
            layout = pack_layout(name, config.group_size, config.scale_bits)
            per_word_value = layout["codes_per_word"]
            m.d.sync += [per_word.eq(per_word_value), code_words.eq(layout["code_words"]),
                         last_codes.eq(config.group_size - (layout["code_words"] - 1) * per_word_value),
                         width_flags.eq(1 << widths.index(layout["code_bits"]))]

        with m.Switch(self.family):
            for name in config.families:
                with m.Case(FAMILY_IDS[name]):
                    assign(name)
            with m.Default():
                assign(config.families[0])
        return per_word, code_words, last_codes, width_flags, widths

    def elaborate(self, platform):
        m = Module()
        config = self.config
        cols, lanes, code_bits = config.cols, config.lanes, config.code_bits
        per_word, code_words, last_codes, width_flags, widths = self._layout_constants(m)
        max_per_word = WORD_BITS // widths[0]
        slots = queue_slots(config)
        count = Signal(range(slots + 1), name="queue_count")     # codes in each column's queue
        # Registered views of `count` (the decisions below read flip-flops, not compares):
        # one-hot, at least a step, room for a word without a step, room with one.
        count_hot = Signal(slots + 1, name="count_hot", init=1)
        enough, room, room_after_step = Signal(), Signal(init=1), Signal(init=1)
        count_next = Signal.like(count, name="count_next")
        m.d.sync += [count.eq(count_next), count_hot.eq(Cat(count_next == k for k in range(slots + 1))),
                     enough.eq(count_next >= lanes), room.eq(count_next <= lanes),
                     room_after_step.eq(count_next <= 2 * lanes)]

        # ---- emitter: a step whenever the queue holds `lanes` codes --------------------------
        emitting, step = Signal(), Signal(range(config.steps_per_group))
        group, tile = Signal.like(self.groups, name="emit_group"), Signal.like(self.tiles, name="emit_tile")
        last_step, group_is_last, tile_is_last = Signal(), Signal(), Signal()
        steps_per_group = config.steps_per_group
        tile_end = last_step & group_is_last
        emit = Signal()
        m.d.comb += emit.eq(emitting & enough & ~(tile_end & self.hold))
        emit_last = emit & last_step
        with m.If(self.start):
            m.d.sync += [emitting.eq(1), step.eq(0), group.eq(0), tile.eq(0),
                         last_step.eq(steps_per_group == 1), group_is_last.eq(self.groups == 1),
                         tile_is_last.eq(self.tiles == 1)]
        with m.If(emit):
            m.d.sync += [step.eq(step + 1), last_step.eq(step == steps_per_group - 2)]
            with m.If(last_step):
                m.d.sync += [step.eq(0), group.eq(group + 1), last_step.eq(steps_per_group == 1),
                             group_is_last.eq(group + 2 == self.groups)]
                with m.If(group_is_last):
                    m.d.sync += [group.eq(0), tile.eq(tile + 1), group_is_last.eq(self.groups == 1),
                                 tile_is_last.eq(tile + 2 == self.tiles)]
                    with m.If(tile_is_last):
                        m.d.sync += emitting.eq(0)

        # ---- appender: the metadata beat, then the code words ---------------------------------
        # A word goes in while the queue keeps at most `lanes` codes after this cycle's step;
        # the last word of a group adds only its group's codes (the padding is overwritten).
        in_meta, in_codes = Signal(), Signal()
        words_left = Signal(range(config.words_per_group), name="words_left")
        last_word = Signal()
        a_group = Signal.like(self.groups, name="append_group")
        a_tile = Signal.like(self.tiles, name="append_tile")
        a_group_last, a_tile_last = Signal(), Signal()
        kept = Signal(range(slots + 1), name="kept")                 # the codes left after this cycle's step
        m.d.comb += kept.eq(Mux(emit, count - lanes, count))
        # `kept == p` for the positions p <= lanes where a word may go.
        kept_is = [Signal(name=f"kept_is{p}") for p in range(lanes + 1)]
        for p, flag in enumerate(kept_is):
            m.d.comb += flag.eq(Mux(emit, count_hot[p + lanes] if p + lanes <= slots else 0, count_hot[p]))
        # The metadata of the groups in the queue, oldest first (the emitter's group at the head).
        head_valid, second_valid = Signal(), Signal()
        meta_room = ~(head_valid & second_valid) | emit_last
        can_append = in_codes & Mux(emit, room_after_step, room)
        take_meta = Signal()
        append = Signal()
        m.d.comb += [self.words.ready.eq((in_meta & meta_room) | can_append),
                     take_meta.eq(self.words.valid & in_meta & meta_room),
                     append.eq(self.words.valid & can_append)]
        m.d.comb += count_next.eq(kept + Mux(append, Mux(last_word, last_codes, per_word), 0))
        with m.If(take_meta):
            m.d.sync += [in_meta.eq(0), in_codes.eq(1), words_left.eq(code_words), last_word.eq(code_words == 1)]
        with m.If(append):
            m.d.sync += [words_left.eq(words_left - 1), last_word.eq(words_left == 2)]
            with m.If(last_word):
                m.d.sync += [in_codes.eq(0), in_meta.eq(~(a_group_last & a_tile_last)),
                             a_group.eq(a_group + 1), a_group_last.eq(a_group + 2 == self.groups)]
                with m.If(a_group_last):
                    m.d.sync += [a_group.eq(0), a_group_last.eq(self.groups == 1), a_tile.eq(a_tile + 1),
                                 a_tile_last.eq(a_tile + 2 == self.tiles)]
        # The FIFO: a push fills the head if it is empty (or leaves), else the second entry.
        push_head = take_meta & (~head_valid | (emit_last & ~second_valid))
        push_second = take_meta & ~push_head
        with m.If(emit_last):
            m.d.sync += [head_valid.eq(second_valid | take_meta), second_valid.eq(second_valid & take_meta)]
        with m.Elif(take_meta):
            m.d.sync += [head_valid.eq(1), second_valid.eq(head_valid)]
        with m.If(self.start):
            m.d.sync += [in_meta.eq(1), in_codes.eq(0), a_group.eq(0), a_tile.eq(0), head_valid.eq(0),
                         second_valid.eq(0), a_group_last.eq(self.groups == 1), a_tile_last.eq(self.tiles == 1),
                         count.eq(0), count_hot.eq(1), enough.eq(0), room.eq(1), room_after_step.eq(1)]

        # ---- data: each column's metadata FIFO and code queue --------------------------------
        layout = pack_layout(config.families[0], config.group_size, config.scale_bits)
        # Where the word's codes go: slot `kept + j` takes code j; `written[i]`: slot i takes one.
        at = [Signal(name=f"append_at{p}") for p in range(lanes + 1)]
        m.d.comb += [at[p].eq(append & kept_is[p]) for p in range(lanes + 1)]
        for c in range(cols):
            word = self.words.payload[c * WORD_BITS:(c + 1) * WORD_BITS]
            meta = [Signal(2 + config.scale_bits, name=f"meta{c}_{i}", reset_less=True) for i in range(2)]
            with m.If(push_head):
                m.d.sync += meta[0].eq(word[:2 + config.scale_bits])
            with m.Elif(emit_last):
                m.d.sync += meta[0].eq(meta[1])
            with m.If(push_second):
                m.d.sync += meta[1].eq(word[:2 + config.scale_bits])
            m.d.comb += [self.dt[c].eq(meta[0][layout["dt_bit"]]), self.sg[c].eq(meta[0][layout["sg_bit"]]),
                         self.sq[c].eq(meta[0][layout["sq_shift"]:])]
            # The word cut into codes by the family's width (an AND-OR over the built widths).
            codes = []
            for j in range(max_per_word):
                candidates = [word[j * bits:(j + 1) * bits] & width_flags[index].replicate(bits)
                              for index, bits in enumerate(widths) if (j + 1) * bits <= WORD_BITS]
                code = Signal(code_bits, name=f"word{c}_code{j}")
                m.d.comb += code.eq(functools.reduce(operator.or_, candidates))
                codes.append(code)
            queue = [Signal(code_bits, name=f"queue{c}_{i}", reset_less=True) for i in range(slots)]
            for i, slot in enumerate(queue):
                shifted = queue[i + lanes] if i + lanes < slots else 0
                incoming = functools.reduce(operator.or_, [
                    codes[i - p] & at[p].replicate(code_bits)
                    for p in range(min(i, lanes) + 1) if i - p < max_per_word], 0)
                written = functools.reduce(operator.or_, [at[p] for p in range(min(i, lanes) + 1)], 0)
                with m.If(written):
                    m.d.sync += slot.eq(incoming)
                with m.Elif(emit):
                    m.d.sync += slot.eq(shifted)
            for lane in range(lanes):
                m.d.comb += self.codes[c][lane].eq(queue[lane])
        m.d.comb += [self.emit.eq(emit), self.last_step.eq(last_step), self.tile_end.eq(tile_end)]
        return m


def step_sequencer(m: Module, config: PeArrayConfig, w,
                   job) -> tuple[ParallelSteps, Callable[[Value, Value], None]]:
    """A :class:`ParallelSteps` on the array's weight stream ``w``, driving ``job``'s
    (:class:`hdl.array_io.JobControl`) activation reads: one per step, back to 0 after a
    tile's last. A tile's last step waits while the previous tile still closes (its last
    step taken, its results not yet copied) or the result drain is full.

    Returns the front end and ``drained(full, copy)``, to call with
    :func:`hdl.array_io.drain_results`' outputs.
    """
    m.submodules.front = front = ParallelSteps(config)
    wiring.connect(m, wiring.flipped(w), front.words)
    closing, results_full = Signal(name="closing"), Signal(name="results_full")
    m.d.comb += [front.start.eq(job.start), front.family.eq(job.family_id), front.groups.eq(job.groups),
                 front.tiles.eq(job.col_tiles), front.hold.eq(closing | results_full),
                 job.read_enable.eq(front.emit)]
    with m.If(front.emit):
        m.d.sync += job.read_addr.eq(job.read_addr + 1)
        with m.If(front.tile_end):
            m.d.sync += [job.read_addr.eq(0), closing.eq(1)]

    def drained(full: Value, copy: Value) -> None:
        m.d.comb += results_full.eq(full)
        with m.If(copy):
            m.d.sync += closing.eq(0)

    return front, drained
