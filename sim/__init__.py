"""Running mixbit's generated Verilog under cocotb (Verilator, Icarus) against golden/."""
