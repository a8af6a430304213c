"""The BitMoD PE array: R rows (tokens) x C columns (output channels) of bit-serial PEs.

Data path (docs/pe_array.md has the picture and the stream formats)::

    act stream --> activation buffer (one Memory per row) --------> a[r] ---+
    w stream ----> WeightSteps (skid, windows, decoders) ---> step --> digit bus[c]
                                                                            |
                                        PE[r][c] = lanes x (select, invert), adder tree,
                                        group accumulator --> DequantUnit[r][c] (acc)
    o stream <---- one row of C results per beat <------------------------------+

A *job* loads the activations of R tokens (``K = groups * G`` int8 each), then runs
``col_tiles`` column tiles over them: each tile streams the packed weights of C output
channels, accumulates, dequantizes group by group and returns R beats of C results.

The parts: :class:`hdl.array_io.JobControl` (job inputs, activation buffer),
:class:`hdl.weight_steps.WeightSteps` (front end), :class:`hdl.digit_bus.DigitBus` (step
sequencer and digit bus), a :class:`PeCell` per PE and :func:`hdl.array_io.drain_results`.
"""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.pe_array_config import PeArrayConfig

from .array_io import JobControl, array_members, delay_line, drain_results, result_fields
from .digit_bus import DigitBus
from .pe import BitSerialPE, DequantUnit, ScaleSerializer, lane_select_layout, neg_count_bits
from .replica import replicas
from .weight_steps import WeightSteps

__all__ = ["PeArray", "PeCell"]


