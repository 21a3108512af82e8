"""Sweep support inside samexp: the per-trial pruning reporter and the MLflow parent-run callback.
The Optuna sweeper itself is a Hydra plugin in `hydra_plugins/samexp_optuna_sweeper/`."""
