"""`python -m samexp.evaluate run_id=<id> dataset=...`: a saved run on another dataset; user errors
print one line (exit 2)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import samexp.config.schema  # noqa: F401  (registers the option schemas)
import samexp.evaluate.saved  # noqa: F401  (registers evaluate_schema)
from samexp.config.cli import hydra_main
from samexp.config.errors import SamexpError

log = logging.getLogger("samexp.evaluate")


@hydra_main(config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from samexp.evaluate.saved import evaluate_saved

    out = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    try:
        evaluate_saved(cfg, out)
    except SamexpError as e:
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    main()
