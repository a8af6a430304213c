"""Torch golden models of mixbit: weight formats, quantizers and integer-exact results.

Submodules are imported explicitly (``golden.formats``, ``golden.tables``) so that the
pure-Python tables can be used without importing torch.
"""
