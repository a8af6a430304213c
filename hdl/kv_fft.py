"""The fixed-point FFT of VidKV's "1-bit + FFT" keys, bit-exact with golden/vidkv_fft.py.

:class:`FftCore` computes golden's radix-2 decimation-in-time FFT of one vector at a
time with ``butterflies`` butterfly units, in a constant-geometry order that needs no
addressing: at every stage, butterfly ``j`` takes the elements at positions ``2j`` and
``2j + 1`` and writes ``a + t`` to position ``j`` and ``a - t`` to ``j + N/2``. With
logical index ``i`` stored at position ``rotr(i, s - 1)`` before stage ``s``, these are
exactly golden's pairs ``(i, i + 2**(s-1))``, its twiddle is ``W_N`` to the power ``j``
with the low ``log2 N - s`` bits cleared, and after the last stage the vector is in
natural order. The positions are shift registers: each cycle the ``2P`` head elements
feed the ``P`` butterflies and the results shift into the tails of the two halves.

A butterfly is golden's: the complex product ``w b`` rounded once per component,
``(w b + 2**13) >> 14``, then ``a + t`` and ``a - t``; products are registered, so a
stage takes ``N / (2P) + 1`` cycles.

* forward (quantizer): ``N`` real inputs (the normal channels of one token) -> the ``N``
  half-spectrum lanes ``Re X0, Re X(N/2), Re X1, Im X1, ...``.
* inverse (dequantizer): ``N`` half-spectrum lanes -> the Hermitian spectrum's conjugate
  through the same FFT -> real parts divided by ``N``, rounded half up.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.vidkv import TWIDDLE_FRAC, bit_reverse, check_length, fft_growth, twiddle_list

__all__ = ["FftCore", "fft_widths"]


def fft_widths(points: int, in_width: int, inverse: bool) -> tuple[int, int]:
    """(internal, output) widths: values grow by at most ``log2 N + 1`` bits (docs/formats.md);
    the inverse's division by ``N`` takes ``log2 N`` of them back."""
    internal = in_width + fft_growth(points)
    return internal, (internal - check_length(points) if inverse else internal)


