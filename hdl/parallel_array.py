"""The baseline: a bit-parallel int8 x int4 PE array with the PE array's streams and protocol.

Each lane multiplies its int8 activation by a whole int4 weight every cycle (one step
per cycle, so one code word of 8 codes per column per cycle: lanes is 8). With
``multiplier="lut"`` the product is two radix-4 Booth partial products (select 0, a
or 2a, invert; the column counts the inversions once, as in the bit-serial PE) and one
add, which yosys cannot map to a DSP; with ``multiplier="dsp"`` it is ``*`` (MULT18X18D
on ECP5). Group accumulation,
the bit-serial dequantization, the activation buffer and the result stream are those
of :class:`hdl.pe_array.PeArray`, so the two differ only in how a lane multiplies.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import ACTIVATION_BITS, WORD_BITS, pack_layout, signed_bits
from arch.pe_array_config import PeArrayConfig

from .array_io import JobControl, array_members, delay_line, drain_results
from .pe import DequantUnit, ScaleSerializer, adder_tree, lane_select_layout, lane_sum_bits

__all__ = ["MULTIPLIERS", "check_multiplier", "neg_weight", "ParallelPE", "ParallelArray", "parallel_config",
           "parallel_results"]

MULTIPLIERS = ("lut", "dsp")
_WEIGHT_BITS = 5            # an int4 value with the group sign folded in: -8..8


def neg_weight(terms: int) -> int:
    """``sum_t 4**t`` over ``terms`` digits: a lane's most weight in the column's count of negations."""
    return ((1 << 2 * terms) - 1) // 3


def check_multiplier(multiplier) -> str:
    """``multiplier`` if it is one of :data:`MULTIPLIERS`, else ValueError naming it."""
    if multiplier not in MULTIPLIERS:
        raise ValueError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, not {multiplier!r}")
    return multiplier


def parallel_config(config: PeArrayConfig) -> PeArrayConfig:
    """Check that ``config`` suits the int4 baseline; return it."""
    if config.families != ("int4",):
        raise ValueError(f"families of the bit-parallel baseline must be int4, not {','.join(config.families)}")
    if config.lanes != 8:
        raise ValueError(f"lanes of the bit-parallel int4 baseline must be 8 (one code word per step), "
                         f"not {config.lanes}")
    group_cycles = config.group_size // config.lanes
    if group_cycles <= config.scale_bits:
        raise ValueError(f"group_size={config.group_size} gives groups of {group_cycles} cycles, too few for the "
                         f"bit-serial dequantization of scale_bits={config.scale_bits}")
    return config


class ParallelPE(wiring.Component):
    """``lanes`` int8 x int4 multipliers, their adder tree and the group accumulator.

    Same contract as :class:`hdl.pe.BitSerialPE`, with whole weights instead of one
    digit per cycle: ``dsp`` takes ``v`` (the weight with its group sign, ``|v| <=
    max_abs``: 8 for int4); ``lut`` takes ``sel[l][t]``, the ``terms`` radix-4 digits
    of each weight (Booth digits for int4, sign folded in; shifts up to ``max_shift``),
    and ``neg_count``, the column's ``sum_t 4**t * sum_l neg[l][t]``. ``latency``
    cycles after a ``valid & last`` input, ``done`` pulses with ``group_sum``;
    ``done_next`` is ``done`` a cycle early.
    """

    def __init__(self, lanes: int, group_sum_bits: int, multiplier: str, *, max_abs: int = 8, terms: int = 2,
                 max_shift: int = 1):
        check_multiplier(multiplier)
        self.lanes, self.group_sum_bits, self.multiplier = lanes, group_sum_bits, multiplier
        self.terms, self.max_shift = terms, max_shift
        self.value_bits = signed_bits(max_abs)
        self.sum_bits = lane_sum_bits(lanes, (max_abs - 1).bit_length())     # |v| <= max_abs <= 2**that
        # A lane's leaves of the adder tree: its product, or (lut) a sum of two partial products each.
        self.leaves = -(-terms // 2) if multiplier == "lut" else 1
        inputs = lanes * self.leaves + (multiplier == "lut")
        self.latency = 1 + max(1, (inputs - 1).bit_length()) + 1
        super().__init__({
            "a": In(data.ArrayLayout(signed(ACTIVATION_BITS), lanes)),
            "v": In(data.ArrayLayout(signed(self.value_bits), lanes)),
            "sel": In(data.ArrayLayout(data.ArrayLayout(lane_select_layout(max_shift), terms), lanes)),
            "neg_count": In(range(neg_weight(terms) * lanes + 1)),
            "valid": In(1),
            "last": In(1),
            "group_sum": Out(signed(group_sum_bits)),
            "done": Out(1),
            "done_next": Out(1),
        })

    def _products(self, lane) -> list:
        """The lane's leaves: ``a * v``, or (lut) the sums of its partial products two by two."""
        a = self.a[lane]
        if self.multiplier == "dsp":
            return [a * self.v[lane]]
        partial = []
        for index, sel in enumerate(self.sel[lane]):
            picked = Mux(sel.e[0], a.as_signed(), 0)
            for shift in range(1, self.max_shift + 1):
                picked = picked | Mux(sel.e[shift], (a << shift).as_signed(), 0)
            bits = ACTIVATION_BITS + self.max_shift
            partial.append((picked ^ sel.neg.replicate(bits).as_signed()) << (2 * index))
        return [partial[i] + partial[i + 1] if i + 1 < len(partial) else partial[i]
                for i in range(0, len(partial), 2)]

    def elaborate(self, platform):
        m = Module()
        products = []
        for lane in range(self.lanes):
            leaves = self._products(lane)
            for index, leaf in enumerate(leaves):
                name = f"product{lane}" if len(leaves) == 1 else f"product{lane}_{index}"
                product = Signal(signed(ACTIVATION_BITS + self.value_bits), name=name)
                m.d.sync += product.eq(leaf)
                products.append(product)
        if self.multiplier == "lut":
            count = Signal.like(self.neg_count, name="neg_count_1")
            m.d.sync += count.eq(self.neg_count)
            products.append(Cat(count, 0).as_signed())
        tree, tree_latency = adder_tree(m, products, self.sum_bits, 1)
        assert 1 + tree_latency + 1 == self.latency
        valid, last = self.valid, self.last
        for stage in range(self.latency - 1):
            valid_next, last_next = Signal(name=f"valid_{stage}"), Signal(name=f"last_{stage}")
            m.d.sync += [valid_next.eq(valid), last_next.eq(last)]
            if stage == self.latency - 2:
                m.d.comb += self.done_next.eq(valid & last)
            valid, last = valid_next, last_next
        accumulator = Signal(signed(self.group_sum_bits))
        m.d.comb += [self.group_sum.eq(accumulator + tree), self.done.eq(valid & last)]
        with m.If(valid & last):
            m.d.sync += accumulator.eq(0)
        with m.Elif(valid):
            m.d.sync += accumulator.eq(self.group_sum)
        return m


