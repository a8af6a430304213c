"""Complete mixbit designs: the accelerator top, the design registry and its parameters, Verilog
generation, and where the flows find their tools and keep their cache."""
