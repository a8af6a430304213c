"""Real models through the generated hardware: all-MiniLM-L6-v2 end to end (:mod:`workloads.minilm`)."""