class ParallelArray(wiring.Component):
    """The bit-parallel int4 baseline with :class:`hdl.pe_array.PeArray`'s members."""

    def __init__(self, config: PeArrayConfig, multiplier: str = "lut"):
        self.config = parallel_config(config)
        check_multiplier(multiplier)
        self.multiplier = multiplier
        super().__init__(array_members(config))

    def elaborate(self, platform):
        m = Module()
        config = self.config
        rows, cols, lanes = config.rows, config.cols, config.lanes
        layout = pack_layout("int4", config.group_size, config.scale_bits)
        m.submodules.job = job = JobControl(config, self.act, self.family, self.groups, self.col_tiles)

        # ---- weight sequencer: a metadata beat, then one step per code-word beat ------------
        running, meta_phase, closing = Signal(), Signal(init=1), Signal()
        step = Signal(range(config.steps_per_group))
        group = Signal.like(job.groups)
        tile = Signal.like(job.col_tiles)
        sq = [Signal(config.scale_bits, name=f"sq{c}") for c in range(cols)]
        sg = [Signal(name=f"sg{c}") for c in range(cols)]
        # Registered flags: this step is its group's last, this group its tile's last, this tile its job's last.
        last_step, group_is_last, tile_is_last = Signal(), Signal(), Signal()
        steps_per_group = config.steps_per_group
        with m.If(job.start):
            m.d.sync += [running.eq(1), meta_phase.eq(1), step.eq(0), group.eq(0), tile.eq(0),
                         last_step.eq(steps_per_group == 1), group_is_last.eq(job.groups == 1),
                         tile_is_last.eq(job.col_tiles == 1)]
        take_meta = running & meta_phase
        results_full = Signal()
        last_group = last_step & group_is_last
        last_tile = last_group & tile_is_last
        # A tile ends only after the previous one has left the accumulators and the results.
        take_step = running & ~meta_phase & ~(last_group & (closing | results_full))
        m.d.comb += self.w.ready.eq(take_meta | take_step)
        words = [self.w.payload[c * WORD_BITS:(c + 1) * WORD_BITS] for c in range(cols)]
        with m.If(self.w.valid & take_meta):
            m.d.sync += meta_phase.eq(0)
            for c in range(cols):
                m.d.sync += [sq[c].eq(words[c][layout["sq_shift"]:layout["sq_shift"] + config.scale_bits]),
                             sg[c].eq(words[c][layout["sg_bit"]])]
        accept = self.w.valid & take_step
        m.d.comb += [job.read_enable.eq(accept)]
        with m.If(accept):
            m.d.sync += [step.eq(step + 1), job.read_addr.eq(job.read_addr + 1),
                         last_step.eq(step == steps_per_group - 2)]
            with m.If(last_step):
                m.d.sync += [step.eq(0), group.eq(group + 1), meta_phase.eq(1),
                             last_step.eq(steps_per_group == 1), group_is_last.eq(group + 2 == job.groups)]
            with m.If(last_group):
                m.d.sync += [group.eq(0), tile.eq(tile + 1), closing.eq(1), job.read_addr.eq(0),
                             group_is_last.eq(job.groups == 1), tile_is_last.eq(tile + 2 == job.col_tiles)]
            with m.If(last_tile):
                m.d.sync += [tile.eq(0), running.eq(0)]

        # Registered twice like PeArray's digit bus, to meet the activations.
        values = [Signal(data.ArrayLayout(signed(_WEIGHT_BITS), lanes), name=f"v{c}") for c in range(cols)]
        bus = [Signal.like(v, name=f"bus_v{c}") for c, v in enumerate(values)]
        booth_layout = data.ArrayLayout(data.ArrayLayout(lane_select_layout(1), 2), lanes)
        selects = [Signal(booth_layout, name=f"booth{c}") for c in range(cols)]
        bus_sel = [Signal(booth_layout, name=f"bus_booth{c}") for c in range(cols)]
        counts = [Signal(range(5 * lanes + 1), name=f"count{c}") for c in range(cols)]
        bus_count = [Signal.like(count, name=f"bus_count{c}") for c, count in enumerate(counts)]
        step_valid, step_last, step_tile_end = Signal(), Signal(), Signal()
        bus_valid, bus_last, bus_tile_end = Signal(), Signal(), Signal(name="bus_tile_end")
        step_sq = [Signal(config.scale_bits, name=f"step_sq{c}") for c in range(cols)]
        bus_sq = [Signal(config.scale_bits, name=f"bus_sq{c}") for c in range(cols)]
        for c in range(cols):
            negatives = []
            for lane in range(lanes):
                code = words[c][4 * lane:4 * lane + 4]
                m.d.sync += values[c][lane].eq(Mux(sg[c], -code.as_signed(), code.as_signed()))
                bits = [0, code[0], code[1], code[2], code[3]]           # b[-1] = 0
                for index in range(2):
                    below, low, high = bits[2 * index], bits[2 * index + 1], bits[2 * index + 2]
                    nonzero = ~((high == low) & (low == below))
                    sel = selects[c][lane][index]
                    neg = Signal(name=f"neg{c}_{lane}_{index}")
                    m.d.comb += neg.eq(nonzero & (high ^ sg[c]))
                    m.d.sync += [sel.e[0].eq(nonzero & (low != below)), sel.e[1].eq(nonzero & (low == below)),
                                 sel.neg.eq(neg)]
                    negatives.append(neg << (2 * index))
            m.d.sync += [counts[c].eq(sum(negatives)), bus_count[c].eq(counts[c]), bus_sel[c].eq(selects[c])]
            m.d.sync += [step_sq[c].eq(sq[c]), bus[c].eq(values[c]), bus_sq[c].eq(step_sq[c])]
        m.d.sync += [
            step_valid.eq(accept), step_last.eq(accept & last_step), step_tile_end.eq(accept & last_group),
            bus_valid.eq(step_valid), bus_last.eq(step_last), bus_tile_end.eq(step_tile_end),
        ]

        # ---- PEs, dequantization, results ------------------------------------------------------
        pes = [[ParallelPE(lanes, config.group_sum_bits, self.multiplier) for _ in range(cols)]
               for _ in range(rows)]
        full, copy = parallel_results(m, config, self.o, job, pes, bus_sq, bus_tile_end, lambda r, c, pe: [
            pe.a.eq(job.activations[r][0]), pe.v.eq(bus[c]), pe.sel.eq(bus_sel[c]),
            pe.neg_count.eq(bus_count[c]), pe.valid.eq(bus_valid), pe.last.eq(bus_last)])
        m.d.comb += results_full.eq(full)
        with m.If(copy):
            m.d.sync += closing.eq(0)
        return m


