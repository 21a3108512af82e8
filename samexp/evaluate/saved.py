"""`python -m samexp.evaluate run_id=<id> dataset=<another>`: a saved run's model (or a weights
file) against zero-shot SAM on another dataset's split, with a run's figures: the same metrics
(`baseline/<split>/*`, `final/<split>/*`, `delta/*`), per-image table and comparison images, logged
as an MLflow run of its own and written to `metrics.json` in the output folder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from torch.utils.data import DataLoader

from samexp.config.checks import Seed
from samexp.config.devices import resolve_device
from samexp.config.distributed import ONE_PROCESS, ShardBatches
from samexp.config.errors import SamexpError
from samexp.config.instantiate import build
from samexp.config.schema import (
    DATA_ROOT,
    BatchSize,
    Config,
    Device,
    PathsConfig,
    TrainerConfig,
    refuse_outside_ranges,
)
from samexp.data.base import collate
from samexp.data.splits import TEST_FILES
from samexp.evaluate.compare import compared, log_comparisons, per_image
from samexp.prompts.class_tokens import EveryClass, attach_class_prompts, class_prompts_of
from samexp.tracking.finetuned import build_base, load_finetuned, run_file
from samexp.tracking.names import EVALUATES
from samexp.tracking.tracker import Tracker, flatten
from samexp.training.evaluation import evaluate

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """What `evaluate_saved` receives: the one definition of the command's settings (a run's own
    where they mean the same: batch size, seed, data root)."""

    dataset: Any = MISSING  # any dataset option: dataset=coco dataset.root=...
    prompt: Any = MISSING  # the prompts both models get (evaluation: no randomness)
    tracking: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    run_id: str | None = None  # an MLflow run that logged weights/adapter.safetensors
    weights: str | None = None  # or a local adapter.safetensors
    checkpoint: str | None = None  # the official base checkpoint, if not in the cache
    split: str = "test"  # which split of the dataset: test, val or train
    batch_size: BatchSize = TrainerConfig.batch_size
    seed: Seed = Config.seed  # the prompts' seed
    device: Device = Device.auto
    data_root: str = DATA_ROOT
    output_dir: str | None = None  # default: Hydra's run folder


ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def evaluate_saved(cfg: DictConfig, out: Path) -> dict[str, float]:
    refuse_outside_ranges(cfg)  # its own keys', the dataset's, the prompt's, tracking's
    device = resolve_device(cfg.device, key="device")
    base, adapter, meta = load_finetuned(cfg.run_id, cfg.weights, cfg.tracking.tracking_uri,
                                         cfg.checkpoint)  # fmt: skip
    zero_shot = build_base(meta, cfg.checkpoint)
    splits = build(cfg.dataset, pipeline=base.pipeline, _convert_="object")
    if cfg.run_id and splits.held_out is not None:  # the images that run held out, not retrained on
        listed = run_file(cfg.run_id, TEST_FILES, cfg.tracking.tracking_uri,
                          missing="it was logged before samexp kept its test files")  # fmt: skip
        files = [line for line in listed.read_text().splitlines() if line]
        splits = splits.with_test_files(files, f"run {cfg.run_id}")
    dataset = getattr(splits, cfg.split, None) if cfg.split in ("train", "val", "test") else None
    if dataset is None:
        raise SamexpError(
            f"split={cfg.split}: {splits.name} has no such split; choose test, train"
            f"{', val' if splits.val is not None else ''}"
        )
    prompt, zero_prompt = build(cfg.prompt), build(cfg.prompt)
    learned = class_prompts_of(base.sam)
    if prompt.promptless:  # the model's own classes; zero-shot: untrained prompts, seeded
        prompt.bind(base.sam)
        torch.manual_seed(cfg.seed)
        attach_class_prompts(zero_shot.sam, learned.classes, learned.tokens.shape[1])
        zero_prompt.bind(zero_shot.sam)
        dataset = EveryClass(dataset, learned.classes)
    elif learned is not None:
        log.info("these weights learned class prompts: prompt=class_tokens evaluates them")
    loader = DataLoader(dataset, batch_sampler=ShardBatches(len(dataset), cfg.batch_size, ONE_PROCESS),
                        collate_fn=collate)  # fmt: skip
    tracker: Tracker = build(cfg.tracking)
    source = cfg.run_id or Path(cfg.weights).name
    name = f"eval-{adapter.label()}-{splits.name}-{base.arch}"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = {EVALUATES: str(cfg.run_id or cfg.weights)}
    with tracker.start_run(name, params=flatten(resolved), tags=tags):
        baseline = evaluate(zero_shot.sam.to(device), loader, zero_prompt, device, seed=cfg.seed,
                            keep_predictions=tracker.max_images, desc="zero-shot")  # fmt: skip
        final = evaluate(base.sam.to(device), loader, prompt, device, seed=cfg.seed,
                         keep_predictions=tracker.max_images, desc="fine-tuned")  # fmt: skip
        metrics = compared(baseline, final, cfg.split)
        tracker.log_metrics(metrics)
        log_comparisons(tracker, dataset, baseline, final)
        tracker.log_json(per_image(baseline, final), "metrics/per_image.json")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"source": source, "dataset": splits.name,
                                                  "split": cfg.split, "metrics": metrics}, indent=2))  # fmt: skip
    log.info("%s on %s/%s: %s", source, splits.name, cfg.split,
             {k: round(v, 4) for k, v in metrics.items() if "/" in k and k.count("/") == 2})  # fmt: skip
    return metrics
