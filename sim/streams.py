"""cocotb valid/ready stream driver and monitor with seeded random stalls.

Both follow ``amaranth.lib.stream``: a transfer happens on a rising clock edge where
``valid`` and ``ready`` are both high; the sender holds ``payload`` (and its
sideband signals) while ``valid`` and not ``ready``. Both classes write their
signals only right after a rising edge and read the handshake in the ReadOnly
phase of the same cycle, when every combinational ready/valid path has settled; the
edge that follows is the one that transfers. (Writing their signals at any other
time, e.g. after a Timer, would break that.) The monitor also checks that a
stalled stream holds its payload, and can check that nothing more comes out.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamDriver", "StreamMonitor", "StreamProtocolError", "CycleCounter"]


class StreamProtocolError(AssertionError):
    """The design under test broke the valid/ready contract."""


class _StreamPort:
    """The three signals of stream ``name`` on ``dut``, and the stall dice."""

    def __init__(self, dut, name: str, clock, rng: random.Random, stall: float):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"stall must be in [0, 1), not {stall!r}")
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._payload = getattr(dut, f"{name}__payload")
        self._dut, self._name, self._clock, self._rng, self._stall = dut, name, clock, rng, stall
        #: Cycles this side stalled (driver: valid held low; monitor: valid refused).
        self.stall_cycles = 0


class StreamDriver(_StreamPort):
    """Drives the ``<name>__valid/payload`` inputs of a stream, honouring ``<name>__ready``.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    name : str
        Stream port prefix (``i`` for ``i__valid``, ``i__payload``, ``i__ready``).
    clock : cocotb handle
        The clock signal.
    rng : random.Random
        Source of the stalls (seeded by the test, so runs are reproducible).
    stall : float
        Probability that ``valid`` stays low for a cycle before each item.
    """

    def __init__(self, dut, name: str, clock, rng: random.Random, stall: float = 0.0):
        super().__init__(dut, name, clock, rng, stall)
        self._valid.value = 0
        #: Cycles from the start of :meth:`send` to the edge that took its last item.
        self.last_cycle = 0

    async def send(self, items: Iterable[int | Mapping[str, int]]) -> None:
        """Send every item: a payload int, or a dict with ``payload`` and sideband signals."""
        cycle = 0
        for item in items:
            if not isinstance(item, Mapping):
                item = {"payload": item}
            while self._rng.random() < self._stall:
                self._valid.value = 0
                self.stall_cycles += 1
                await RisingEdge(self._clock)
                cycle += 1
            self._payload.value = item["payload"]
            for signal, value in item.items():
                if signal != "payload":
                    getattr(self._dut, signal).value = value
            self._valid.value = 1
            while True:
                await ReadOnly()
                accepted = bool(self._ready.value)
                await RisingEdge(self._clock)
                cycle += 1
                if accepted:
                    break
        self.last_cycle = cycle
        self._valid.value = 0


class StreamMonitor(_StreamPort):
    """Collects payloads of a ``<name>__valid/payload/ready`` output with random back-pressure.

    Parameters are those of :class:`StreamDriver`; ``stall`` is the probability that
    ``ready`` is low in a cycle.
    """

    def __init__(self, dut, name: str, clock, rng: random.Random, stall: float = 0.0):
        super().__init__(dut, name, clock, rng, stall)
        self._ready.value = 0

    async def receive(self, count: int, *, max_cycles: int | None = None) -> list[int]:
        """Return the next ``count`` payloads.

        Raises StreamProtocolError when a stalled transfer is withdrawn or changed, or
        when ``count`` payloads have not arrived within ``max_cycles`` cycles (default:
        ``64 + 16 * count``, far above any stall pattern), so a lost transfer fails
        the test instead of hanging it.
        """
        if max_cycles is None:
            max_cycles = 64 + 16 * count
        received: list[int] = []
        held = None             # payload of a transfer offered but not taken last cycle
        cycle = 0
        while len(received) < count:
            ready = self._rng.random() >= self._stall
            self._ready.value = int(ready)
            await ReadOnly()
            valid = bool(self._valid.value)
            payload = self._payload.value.to_unsigned() if valid else None
            if held is not None and (not valid or payload != held):
                raise StreamProtocolError(
                    f"{self._name}: cycle {cycle}: stalled transfer 0x{held:x} was "
                    f"{'withdrawn' if not valid else f'changed to 0x{payload:x}'}"
                )
            if valid and ready:
                received.append(payload)
                held = None
            elif valid:
                held = payload
                self.stall_cycles += 1
            await RisingEdge(self._clock)
            cycle += 1
            if cycle >= max_cycles and len(received) < count:
                raise StreamProtocolError(
                    f"{self._name}: received {len(received)} of {count} payloads in {cycle} cycles"
                )
        self._ready.value = 0
        return received

    async def expect_idle(self, cycles: int = 8) -> None:
        """Offer ``ready`` for ``cycles`` cycles and fail if any payload comes (a duplicate)."""
        self._ready.value = 1
        for cycle in range(cycles):
            await ReadOnly()
            if self._valid.value:
                raise StreamProtocolError(
                    f"{self._name}: unexpected payload 0x{self._payload.value.to_unsigned():x} "
                    f"{cycle} cycles after the last expected one"
                )
            await RisingEdge(self._clock)
        self._ready.value = 0


class CycleCounter:
    """Counts rising edges of ``dut.clk`` from its start until :meth:`stop`."""

    def __init__(self, dut):
        self.cycles = 0
        self._task = cocotb.start_soon(self._count(dut))

    async def _count(self, dut):
        while True:
            await RisingEdge(dut.clk)
            self.cycles += 1

    def stop(self) -> int:
        self._task.cancel()
        return self.cycles
