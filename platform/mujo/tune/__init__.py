"""Ray Tune edge: the downstream evaluation fan-out (and, later, the pretraining search)."""
