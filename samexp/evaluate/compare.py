"""Zero-shot against fine-tuned on one split, as every run and `python -m samexp.evaluate` report
it: the metrics side by side with their deltas, the per-image table and the comparison images."""

from __future__ import annotations

import numpy as np

from samexp.tracking.tracker import Tracker
from samexp.tracking.viz import comparison, original_frame
from samexp.training.evaluation import EvalResult


def compared(baseline: EvalResult, final: EvalResult, split: str) -> dict[str, float]:
    """`baseline/<split>/*`, `final/<split>/*` and `delta/<split>/{iou,dice}`."""
    metrics = {**baseline.metrics(f"baseline/{split}"), **final.metrics(f"final/{split}")}
    for name in ("iou", "dice"):
        metrics[f"delta/{split}/{name}"] = (
            metrics[f"final/{split}/{name}"] - metrics[f"baseline/{split}/{name}"]
        )
    return metrics


def per_image(baseline: EvalResult, final: EvalResult) -> list[dict]:
    """One row per test instance, zero-shot beside fine-tuned: what a study's report pairs across
    methods and seeds (`metrics/per_image.json`; the run's params hold its adapter and seeds)."""
    return [
        {"name": b["name"], "instance": b["instance"], "category": b["category"],
         "baseline_iou": b["iou"], "final_iou": f["iou"],
         "baseline_dice": b["dice"], "final_dice": f["dice"]}
        for b, f in zip(baseline.rows, final.rows, strict=True)
    ]  # fmt: skip


def log_comparisons(tracker: Tracker, dataset, baseline: EvalResult, final: EvalResult) -> None:
    """image | ground truth | zero-shot | fine-tuned, one PNG per kept eval image."""
    paths = {s_name: i for i, s_name in enumerate(dataset.names)}
    before, after = baseline.by_name(), final.by_name()
    for name, pred in final.predictions.items():
        sample = dataset[paths[name]]
        image = original_frame(sample)
        gt = sample.gt_masks.any(0).numpy()
        iou0 = float(np.mean([r["iou"] for r in before[name]]))
        iou1 = float(np.mean([r["iou"] for r in after[name]]))
        strip = comparison(image, gt, baseline.predictions[name], pred, iou0, iou1)
        tracker.log_image(strip, f"comparisons/{name}.png")
