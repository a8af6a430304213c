"""Formal proofs of mixbit's blocks with SymbiYosys (docs/formal.md).

:mod:`formal.sby` runs a harness through SBY; :mod:`formal.streams` holds the harness
pieces (free inputs, stream sources and sinks that check the contract, counters);
:mod:`formal.links`, :mod:`formal.units` and :mod:`formal.engines` are the harnesses;
:mod:`formal.properties` lists every property with its bound and its mutations
(:mod:`formal.mutants`).
"""
