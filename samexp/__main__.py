"""`python -m samexp ...`: compose the config and run the pipeline; user errors and interruptions
print one line, no traceback (exit 2, or 130 / 143 after SIGINT / SIGTERM)."""

from __future__ import annotations

import logging
import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import samexp.config.schema  # noqa: F401  (registers the schemas)
from samexp.config.cli import hydra_main
from samexp.config.distributed import first_to_fail, stop, world_from_env
from samexp.config.errors import Interrupted, SamexpError

log = logging.getLogger("samexp")


@hydra_main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from samexp.runner import run
    from samexp.training import stop as interrupt

    interrupt.IGNORE_LATE_STOPS = True  # this process ends right after a stop
    try:
        return _run(cfg, run)
    finally:  # after the failure paths below have asked the group who failed first
        stop()


def _run(cfg: DictConfig, run) -> float:
    try:
        metrics = run(cfg).metrics
        if cfg.objective not in metrics:  # a per-category objective: known only from the data
            raise SamexpError(
                f"objective={cfg.objective} is not a metric of this run; choose one of "
                f"{sorted(metrics)}"
            )
    except SamexpError as e:
        # under torchrun the first rank to fail says it: once, with its rank if it is not 0
        world = world_from_env()
        said = f"rank {world.rank}: {e}" if world.rank else str(e)
        log.log(logging.ERROR if first_to_fail(world) else logging.DEBUG, "%s", said)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one failed trial: the sweeper records it and goes on
        sys.exit(2)
    except Interrupted as e:  # checkpointed, its run KILLED: one line says how to go on
        log.log(logging.ERROR if world_from_env().is_main else logging.DEBUG, "%s", e)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper fails the trial (it is retried) and stops
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        log.error("interrupted twice: stopped at once; the last checkpoint is the one before")
        sys.exit(130)
    except Exception:
        world = world_from_env()
        if world.distributed and not first_to_fail(world):
            # a peer failed first and said why; this rank's error is the broken connection
            log.debug("stopping: another rank failed first", exc_info=True)
            sys.exit(1)
        raise
    return metrics[cfg.objective]


if __name__ == "__main__":
    main()
