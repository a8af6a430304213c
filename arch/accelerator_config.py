"""Parameters of the accelerator top and everything derived from them (one place).

The top's generator parameters are the PE array's with a ``pe_`` prefix, the KV
engines' with a ``kv_`` prefix, and the link's own (clock, baud rate, buffer sizes).
The host driver reads the same values back with the INFO command (:meth:`info`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from fractions import Fraction

from arch.bitmod import FAMILY_IDS, WORD_BITS, pack_layout
from arch.checks import check_int
from arch.derived import DerivedFields
from arch.fp16 import ACTIVATION_KINDS
from arch.kv_config import KvConfig
from arch.link import COUNTER_FIELDS, INFO_FIELDS, MIN_DIVISOR, word_bytes
from arch.pe_array_config import PeArrayConfig
from arch.vidkv import beats_per_group

__all__ = ["AcceleratorConfig", "LINK_VERSION", "ENGINES", "LINK_RANGES"]

#: INFO's ``version`` field: bump it when the command set or a payload layout changes.
LINK_VERSION = 2
#: What a build holds: everything, the PE array only, or the KV engines only.
ENGINES = ("all", "pe", "kv")
#: The most a baud rate may be off the asked one (the UART's divisor is an integer).
BAUD_TOLERANCE = Fraction(2, 100)
#: The link's integer parameters and their ranges, low..high inclusive (``mixbit list`` shows the same).
#: ``baud`` is also at most ``clk_hz / MIN_DIVISOR``; ``result_beats`` at least ``pe.rows``.
LINK_RANGES = {
    "clk_hz": (1_000_000, 1_000_000_000),
    "baud": (300, 1_000_000_000 // MIN_DIVISOR),
    "max_payload": (64, 0xFFFF),
    "weight_beats": (1, 1 << 20),
    "result_beats": (1, 1 << 16),
    "kv_quant_fifo": (16, 1 << 16),
    "kv_dequant_fifo": (16, 1 << 16),
    "byte_timeout_us": (1, 10_000_000),
}


@dataclass(frozen=True)
class AcceleratorConfig(DerivedFields):
    """A validated accelerator configuration.

    Parameters
    ----------
    pe, kv : PeArrayConfig, KvConfig
        The PE array and the two KV engines (the dequantizer uses ``kv.frac_bits``).
    clk_hz, baud : int
        The clock and the UART's bit rate: ``clk_hz / baud`` (rounded) cycles a bit,
        at least 4 and within 2 % of the asked rate.
    max_payload : int
        The largest request payload in bytes (the frame buffer's size).
    weight_beats, result_beats : int
        Depth of the weight memory (beats of ``pe.cols`` 32-bit words) and of the result
        memory (one beat per row and column tile).
    kv_quant_fifo, kv_dequant_fifo : int
        Beats the KV engines' output buffers hold until the host reads them.
    byte_timeout_us : int
        A request that pauses this long mid-frame is dropped with a TRUNCATED reply.
    engines : str
        ``all``, or only ``pe`` (the PE array) or ``kv`` (the KV engines): for a small FPGA.
    """

    pe: PeArrayConfig = field(default_factory=PeArrayConfig)
    kv: KvConfig = field(default_factory=KvConfig)
    clk_hz: int = 12_000_000
    baud: int = 115_200
    max_payload: int = 4096
    weight_beats: int = 2048
    result_beats: int = 256
    kv_quant_fifo: int = 2048
    kv_dequant_fifo: int = 1024
    byte_timeout_us: int = 50_000
    engines: str = "all"
    # Derived values (set by __post_init__; :meth:`derived` lists them all).
    #: Clock cycles per UART bit.
    divisor: int = field(init=False, compare=False, repr=False)
    #: Cycles a request may pause mid-frame before it is dropped.
    timeout_cycles: int = field(init=False, compare=False, repr=False)
    #: Bytes of one activation beat (a step's activations: int8, or binary16 in an FP16 build).
    act_bytes: int = field(init=False, compare=False, repr=False)
    #: Bits and bytes of a weight beat (``pe.cols`` 32-bit words).
    weight_bits: int = field(init=False, compare=False, repr=False)
    weight_bytes: int = field(init=False, compare=False, repr=False)
    #: Bits and bytes of a result beat (``pe.cols`` accumulators; an FP16 build adds the exponent and flag).
    result_bits: int = field(init=False, compare=False, repr=False)
    result_bytes: int = field(init=False, compare=False, repr=False)
    #: Bits and bytes of a KV token beat (``kv.lanes`` elements and the salient flag).
    kv_in_bits: int = field(init=False, compare=False, repr=False)
    kv_in_bytes: int = field(init=False, compare=False, repr=False)
    #: Bits and bytes of a packed KV beat (a 32-bit word and its tag).
    kv_beat_bits: int = field(init=False, compare=False, repr=False)
    kv_beat_bytes: int = field(init=False, compare=False, repr=False)
    #: Bits and bytes of a dequantized KV beat (``kv.lanes`` outputs and the position).
    kv_out_bits: int = field(init=False, compare=False, repr=False)
    kv_out_bytes: int = field(init=False, compare=False, repr=False)
    #: Column tiles the result memory holds for one activation load.
    max_col_tiles: int = field(init=False, compare=False, repr=False)
    #: Weight words a group of each built family takes, by family id.
    words_per_group: dict[int, int] = field(init=False, compare=False, repr=False)
    #: Counters that COUNTERS returns.
    counters: int = field(init=False, compare=False, repr=False)
    #: The most beats one packed KV group takes (any path).
    kv_group_beats: int = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        if self.engines not in ENGINES:
            raise ValueError(f"engines must be one of {', '.join(ENGINES)}, not {self.engines!r}")
        for name, (low, high) in LINK_RANGES.items():
            if name == "baud":
                high = min(high, self.clk_hz // MIN_DIVISOR)
            elif name == "result_beats":
                low = max(low, self.pe.rows)
            check_int(name, getattr(self, name), low, high)
        divisor = round(Fraction(self.clk_hz, self.baud))
        error = abs(Fraction(self.clk_hz, divisor) - self.baud) / self.baud
        if error > BAUD_TOLERANCE:
            raise ValueError(f"baud {self.baud} is {float(error):.1%} off what clk_hz {self.clk_hz} can make "
                             f"({self.clk_hz / divisor:.0f}): pick a baud rate near clk_hz / an integer")
        pe, kv = self.pe, self.kv
        act_bytes = pe.act_beat_bits // 8
        weight_bytes = word_bytes(pe.cols * WORD_BITS)
        kv_in_bits = kv.lanes * kv.in_bits + 1
        kv_out_bits = kv.lanes * kv.out_bits + kv.position_bits
        beat_bits = WORD_BITS + kv.tag_bits
        timeout = self.clk_hz // 1_000_000 * self.byte_timeout_us
        widths = {
            "divisor": divisor,
            "timeout_cycles": timeout,
            "act_bytes": act_bytes,
            "weight_bits": pe.cols * WORD_BITS,
            "weight_bytes": weight_bytes,
            "result_bits": pe.result_beat_bits,
            "result_bytes": word_bytes(pe.result_beat_bits),
            "kv_in_bits": kv_in_bits,
            "kv_in_bytes": word_bytes(kv_in_bits),
            "kv_beat_bits": beat_bits,
            "kv_beat_bytes": word_bytes(beat_bits),
            "kv_out_bits": kv_out_bits,
            "kv_out_bytes": word_bytes(kv_out_bits),
            "max_col_tiles": self.result_beats // pe.rows,
            # words per group of each built family, by family id (the weight beats a tile's group takes)
            "words_per_group": {FAMILY_IDS[name]: pack_layout(name, pe.group_size,
                                                              pe.scale_bits)["words_per_group"]
                                for name in pe.families},
            "counters": len(COUNTER_FIELDS),
        }
        # The driver sends at most a group of tokens per frame and reads the output after
        # each; with STP a frame of tokens may complete a group on each path, and up to one
        # more group may still be on its way out. It sends a group of packed beats only
        # once the previous group's tokens are all out.
        group_beats = max(beats_per_group(path, d=kv.d, group_tokens=kv.group_tokens, n_hi=kv.n_hi,
                                          value_format=fmt, ternary_layout=kv.ternary_layout, stp=kv.stp)
                          for path, fmt in (("key", "ternary"), ("value", "ternary"), ("value", "2bit")))
        widths["kv_group_beats"] = group_beats
        if self.kv_quant_fifo < 3 * group_beats:
            raise ValueError(f"kv_quant_fifo must hold 3 groups' beats ({3 * group_beats} at kv_d = {kv.d}, "
                             f"kv_group_tokens = {kv.group_tokens}), not {self.kv_quant_fifo}")
        if self.kv_dequant_fifo < kv.group_tokens * kv.blocks:
            raise ValueError(f"kv_dequant_fifo must hold a group's tokens ({kv.group_tokens * kv.blocks} "
                             f"beats), not {self.kv_dequant_fifo}")
        if widths["result_bytes"] * self.result_beats > 0xFFFF:
            raise ValueError(f"result_beats {self.result_beats} of {widths['result_bytes']} bytes do not fit one "
                             f"reply (65535 bytes): use fewer")
        for name, unit in (("act", act_bytes), ("weight", weight_bytes), ("kv_in", widths["kv_in_bytes"]),
                           ("kv_beat", widths["kv_beat_bytes"])):
            if unit + 8 > self.max_payload:
                raise ValueError(f"max_payload {self.max_payload} cannot hold one {name} beat ({unit} bytes)")
        self._set_derived(widths)


    @property
    def has_pe(self) -> bool:
        return self.engines in ("all", "pe")

    @property
    def has_kv(self) -> bool:
        return self.engines in ("all", "kv")

    @classmethod
    def from_params(cls, params: dict) -> AcceleratorConfig:
        """The configuration of ``mixbit generate accelerator -p`` names (``pe_*``, ``kv_*``, link names)."""
        pe = {k[3:]: v for k, v in params.items() if k.startswith("pe_")}
        kv = {k[3:]: v for k, v in params.items() if k.startswith("kv_") and not k.endswith("_fifo")}
        own = {k: v for k, v in params.items() if k in {f.name for f in fields(cls) if f.init} - {"pe", "kv"}}
        return cls(pe=PeArrayConfig.from_params({**PeArrayConfig().params(), **pe}),
                   kv=KvConfig.from_params(kv), **own)

    def info(self) -> dict[str, int]:
        """INFO's reply fields (arch.link.INFO_FIELDS), as the hardware sends them."""
        pe, kv = self.pe, self.kv
        f = Fraction(kv.f).limit_denominator(64)
        values = {
            "version": LINK_VERSION, "engines": int(self.has_pe) | int(self.has_kv) << 1, "clk_hz": self.clk_hz,
            "baud": self.baud, "max_payload": self.max_payload,
            "pe_rows": pe.rows, "pe_cols": pe.cols, "pe_lanes": pe.lanes, "pe_group_size": pe.group_size,
            "pe_scale_bits": pe.scale_bits, "pe_families": sum(1 << FAMILY_IDS[n] for n in pe.families),
            "pe_max_k": pe.max_k, "pe_acc_bits": pe.acc_bits,
            "pe_activations": ACTIVATION_KINDS.index(pe.activations), "pe_align_bits": pe.align_bits,
            "weight_beats": self.weight_beats,
            "result_beats": self.result_beats, "kv_d": kv.d, "kv_group_tokens": kv.group_tokens,
            "kv_in_bits": kv.in_bits, "kv_lanes": kv.lanes, "kv_f_num": f.numerator, "kv_f_den": f.denominator,
            "kv_b3": int(kv.ternary_layout == "b3"), "kv_stp": int(kv.stp), "kv_fft": int(kv.fft),
            "kv_frac_bits": kv.frac_bits, "kv_out_bits": kv.out_bits, "kv_quant_fifo": self.kv_quant_fifo,
            "kv_dequant_fifo": self.kv_dequant_fifo,
        }
        assert tuple(values) == INFO_FIELDS
        return values
