"""The host side of the accelerator: the serial-link driver and the planning of its jobs
(tiling a matmul into PE-array jobs, packing KV tokens into beats). Needs torch and the
golden models, never the simulators."""
