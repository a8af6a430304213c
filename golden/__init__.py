"""Torch golden models of mixbit: weight formats, quantizers and integer-exact results.

The tables and widths they share with the hardware live in :mod:`arch` (plain Python).
"""
