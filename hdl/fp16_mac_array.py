"""The paper's comparison: a bit-parallel FP16 MAC array with ``pe_array``'s FP16 streams and protocol.

BitMoD compares its PE with an FP16 multiply-accumulate unit. This array is that
baseline, built on a :class:`arch.pe_array_config.PeArrayConfig` with
``activations="fp16"``: the same ``act`` stream (raw binary16 lanes), the same packed
weight stream ``w``, the same job protocol (``family``, ``groups``, ``col_tiles``) and
``o`` beats of :func:`hdl.array_io.result_layout`. The arithmetic, to the bit
(docs/fp16_baseline.md; :mod:`golden.fp16_mac` is the reference):

* **Weights to FP16** (the front end, once per column for all rows): each code is
  decoded with its group's ``dt`` (``arch.bitmod.code_values``), multiplied by the
  group's ``sq`` and signed by ``sg``: the integer ``(-1)^sg * sq * v``, at most
  ``255 * 128 = 32640`` in magnitude (``scale_bits <= 8``, checked), rounded to FP16
  (nearest even at 11 significant bits; exact below 2048).
* **Products**: each lane multiplies its FP16 activation (subnormals normalized,
  ``hdl.fp16_mul.unpack_fp16``) by its FP16 weight, one weight per lane per cycle:
  the 11 x 11-bit significand product is exact in FP32 (``multiplier="lut"``:
  shift-and-add, no DSP; ``"dsp"``: ``*``, a MULT18X18D on ECP5). A zero product is ``+0``.
* **Accumulation in FP32**, rounded to nearest even after every add
  (:func:`hdl.fp32_add.fp32_add`, two pipeline stages): a step's L products in a fixed
  pairwise tree, then the sums of two consecutive steps ``2j`` and ``2j + 1`` of the
  tile, then the PE's accumulator adds these pair sums in order (its two-stage adder is
  a loop of two cycles; pairs come at most every other cycle). No subnormal, infinity
  or ``-0`` can arise (every value is a multiple of ``2^-24`` below ``2^48``).
* **Output**: each ``acc`` field of a beat holds the FP32 bits (zero-extended); the
  host computes ``y = fl32(acc * cs)``. ``exponent`` is 0; ``invalid`` is the job's
  sticky flag (an Inf or NaN activation was taken: its products are not defined).

Streams, job control and the result drain are those of the other arrays
(:class:`hdl.array_io.JobControl`, :func:`hdl.array_io.drain_results`,
:class:`hdl.parallel_steps.ParallelSteps`); the activation buffer keeps the raw
binary16 words and is read once per step (JobControl with ``raw``).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.bitmod import FAMILY_IDS, max_abs_value, signed_bits
from arch.pe_array_config import EXPONENT_FIELD_BITS, PeArrayConfig

from .array_io import JobControl, array_members, delay_line, drain_results, result_fields
from .fp16_mul import (
    ACT_EXPONENT,
    WEIGHT_EXPONENT,
    lut_product,
    pack_product,
    partial_products,
    unpack_fp16,
    unpacked_layout,
    weight_fp16,
)
from .fp32_add import FP32_BITS, fp32_add
from .parallel_array import check_multiplier
from .parallel_families import decode_value
from .parallel_steps import step_sequencer
from .replica import REPLICA_ATTR

__all__ = ["MAX_SCALE_BITS", "fp16_mac_config", "Fp16MacPE", "Fp16MacArray"]

#: ``|sq * v| <= (2^S - 1) * 128`` stays an FP16 integer below 2^15 for S <= 8.
MAX_SCALE_BITS = 8
#: Cycles from a step's emission to its operands at the lanes: decode, sq * |v|, FP16
#: rounding (weights); the buffer's read, its register, unpacking (activations).
FRONT_LATENCY = 3


def fp16_mac_config(config: PeArrayConfig) -> PeArrayConfig:
    """Check that ``config`` suits the FP16 MAC baseline; return it (ValueError naming the parameter)."""
    if not isinstance(config, PeArrayConfig):
        raise TypeError(f"config must be a PeArrayConfig, not {type(config).__name__}")
    if config.activations != "fp16":
        raise ValueError(f"activations of the FP16 MAC baseline must be fp16, not {config.activations!r}")
    if config.scale_bits > MAX_SCALE_BITS:
        raise ValueError(f"scale_bits of the FP16 MAC baseline must be at most {MAX_SCALE_BITS} "
                         f"(sq * v must fit FP16), not {config.scale_bits}")
    if config.steps_per_group % 2:
        raise ValueError(f"group_size={config.group_size} with lanes={config.lanes} gives groups of an odd number "
                         f"of steps: the FP16 MAC baseline adds steps in pairs")
    if config.acc_bits < FP32_BITS:
        raise ValueError(f"max_k={config.max_k} gives result fields of acc_bits={config.acc_bits} bits, too few "
                         f"for the FP16 MAC baseline's FP32 results: raise max_k or align_bits")
    return config


class Fp16MacPE(wiring.Component):
    """``lanes`` FP16 x FP16 multipliers, their FP32 adder tree and an FP32 accumulator.

    Members
    -------
    a, w : In(ArrayLayout(unpacked, lanes))
        The step's unpacked activations and weights (``hdl.fp16_mul.unpacked_layout``).
    valid, tile_end : In(1)
        A step is there; it is its tile's last (a tile has an even number of steps).
    clear : In(1)
        The accumulator restarts: a pair sum entering the accumulator's adder in this cycle
        is added to ``+0``, and ``acc`` is ``+0`` in the next cycle otherwise.
    acc : Out(32)
        The FP32 accumulator (a register).
    tile_done : Out(1)
        The tile's last pair sum is being added: ``acc`` holds the tile's result in the next cycle.
    """

    def __init__(self, lanes: int, multiplier: str):
        check_multiplier(multiplier)
        self.lanes, self.multiplier = lanes, multiplier
        self.levels = (lanes - 1).bit_length()
        #: Cycles from the operands to the accumulator's input: two for the product, two a tree level.
        self.latency = 2 + 2 * self.levels
        super().__init__({
            "a": In(data.ArrayLayout(unpacked_layout(ACT_EXPONENT), lanes)),
            "w": In(data.ArrayLayout(unpacked_layout(WEIGHT_EXPONENT), lanes)),
            "valid": In(1),
            "tile_end": In(1),
            "clear": In(1),
            "acc": Out(FP32_BITS),
            "tile_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        products = []
        for lane in range(self.lanes):
            a, w = self.a[lane], self.w[lane]
            low, high = partial_products(a, w, self.multiplier)
            part = [Signal(len(low), name=f"part{lane}_0"), Signal(len(high), name=f"part{lane}_1")]
            exponent_sum = Signal(ACT_EXPONENT + 1, name=f"exponent{lane}")
            sign, zero = Signal(name=f"sign{lane}"), Signal(name=f"zero{lane}")
            m.d.sync += [part[0].eq(low), part[1].eq(high), exponent_sum.eq(a.exponent + w.exponent),
                         sign.eq(a.sign ^ w.sign), zero.eq(a.zero | w.zero)]
            product = Signal(FP32_BITS, name=f"product{lane}")
            m.d.sync += product.eq(pack_product(m, part[0] + part[1], exponent_sum.as_signed(), sign, zero,
                                                f"packed{lane}"))
            products.append(product)
        level = 0
        while len(products) > 1:
            pairs = []
            for i in range(0, len(products), 2):
                total = Signal(FP32_BITS, name=f"sum{level}_{i // 2}")
                m.d.sync += total.eq(fp32_add(m, products[i], products[i + 1], f"add{level}_{i // 2}",
                                              pipelined=True))
                pairs.append(total)
            products, level = pairs, level + 1
        step_sum = products[0]

        valid = delay_line(m, self.valid, self.latency, "valid")
        tile_end = delay_line(m, self.tile_end, self.latency, "tile_end")

        # Pairs of steps: an even step's sum waits in `held` for the next (a tile has an even
        # number of steps, so `odd` is 0 at every tile's start), then a pipelined add.
        odd, held = Signal(name="odd_step"), Signal(FP32_BITS, name="held")
        with m.If(valid):
            m.d.sync += odd.eq(~odd)
            with m.If(~odd):
                m.d.sync += held.eq(step_sum)
        pair = Signal(FP32_BITS, name="pair")
        m.d.sync += pair.eq(fp32_add(m, held, step_sum, "pair_add", pipelined=True))
        pair_valid = delay_line(m, valid & odd, 2, "pair_valid")
        pair_last = delay_line(m, valid & odd & tile_end, 2, "pair_last")

        # The accumulator: a two-stage add in a loop of two cycles, which pairs (at least two
        # cycles apart) never outrun; `clear` gives the next tile's first pair +0 to add to.
        total = fp32_add(m, Mux(self.clear, 0, self.acc), pair, "acc_add", pipelined=True)
        add_valid = delay_line(m, pair_valid, 1, "add_valid")
        add_last = delay_line(m, pair_last, 1, "add_last")
        with m.If(add_valid):
            m.d.sync += self.acc.eq(total)
        with m.Elif(self.clear):
            m.d.sync += self.acc.eq(0)
        m.d.comb += self.tile_done.eq(add_valid & add_last)
        return m


class Fp16MacArray(wiring.Component):
    """The FP16 MAC baseline with :class:`hdl.pe_array.PeArray`'s members (an ``activations="fp16"`` build).

    ``family``, ``groups``, ``col_tiles``, ``act``, ``w`` and ``o`` as in
    :class:`hdl.pe_array.PeArray`; ``o``'s ``acc`` fields carry FP32 bit patterns
    (``golden.fp16_mac.matmul_fp16_mac_acc``), ``exponent`` is 0. A family ID that is
    not built in computes with zero weights. One step of ``lanes`` weights per column
    per cycle, as far as the weight stream delivers them.
    """

    def __init__(self, config: PeArrayConfig, multiplier: str = "lut"):
        self.config = fp16_mac_config(config)
        check_multiplier(multiplier)
        self.multiplier = multiplier
        super().__init__(array_members(config))

    def elaborate(self, platform):
        m = Module()
        config = self.config
        rows, cols, lanes = config.rows, config.cols, config.lanes
        # The activation buffer (one read per step), holding raw binary16 words; its `invalid` (job.tags).
        m.submodules.job = job = JobControl(config, self.act, self.family, self.groups, self.col_tiles, raw=True)
        front, drained = step_sequencer(m, config, self.w, job)
        bits = config.act_field_bits

        # ---- weights: decode (F1), sq * |v| (F2), FP16 rounding (F3), per column --------------------------
        max_abs = max_abs_value(config.families)
        value_bits = signed_bits(max_abs)
        magnitude_bits = (max_abs * ((1 << config.scale_bits) - 1)).bit_length()      # <= 15 (32640)
        weights = []
        for c in range(cols):
            flags = {name: Signal(name=f"is_{name}_c{c}", attrs={REPLICA_ATTR: 1}) for name in config.families}
            m.d.sync += [flags[name].eq(job.family_id == FAMILY_IDS[name]) for name in config.families]
            column = Signal(data.ArrayLayout(unpacked_layout(WEIGHT_EXPONENT), lanes), name=f"w{c}")
            for lane in range(lanes):
                value = decode_value(m, config.families, flags, front.codes[c][lane], front.dt[c], value_bits)
                sign1 = Signal(name=f"w_sign{c}_{lane}")
                size1 = Signal(value_bits - 1, name=f"w_abs{c}_{lane}")
                sq1 = Signal(config.scale_bits, name=f"w_sq{c}_{lane}")
                m.d.sync += [sign1.eq(value[-1] ^ front.sg[c]), size1.eq(Mux(value[-1], -value, value)),
                             sq1.eq(front.sq[c])]
                sign2 = Signal(name=f"w_sign2_{c}_{lane}")
                size2 = Signal(magnitude_bits, name=f"w_mag{c}_{lane}")
                m.d.sync += [sign2.eq(sign1), size2.eq(lut_product(size1, sq1))]
                m.d.sync += column[lane].eq(weight_fp16(m, sign2, size2, f"w16_{c}_{lane}"))
            weights.append(column)

        # ---- activations: the buffer's word (two cycles after the read), unpacked (F3), per row ----------
        activations = []
        for r in range(rows):
            row = Signal(data.ArrayLayout(unpacked_layout(ACT_EXPONENT), lanes), name=f"act{r}")
            raw = job.activations[r][0]
            for lane in range(lanes):
                m.d.sync += row[lane].eq(unpack_fp16(m, raw[bits * lane:bits * (lane + 1)], f"a16_{r}_{lane}"))
            activations.append(row)
        valid = delay_line(m, front.emit, FRONT_LATENCY, "step_valid")
        tile_end = delay_line(m, front.emit & front.tile_end, FRONT_LATENCY, "step_tile_end")

        # ---- PEs and results -------------------------------------------------------------------------------
        pes = [[Fp16MacPE(lanes, self.multiplier) for _ in range(cols)] for _ in range(rows)]
        clear = [[Signal(name=f"clear{r}_{c}") for c in range(cols)] for r in range(rows)]
        accs, done, extra_clear = [], [], []
        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.submodules[f"pe{r}_{c}"] = pe
                m.d.comb += [pe.a.eq(activations[r]), pe.w.eq(weights[c]), pe.valid.eq(valid),
                             pe.tile_end.eq(tile_end), pe.clear.eq(clear[r][c])]
            tag = Signal(EXPONENT_FIELD_BITS + 1, name=f"tag{r}")        # the job's `invalid`; exponent 0
            m.d.comb += tag.eq(Cat(C(0, EXPONENT_FIELD_BITS), job.tags[r][-1]))
            accs.append([pe.acc for pe in pes[r]] + [tag])
            done.append([pe.tile_done for pe in pes[r]] + [pes[r][0].tile_done])
            extra_clear.append(clear[r] + [Signal(name=f"tag_clear{r}")])
        full, copy = drain_results(
            m, self.o, accs, group_of=[config.row_group(r) for r in range(rows)], tile_done=done,
            dequantizing_next=[[C(0, 1)] * (cols + 1) for _ in range(rows)], job=job, clear=extra_clear,
            fields=lambda payload: result_fields(config, payload))
        drained(full, copy)
        return m
