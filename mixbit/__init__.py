"""mixbit's command-line tool (:mod:`mixbit.cli`) and board builds (:mod:`mixbit.boards`): the top
floor, over the design registry (``gateware``), the simulators (``sim``) and the flows (``synth``)."""
