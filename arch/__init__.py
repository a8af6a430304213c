"""The facts that mixbit's golden models and hardware share, in plain Python.

Format tables (:mod:`arch.bitmod`, :mod:`arch.vidkv`), the host link's frame layout
(:mod:`arch.link`) and the validated configurations with every derived width
(:mod:`arch.pe_array_config`, :mod:`arch.kv_config`, :mod:`arch.accelerator_config`, with
:mod:`arch.checks` and :mod:`arch.derived`).
Neither torch nor Amaranth is imported here: ``golden`` (torch) and ``hdl`` (Amaranth)
both build on this package and never on each other.
"""