def parallel_results(m: Module, config: PeArrayConfig, o, job: JobControl, pes: list, bus_sq: list, bus_tile_end,
                     inputs) -> tuple[Signal, Signal]:
    """The bit-parallel PEs ``pes[r][c]`` with their dequantization units, scale serializers and result drain.

    ``bus_sq[c]`` (column c's group scale) and ``bus_tile_end`` (the tile's last step)
    come with the PEs' inputs; ``inputs(r, c, pe)`` gives the statements that drive PE
    ``(r, c)``'s inputs. All PEs move in lockstep, so PE (0, 0)'s ``done`` loads one
    serializer per column. Returns :func:`hdl.array_io.drain_results`' ``(full, copy)``.
    """
    rows, cols = config.rows, config.cols
    stages = pes[0][0].latency - 1
    sq_at_done = [delay_line(m, bus_sq[c], stages, f"sq{c}") for c in range(cols)]
    tile_end_at_done = delay_line(m, bus_tile_end, stages, "tile_end")
    clear = [[Signal(name=f"clear{r}_{c}") for c in range(cols)] for r in range(rows)]
    serializers = []
    for c in range(cols):
        serializer = ScaleSerializer(config.scale_bits)
        m.submodules[f"scale{c}"] = serializer
        m.d.comb += [serializer.sq.eq(sq_at_done[c]), serializer.load.eq(pes[0][0].done),
                     serializer.load_next.eq(pes[0][0].done_next)]
        serializers.append(serializer)
    accs = []
    for r in range(rows):
        row = []
        for c in range(cols):
            pe, unit = pes[r][c], DequantUnit(config.group_sum_bits, config.scaled_group_bits, config.acc_bits)
            m.submodules[f"pe{r}_{c}"], m.submodules[f"dequant{r}_{c}"] = pe, unit
            m.d.comb += [
                *inputs(r, c, pe),
                unit.group_sum.eq(pe.group_sum), unit.load.eq(pe.done),
                unit.add.eq(serializers[c].add), unit.busy.eq(serializers[c].busy),
                unit.clear.eq(clear[r][c]),
            ]
            row.append(unit.acc)
        accs.append(row)
    return drain_results(m, o, accs, group_of=[0] * rows,
                         tile_done=[[pes[0][0].done & tile_end_at_done] * cols] * rows,
                         dequantizing_next=[[s.active_next for s in serializers]] * rows, job=job, clear=clear)
