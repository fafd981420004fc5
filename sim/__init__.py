"""Simulation: cocotb + Verilator benches for the gateware and the virtual board (issue #3 on)."""
