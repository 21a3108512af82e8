"""Everything MLflow and run state: the tracker, run leases and states, checkpoints kept for resume, saved weights, comparison pictures."""
