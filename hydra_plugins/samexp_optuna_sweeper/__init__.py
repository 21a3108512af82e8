"""An Optuna sweeper for Hydra on current Optuna: ask/tell, resumable studies, and trials that jobs
can report to and be pruned through, via the shared storage (`hydra/sweeper=samexp_optuna`)."""
