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
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import ACTIVATION_BITS, FAMILY_ID_BITS, FAMILY_IDS, family
from arch.pe_array_config import PeArrayConfig

from .array_io import JobControl, drain_results
from .pe import BitSerialPE, DequantUnit, ScaleSerializer, lane_select_layout
from .replica import replicas
from .weight_steps import WeightSteps

__all__ = ["PeArray"]


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
    act : In(stream(lanes x int8))
        The job's activations, row by row: for r in 0..R-1, for each step of K / lanes,
        lanes consecutive ``a_q[r, k]`` (lane ``l`` at bits ``8l``).
    w : In(stream(cols x 32 bits))
        For each tile, each group, each word index of a record: that word of the
        ``cols`` records (``golden.bitmod_pack.weight_beats``).
    o : Out(stream(cols x acc_bits))
        For each tile, R beats: row r's ``acc`` of the tile's C columns (signed,
        column c at bits ``c * acc_bits``).
    """

    def __init__(self, config: PeArrayConfig):
        self.config = config
        self.result_layout = data.ArrayLayout(signed(config.acc_bits), config.cols)
        super().__init__({
            "family": In(FAMILY_ID_BITS),
            "groups": In(config.max_groups.bit_length()),
            "col_tiles": In(config.tile_count_bits),
            "act": In(stream.Signature(data.ArrayLayout(signed(ACTIVATION_BITS), config.lanes))),
            "w": In(stream.Signature(config.weight_beat_bits)),
            "o": Out(stream.Signature(self.result_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        rows, cols, lanes = config.rows, config.cols, config.lanes

        job = JobControl(config, self.act, self.family, self.groups, self.col_tiles, prefetch=True, late=True,
                         column_copies=cols)
        m.submodules.job = job
        family_id = job.family_id
        loading, start, activations = job.loading, job.start, job.activations
        read_addr, read_enable = job.read_addr, job.read_enable
        last_term = Signal(range(config.terms))     # terms - 1 of the job's family, registered
        with m.Switch(family_id):
            for name in config.families:
                with m.Case(FAMILY_IDS[name]):
                    m.d.sync += last_term.eq(family(name).terms - 1)
            with m.Default():
                m.d.sync += last_term.eq(family(config.families[0]).terms - 1)

        # ---- weight front end -----------------------------------------------------------------
        m.submodules.front = front = WeightSteps(config)
        wiring.connect(m, wiring.flipped(self.w), front.words)
        m.d.comb += front.start.eq(start)
        for c, column in enumerate(job.columns):
            m.d.comb += [front.family[c].eq(column["family_id"]), front.groups[c].eq(column["groups"]),
                         front.tiles[c].eq(column["col_tiles"])]

        # ---- step sequencer: T cycles per step, one digit index per cycle ----------------------
        step = Signal(front.layout, reset_less=True)        # data: `holding` says when it counts
        holding = Signal()
        digit = Signal(range(config.terms))
        closing = Signal()                       # a tile's last step is in, its results not yet copied
        results_full = Signal()                  # the drain's row chain still holds a tile
        last_digit = digit == last_term
        free = Signal(init=1)                    # registered ~holding | last_digit: a step may come
        accept = Signal()
        # A tile may end only when the previous tile has left the accumulators and the
        # result registers; its other steps overlap the previous tile's dequantization
        # and result beats.
        m.d.comb += [
            accept.eq(front.steps.valid & ~loading & free
                      & ~(front.steps.payload.last_tile & (closing | results_full))),
            front.steps.ready.eq(accept),
            read_enable.eq(accept),
        ]
        # Every family has at least two digits, so a step is never free right after it came.
        # `step` takes the front end's payload whenever a step may come, accepted or not
        # (`holding` says whether it counts): its clock enable is then a flip-flop,
        # `free`, copied per column, and not `accept`, which depends on the stream.
        free_next = Signal(init=1)
        m.d.comb += free_next.eq(Mux(accept, 0, Mux(holding, Mux(last_digit, 1, digit + 1 == last_term), free)))
        m.d.sync += free.eq(free_next)
        free_copies = replicas(m, free_next, cols, "free")
        payload = front.steps.payload
        # The step's counts of negative lanes, per column and digit (the front end gives them per half).
        step_neg = [[Signal(lanes.bit_length(), name=f"step_neg{c}_{t}", reset_less=True)
                     for t in range(config.terms)] for c in range(cols)]
        for c in range(cols):
            with m.If(free_copies[c]):
                m.d.sync += [step.sel[c].eq(payload.sel[c]), step.sq[c].eq(payload.sq[c])]
                m.d.sync += [step_neg[c][t].eq(halves[0] + halves[1])
                             for t, halves in enumerate(payload.neg_halves[c])]
        with m.If(free):
            m.d.sync += [step.last_group.eq(payload.last_group), step.last_tile.eq(payload.last_tile)]
        with m.If(accept):
            m.d.sync += [holding.eq(1), read_addr.eq(read_addr + 1)]
            with m.If(payload.last_tile):
                m.d.sync += [closing.eq(1), read_addr.eq(0)]
        with m.Elif(holding & last_digit):
            m.d.sync += holding.eq(0)
        # The digit index, and a copy of it per column for the column's digit multiplexers.
        digit_next = Signal.like(digit)
        m.d.comb += digit_next.eq(Mux(accept, 0, Mux(holding & ~last_digit, digit + 1, digit)))
        m.d.sync += digit.eq(digit_next)
        digit_copies = replicas(m, digit_next, cols, "digit")

        # The digit bus: what the PEs see a cycle later through their group's copy (below).
        # Data registers without reset (so are the PEs' data paths): `bus_valid` says when
        # they count, and the reset net reaches only the control.
        bus_sel = [Signal(data.ArrayLayout(lane_select_layout(config.max_shift), lanes), name=f"sel{c}",
                          reset_less=True) for c in range(cols)]
        bus_neg = [Signal(lanes.bit_length(), name=f"neg_count{c}", reset_less=True) for c in range(cols)]
        bus_sq = [Signal(config.scale_bits, name=f"bus_sq{c}", reset_less=True) for c in range(cols)]
        for c in range(cols):
            m.d.sync += [
                bus_sel[c].eq(Array(step.sel[c][t] for t in range(config.terms))[digit_copies[c]]),
                bus_neg[c].eq(Array(step_neg[c])[digit_copies[c]]),
                bus_sq[c].eq(step.sq[c]),
            ]
        # The bus's control has a copy per column: each column's copies per row group
        # (below) then stay inside the column.
        bus_t = replicas(m, digit, cols, "bus_t", reset_less=True)
        bus_valid = replicas(m, holding, cols, "bus_valid")
        bus_last = replicas(m, holding & last_digit & step.last_group, cols, "bus_last")
        bus_tile_end = replicas(m, holding & last_digit & step.last_tile, cols, "bus_tile_end")

        # ---- fan-out: a registered copy of the digit bus for every ROWS_PER_COPY rows --------
        # (the activations are taken a cycle later to meet it: JobControl(late=True))
        copies = config.row_copies
        group_of = [config.row_group(r) for r in range(rows)]
        sel_copies = [replicas(m, bus_sel[c], copies, f"sel{c}", reset_less=True) for c in range(cols)]
        neg_copies = [replicas(m, bus_neg[c], copies, f"neg_count{c}", reset_less=True) for c in range(cols)]
        # t, valid and last per cell (row group, column).
        t_copies = [replicas(m, bus_t[c], copies, f"t{c}", reset_less=True) for c in range(cols)]
        valid_copies = [replicas(m, bus_valid[c], copies, f"valid{c}") for c in range(cols)]
        last_copies = [replicas(m, bus_last[c], copies, f"last{c}") for c in range(cols)]

        # ---- the PEs and their dequantization units -------------------------------------------
        pes = [[BitSerialPE(lanes, config.max_shift, config.terms, config.group_sum_bits) for _ in range(cols)]
               for _ in range(rows)]
        latency = pes[0][0].latency
        # Metadata that must arrive with the group sum: a PE's `done` comes `latency - 1`
        # cycles after it sees a group's last digit, which its group's copy shows a cycle
        # after the bus: `latency` registers after the bus.
        # A delay line per column (from the column's bus copies); the last stage has a copy per cell.
        sq_at_done, tile_end_at_done = bus_sq, bus_tile_end
        for stage in range(latency - 1):
            delayed = [Signal.like(s, name=f"sq{c}_d{stage}", reset_less=True) for c, s in enumerate(sq_at_done)]
            tile_end = [Signal(name=f"tile_end{c}_d{stage}") for c in range(cols)]
            m.d.sync += [d.eq(s) for d, s in zip(delayed, sq_at_done, strict=True)]
            m.d.sync += [d.eq(s) for d, s in zip(tile_end, tile_end_at_done, strict=True)]
            sq_at_done, tile_end_at_done = delayed, tile_end
        sq_at_done = [replicas(m, sq_at_done[c], copies, f"sq{c}_done", reset_less=True) for c in range(cols)]
        tile_end_at_done = [replicas(m, tile_end_at_done[c], copies, f"tile_end{c}_done") for c in range(cols)]

        # Every PE has its own dequantization unit and scale serializer, loaded by the
        # PE's own `done`: no control net of a unit reaches beyond its PE.
        serializers, units = [], []
        for r in range(rows):
            g = group_of[r]
            row_serializers, row_units = [], []
            for c in range(cols):
                pe = pes[r][c]
                unit = DequantUnit(config.group_sum_bits, config.scaled_group_bits, config.acc_bits)
                serializer = ScaleSerializer(config.scale_bits)
                m.submodules[f"pe{r}_{c}"] = pe
                m.submodules[f"dequant{r}_{c}"] = unit
                m.submodules[f"scale{r}_{c}"] = serializer
                m.d.comb += [
                    pe.a.eq(activations[r][c]),
                    pe.sel.eq(sel_copies[c][g]),
                    pe.neg_count.eq(neg_copies[c][g]),
                    pe.t.eq(t_copies[c][g]),
                    pe.valid.eq(valid_copies[c][g]),
                    pe.last.eq(last_copies[c][g]),
                    serializer.sq.eq(sq_at_done[c][g]),
                    serializer.load.eq(pe.done),
                    serializer.load_next.eq(pe.done_next),
                    unit.group_sum.eq(pe.group_sum),
                    unit.load.eq(pe.done),
                    unit.add.eq(serializer.add),
                    unit.busy.eq(serializer.busy),
                ]
                row_serializers.append(serializer)
                row_units.append(unit)
            serializers.append(row_serializers)
            units.append(row_units)
        clear = [[unit.clear for unit in row_units] for row_units in units]

        # ---- results: after the tile's last dequantization, R beats of C results -------------
        tile_done = [[pe.done & tile_end_at_done[c][group_of[r]] for c, pe in enumerate(row)]
                     for r, row in enumerate(pes)]
        full, copy = drain_results(m, self.o, [[unit.acc for unit in row_units] for row_units in units],
                                   group_of=group_of, tile_done=tile_done,
                                   dequantizing_next=[[s.active_next for s in row] for row in serializers],
                                   job=job, clear=clear)
        m.d.comb += results_full.eq(full)
        with m.If(copy):
            m.d.sync += closing.eq(0)
        return m
