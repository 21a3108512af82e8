"""Synthetic study runs logged through samexp.tracking, as a study's workers log them: a parent
run per study, one child per (method, seed) with its params, costs, config and per-image figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from samexp.tracking.sweep_parent import find_or_create_parent
from samexp.tracking.tracker import Tracker

TARGETS = {"lora": ("samexp.adapters.lora.LoraAdapter", {"rank": 4}),
           "decoder": ("samexp.adapters.decoder.DecoderAdapter", {})}  # fmt: skip


def per_image(zero_shot: np.ndarray, final: np.ndarray, categories=None) -> list[dict]:
    """The rows samexp.evaluate.compare.per_image writes, for instances `img<i>#0`."""
    return [{"name": f"img{i}", "instance": 0, "baseline_iou": float(b), "final_iou": float(f),
             "baseline_dice": float(2 * b / (1 + b)), "final_dice": float(2 * f / (1 + f)),
             **({"category": categories[i]} if categories else {})}
            for i, (b, f) in enumerate(zip(zero_shot, final, strict=True))]  # fmt: skip


def log_study(home: Path, study: str, runs: dict[tuple[str, int], list[dict]],
              costs: dict[str, dict[str, float]] | None = None) -> tuple[str, str]:  # fmt: skip
    """(tracking uri, parent run id) of a study whose runs are `runs[(kind, seed)]`."""
    uri = f"sqlite:///{home}/mlflow.db"
    parent = Tracker(uri, str(home / "artifacts"), experiment="studies")
    client = parent.client()
    experiment = client.get_experiment_by_name("studies").experiment_id
    parent_id = find_or_create_parent(client, experiment, f"study:{study}")
    for (kind, seed), rows in runs.items():
        target, hparams = TARGETS[kind]
        tracker = Tracker(uri, str(home / "artifacts"), experiment="studies",
                          parent_run_id=parent_id)  # fmt: skip
        with tracker.start_run(f"{kind}-s{seed}", params={"trainer.seed": seed}, tags={}):
            tracker.log_text(yaml.safe_dump({"adapter": {"_target_": target, **hparams}}), "config.yaml")  # fmt: skip
            tracker.log_json(rows, "metrics/per_image.json")
            tracker.log_metrics((costs or {}).get(kind, {}))
    client.set_terminated(parent_id, "FINISHED")
    return uri, parent_id
