"""Complete mixbit designs: the design registry, Verilog generation and the command-line tool."""
