"""Runtime: load an engine artifact and score batches through one of the backends."""
