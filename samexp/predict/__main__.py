"""`python -m samexp.predict ...`: compose conf/predict.yaml and predict; user errors print one line."""

from __future__ import annotations

import logging
import sys

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import samexp.predict.config  # noqa: F401  (registers predict_schema)
from samexp.config.cli import hydra_main
from samexp.config.errors import SamexpError

log = logging.getLogger("samexp.predict")


@hydra_main(config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from samexp.predict.run import predict

    if cfg.out is None:  # like every other output: under the paths root, not the shell's folder
        cfg.out = HydraConfig.get().runtime.output_dir
    try:
        predict(OmegaConf.to_object(cfg))
    except SamexpError as e:
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    main()