class PeArray(wiring.Component):
    """The PE array with its activation buffer, weight front end and result stream.

    Members
    -------
    family : In(3)
        Run-time weight family (``arch.bitmod.FAMILY_IDS``). Sampled in every cycle
        before a job's first activation beat is taken: set it at least one cycle before
        that beat and hold it until the beat is taken.
    groups : In
        ``K / group_size`` of the job (1..max_k / group_size), sampled likewise.
    col_tiles : In(16)
        Column tiles per job (>= 1), sampled likewise.
    fp16 : In(1)
        ``activations="both"`` builds only: the job's activations are FP16 (else int8),
        sampled likewise.
    act : In(stream(lanes x int8)), FP16 builds In(stream(lanes x 16 bits))
        The job's activations, row by row: for r in 0..R-1, for each step of K / lanes,
        lanes consecutive ``a_q[r, k]`` (lane ``l`` at bits ``8l``); in an FP16 build
        binary16 bits (lane ``l`` at bits ``16l``; an int8 job: the int8 in the low byte).
    w : In(stream(cols x 32 bits))
        For each tile, each group, each word index of a record: that word of the
        ``cols`` records (``golden.bitmod_pack.weight_beats``).
    o : Out(stream(cols x acc_bits)), FP16 builds Out(stream(struct))
        For each tile, R beats: row r's ``acc`` of the tile's C columns (signed,
        column c at bits ``c * acc_bits``). An FP16 build's beat is
        ``hdl.array_io.result_layout``: ``acc`` (those results), then the token's
        ``exponent`` ``er`` and the job's sticky ``invalid`` (an Inf or NaN activation was
        taken); both 0 in an int8 job. The float result is computed on the host
        (``golden.bitmod.fp16_output``).
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        super().__init__(array_members(config))

    def elaborate(self, platform):
        m = Module()
        config = self.config
        rows, cols = config.rows, config.cols
        m.submodules.job = job = JobControl(config, self.act, self.family, self.groups, self.col_tiles,
                                            prefetch=True, late=True, column_copies=cols,
                                            fp16=self.fp16 if config.activations == "both" else None)

        # ---- weight front end -----------------------------------------------------------------
        m.submodules.front = front = WeightSteps(config)
        wiring.connect(m, wiring.flipped(self.w), front.words)
        m.d.comb += front.start.eq(job.start)
        for c, column in enumerate(job.columns):
            m.d.comb += [front.family[c].eq(column["family_id"]), front.groups[c].eq(column["groups"]),
                         front.tiles[c].eq(column["col_tiles"])]

        # ---- step sequencer and digit bus -----------------------------------------------------
        m.submodules.bus = bus = DigitBus(config)
        wiring.connect(m, front.steps, bus.steps)
        m.d.comb += [bus.family.eq(job.family_id), bus.loading.eq(job.loading),
                     job.read_enable.eq(bus.read_enable), job.read_addr.eq(bus.read_addr)]
        if config.fp16:
            m.d.comb += job.read_addr_next.eq(bus.read_addr_next)

        # ---- fan-out: a registered copy of the digit bus for every ROWS_PER_COPY rows --------
        # (the activations are taken a cycle later to meet it: JobControl(late=True))
        copies = config.row_copies
        sel_copies = [replicas(m, bus.sel[c], copies, f"sel{c}", reset_less=True) for c in range(cols)]
        neg_copies = [replicas(m, bus.neg_count[c], copies, f"neg_count{c}", reset_less=True) for c in range(cols)]
        # t, valid and last per cell (row group, column).
        t_copies = [replicas(m, bus.t[c], copies, f"t{c}", reset_less=True) for c in range(cols)]
        valid_copies = [replicas(m, bus.valid[c], copies, f"valid{c}") for c in range(cols)]
        last_copies = [replicas(m, bus.last[c], copies, f"last{c}") for c in range(cols)]

        # ---- the PEs and their dequantization units -------------------------------------------
        cells = [[PeCell(config) for _ in range(cols)] for _ in range(rows)]
        # The group's scale and tile end must reach a cell with its `done`, `latency` cycles
        # after the bus: a delay line per column, whose last stage has a copy per cell.
        stages = cells[0][0].latency - 1
        sq_at_done = [replicas(m, delay_line(m, bus.sq[c], stages, f"sq{c}", reset_less=True), copies,
                               f"sq{c}_done", reset_less=True) for c in range(cols)]
        tile_end_at_done = [replicas(m, delay_line(m, bus.tile_end[c], stages, f"tile_end{c}"), copies,
                                     f"tile_end{c}_done") for c in range(cols)]
        for r, row in enumerate(cells):
            g = config.row_group(r)
            for c, cell in enumerate(row):
                m.submodules[f"cell{r}_{c}"] = cell
                m.d.comb += [
                    cell.a.eq(job.activations[r][c]),
                    cell.sel.eq(sel_copies[c][g]),
                    cell.neg_count.eq(neg_copies[c][g]),
                    cell.t.eq(t_copies[c][g]),
                    cell.valid.eq(valid_copies[c][g]),
                    cell.last.eq(last_copies[c][g]),
                    cell.sq.eq(sq_at_done[c][g]),
                    cell.tile_end.eq(tile_end_at_done[c][g]),
                ]

        # ---- results: after the tile's last dequantization, R beats of C results -------------
        # An FP16 build's beats also carry the row's exponent and the job's flag (job.tags),
        # moved with the row's results under the control of its column 0.
        extra = [[job.tags[r]] if config.fp16 else [] for r in range(rows)]
        full, copy = drain_results(
            m, self.o, [[cell.acc for cell in row] + extra[r] for r, row in enumerate(cells)],
            group_of=[config.row_group(r) for r in range(rows)],
            tile_done=[[cell.tile_done for cell in row] + [row[0].tile_done] * len(extra[r])
                       for r, row in enumerate(cells)],
            dequantizing_next=[[cell.dequantizing_next for cell in row]
                               + [row[0].dequantizing_next] * len(extra[r]) for r, row in enumerate(cells)],
            job=job, clear=[[cell.clear for cell in row] + [Signal(name=f"tag_clear{r}")] * len(extra[r])
                            for r, row in enumerate(cells)],
            fields=lambda payload: result_fields(config, payload))
        m.d.comb += [bus.results_full.eq(full), bus.tile_copied.eq(copy)]
        return m


class PeCell(wiring.Component):
    """One PE of the array with a scale serializer and a dequantization unit of its own.

    A :class:`hdl.pe.BitSerialPE` whose group sums a :class:`hdl.pe.DequantUnit`, fed by
    its own :class:`hdl.pe.ScaleSerializer`, multiplies by the group's scale and adds to
    ``acc``; both are loaded by the PE's own ``done``, so no control net of the unit
    reaches beyond the cell.

    Members
    -------
    a, sel, neg_count, t, valid, last : In
        The PE's inputs (:class:`hdl.pe.BitSerialPE`), one digit per cycle.
    sq : In(scale_bits)
        The group's scale: sampled ``latency`` cycles after the group's last digit
        (``valid & last``), in the cycle the group sum is done.
    tile_end : In(1)
        Sampled with ``sq``: the group is its tile's last.
    clear : In(1)
        Zeroes ``acc`` in the next cycle; it must not come while the unit dequantizes.
    acc : Out(signed(acc_bits))
        The tile's sum of dequantized group sums (a register).
    tile_done : Out(1)
        The tile's last group sum is done (``latency`` cycles after its last digit, one
        cycle, combinational from the PE's ``done`` and ``tile_end``): ``acc`` holds the
        tile's result in the first following cycle in which the unit does not dequantize.
    dequantizing_next : Out(1)
        The unit dequantizes in the next cycle (``scale_bits`` cycles after each ``done``).
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        self._pe = BitSerialPE(config.lanes, config.max_shift, config.terms, config.group_sum_bits,
                               activation_bits=config.lane_bits)
        #: Cycles from a group's last digit to its ``done`` (the PE's).
        self.latency = self._pe.latency
        super().__init__({
            "a": In(data.ArrayLayout(signed(config.lane_bits), config.lanes)),
            "sel": In(data.ArrayLayout(lane_select_layout(config.max_shift), config.lanes)),
            "neg_count": In(neg_count_bits(config.lanes)),
            "t": In(self._pe.t.shape()),
            "valid": In(1),
            "last": In(1),
            "sq": In(config.scale_bits),
            "tile_end": In(1),
            "clear": In(1),
            "acc": Out(signed(config.acc_bits)),
            "tile_done": Out(1),
            "dequantizing_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.pe = pe = self._pe
        m.submodules.dequant = unit = DequantUnit(config.group_sum_bits, config.scaled_group_bits, config.acc_bits)
        m.submodules.scale = serializer = ScaleSerializer(config.scale_bits)
        m.d.comb += [
            pe.a.eq(self.a), pe.sel.eq(self.sel), pe.neg_count.eq(self.neg_count), pe.t.eq(self.t),
            pe.valid.eq(self.valid), pe.last.eq(self.last),
            serializer.sq.eq(self.sq),
            serializer.load.eq(pe.done),
            serializer.load_next.eq(pe.done_next),
            unit.group_sum.eq(pe.group_sum),
            unit.load.eq(pe.done),
            unit.add.eq(serializer.add),
            unit.busy.eq(serializer.busy),
            unit.clear.eq(self.clear),
            self.acc.eq(unit.acc),
            self.tile_done.eq(pe.done & self.tile_end),
            self.dequantizing_next.eq(serializer.active_next),
        ]
        return m
