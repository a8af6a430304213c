"""Amaranth building blocks of mixbit: weight decoders, bit-serial PEs, arrays, KV engines."""
