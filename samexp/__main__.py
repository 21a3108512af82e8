"""`python -m samexp ...`: compose the config and run the pipeline; user errors print without a traceback."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import samexp.config  # noqa: F401  (registers the schemas)
from samexp.errors import SamexpError

log = logging.getLogger("samexp")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from samexp.runner import run

    try:
        metrics = run(cfg).metrics
        if cfg.objective not in metrics:  # a per-category objective: known only from the data
            raise SamexpError(
                f"objective={cfg.objective} is not a metric of this run; choose one of "
                f"{sorted(metrics)}"
            )
    except SamexpError as e:
        log.error("%s", e)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one failed trial: the sweeper records it and goes on
        sys.exit(2)
    return metrics[cfg.objective]


if __name__ == "__main__":
    main()
