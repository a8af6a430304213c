"""Synthesis, place and route flows (YoWASP yosys + nextpnr) and their reports."""
