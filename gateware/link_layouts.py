"""Amaranth layouts of the host link's request headers, built from arch/link.py's tables."""

from __future__ import annotations

from amaranth.lib import data

from arch.link import HeaderLayout

__all__ = ["header_layout"]


def header_layout(header: HeaderLayout) -> data.StructLayout:
    """``header``'s fields as a ``data.StructLayout`` of ``8 * header.size`` bits.

    Each field of the table sits at its bit offset; the bits between and after them are
    ``reserved_<offset>`` fields (zero on the link, never read).
    """
    members, at = {}, 0
    for name, offset, width in sorted(header.fields, key=lambda f: f[1]):
        if offset > at:
            members[f"reserved_{at}"] = offset - at
        members[name], at = width, offset + width
    if 8 * header.size > at:
        members[f"reserved_{at}"] = 8 * header.size - at
    return data.StructLayout(members)