class FftCore(wiring.Component):
    """One ``points``-point fixed-point FFT at a time (see the module's docstring).

    ``i``: the ``N`` real inputs of one vector in one beat. ``o``: the ``N`` real outputs,
    ``out_lanes`` per beat in order. ``cycles_per_vector`` is the time from one accepted
    vector to the next when ``o`` keeps up.
    """

    def __init__(self, points: int, in_width: int, butterflies: int, *, inverse: bool = False,
                 out_lanes: int = 1):
        n = check_length(points, "points")
        if butterflies < 1 or butterflies & (butterflies - 1) or butterflies > points // 2:
            raise ValueError(f"fft_butterflies must be a power of two in 1..{points // 2} "
                             f"(N/2 for N = {points}), not {butterflies!r}")
        if out_lanes < 1 or out_lanes & (out_lanes - 1) or points % out_lanes:
            raise ValueError(f"out_lanes must be a power of two dividing {points}, not {out_lanes!r}")
        self.points, self.stages, self.butterflies, self.inverse = points, n, butterflies, inverse
        self.in_width, self.out_lanes = in_width, out_lanes
        self.width, self.out_width = fft_widths(points, in_width, inverse)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(in_width), points))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(self.out_width), out_lanes))),
        })

    @staticmethod
    def vector_cycles(points: int, butterflies: int) -> int:
        """Accept, ``log2 N`` stages of ``N / (2P) + 1`` cycles, the hand-over to the output."""
        return 2 + check_length(points) * (points // (2 * butterflies) + 1)

    @property
    def cycles_per_vector(self) -> int:
        return self.vector_cycles(self.points, self.butterflies)

    def _spectrum(self, lanes):
        """Forward: the real inputs. Inverse: the conjugate of the Hermitian spectrum of ``lanes``."""
        n = self.points
        if not self.inverse:
            return [(lanes[k], Const(0, 1)) for k in range(n)]
        spectrum = [None] * n
        spectrum[0] = (lanes[0], Const(0, 1))
        spectrum[n // 2] = (lanes[1], Const(0, 1))                # N >= 2
        for k in range(1, n // 2):
            spectrum[k] = (lanes[2 * k], -lanes[2 * k + 1])
            spectrum[n - k] = (lanes[2 * k], lanes[2 * k + 1])
        return spectrum

    def elaborate(self, platform):
        m = Module()
        n_pts, stages, p_units = self.points, self.stages, self.butterflies
        cycles = n_pts // (2 * p_units)
        width = self.width
        cplx = data.StructLayout({"re": signed(width), "im": signed(width)})
        src = [Signal(cplx, name=f"src{k}", reset_less=True) for k in range(n_pts)]
        dst = [Signal(cplx, name=f"dst{k}", reset_less=True) for k in range(n_pts)]
        half = n_pts // 2

        # Twiddles per butterfly unit, indexed by (stage - 1) * cycles + cycle.
        w_re, w_im = twiddle_list(n_pts)
        stage = Signal(range(stages))
        cycle = Signal(range(cycles + 1))
        step = Signal(range(stages * cycles))        # (stage, cycle) as one index
        next_step = Signal.like(step)                 # the step after this cycle: the twiddles' registers
        m.d.comb += next_step.eq(step)
        product_layout = data.StructLayout({"a": cplx, "re": signed(width + 17), "im": signed(width + 17)})
        products = [Signal(product_layout, name=f"product{u}", reset_less=True) for u in range(p_units)]
        products_valid = Signal()
        issue = Signal()
        rounding = 1 << (TWIDDLE_FRAC - 1)
        for u in range(p_units):
            table = []
            for s in range(1, stages + 1):
                for c in range(cycles):
                    j = c * p_units + u
                    table.append(j >> (stages - s) << (stages - s))
            wr, wi = Signal(signed(16), name=f"w_re{u}"), Signal(signed(16), name=f"w_im{u}")
            m.d.sync += [wr.eq(Array(Const(w_re[k], signed(16)) for k in table)[next_step]),
                         wi.eq(Array(Const(w_im[k], signed(16)) for k in table)[next_step])]
            a, b = src[2 * u], src[2 * u + 1]
            with m.If(issue):
                m.d.sync += [products[u].a.eq(a),
                             products[u].re.eq(wr * b.re - wi * b.im + rounding),
                             products[u].im.eq(wr * b.im + wi * b.re + rounding)]
        m.d.sync += [products_valid.eq(issue), step.eq(next_step)]

        # The results of the registered products shift into the tails of the two halves.
        new_dst = [Signal(cplx, name=f"new_dst{k}") for k in range(n_pts)]
        lower, upper = [], []
        for u in range(p_units):
            t_re = products[u].re >> TWIDDLE_FRAC
            t_im = products[u].im >> TWIDDLE_FRAC
            a = products[u].a
            lower.append((a.re + t_re, a.im + t_im))
            upper.append((a.re - t_re, a.im - t_im))
        for k in range(half):
            m.d.comb += new_dst[k].eq(dst[k])
            m.d.comb += new_dst[half + k].eq(dst[half + k])
        with m.If(products_valid):
            for k in range(half):
                for base, results in ((0, lower), (half, upper)):
                    target = new_dst[base + k]
                    if k + p_units < half:
                        m.d.comb += target.eq(dst[base + k + p_units])
                    else:
                        re, im = results[k + p_units - half]
                        m.d.comb += [target.re.eq(re), target.im.eq(im)]
        m.d.sync += [d.eq(nd) for d, nd in zip(dst, new_dst, strict=True)]

        # Output: N reals, shifted out `out_lanes` per beat.
        out = [Signal(signed(self.out_width), name=f"out{k}", reset_less=True) for k in range(n_pts)]
        out_beats = Signal(range(n_pts // self.out_lanes + 1))
        m.d.comb += [self.o.valid.eq(out_beats != 0),
                     self.o.payload.eq(Cat(out[:self.out_lanes]))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_beats.eq(out_beats - 1)
            m.d.sync += [out[k].eq(out[k + self.out_lanes]) for k in range(n_pts - self.out_lanes)]
        order = bit_reverse(n_pts)
        spectrum = self._spectrum(self.i.payload)
        with m.FSM(name="fft"):
            with m.State("Idle"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for k in range(n_pts):
                        re, im = spectrum[order[k]]
                        m.d.sync += [src[k].re.eq(re), src[k].im.eq(im)]
                    m.d.sync += [stage.eq(0), cycle.eq(0)]
                    m.d.comb += next_step.eq(0)
                    m.next = "Run"
            with m.State("Run"):
                with m.If(cycle < cycles):
                    m.d.comb += issue.eq(1)
                    m.d.sync += cycle.eq(cycle + 1)
                    m.d.comb += next_step.eq(step + 1)
                    m.d.sync += [src[k].eq(src[k + 2 * p_units]) for k in range(n_pts - 2 * p_units)]
                with m.Else():                          # the stage's last results are in new_dst
                    m.d.sync += [cycle.eq(0), stage.eq(stage + 1)]
                    m.d.sync += [s.eq(nd) for s, nd in zip(src, new_dst, strict=True)]
                    with m.If(stage == stages - 1):
                        m.next = "Out"
            with m.State("Out"):                        # src holds the spectrum in natural order
                with m.If(out_beats == 0):
                    m.d.sync += out_beats.eq(n_pts // self.out_lanes)
                    m.next = "Idle"
                    src_final = [(s.re + (n_pts // 2)) >> stages for s in src] if self.inverse else \
                        [src[0].re, src[half].re] + [v for k in range(1, half) for v in (src[k].re, src[k].im)]
                    m.d.sync += [o.eq(v) for o, v in zip(out, src_final, strict=True)]
        return m
