"""Prompted prediction on a batch, and evaluation of a model on a split with fixed, seeded prompts."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from samexp.config.distributed import ONE_PROCESS, World, gather
from samexp.data.base import Batch
from samexp.models.family import Features
from samexp.models.seam import decode, encode, encoder_trains, mask_threshold, pipeline
from samexp.prompts.base import PromptStrategy
from samexp.training import metrics


def predict(
    sam: nn.Module,
    batch: Batch,
    prompt: PromptStrategy,
    generator: torch.Generator,
    train: bool,
    multimask_output: bool = False,
    encoder: Callable[[nn.Module, torch.Tensor, list[tuple[int, int]]], Features] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Low-res logits (M×C×h×w) and predicted IoU (M×C) for every instance of the batch, one
    entry per decoder pass (1 + `prompt.refinements`); one encoder pass per image in all cases."""
    trains = encoder_trains(sam)
    if encoder is not None and not trains:  # a frozen encoder's output can come from a cache
        features = encoder(sam, batch.images, batch.input_sizes)
    else:
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains):
            features = encode(sam, batch.images, batch.input_sizes)
    device = batch.images.device
    sizes = torch.tensor(batch.input_sizes, device=batch.masks.device)[batch.instance_image]
    prompts = prompt.prompts_for(batch, sizes, generator, train=train).to(device)
    passes = [decode(sam, features, batch.instance_image, prompts, multimask_output)]
    for _ in range(prompt.refinements):
        best = select_best(*passes[-1])
        prompts = prompt.refine(prompts, best.detach(), batch.masks, sizes, generator, train=train)
        passes.append(
            decode(sam, features, batch.instance_image, prompts.to(device), multimask_output)
        )
    return passes


def select_best(low_res: torch.Tensor, iou_pred: torch.Tensor) -> torch.Tensor:
    """The mask SAM itself would pick: highest predicted IoU per instance (M×C×h×w -> M×1×h×w)."""
    index = iou_pred.argmax(dim=1)
    return low_res[torch.arange(len(low_res), device=low_res.device), index].unsqueeze(1)


def metric_safe(name: str) -> str:
    """Category names become metric keys; MLflow accepts only letters, digits, _ - . space and /."""
    return re.sub(r"[^\w\-. /]", "_", name)


@dataclass
class EvalResult:
    rows: list[dict] = field(default_factory=list)  # one per instance: name, instance, iou, dice
    predictions: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # name -> H×W bool (kept images)
    # every image against every class (learned class prompts): rows carry pixel counts
    by_class: bool = False

    def metrics(self, prefix: str) -> dict[str, float]:
        """Means over instances; with several categories also per category (`test/iou/<name>`).
        Per class (`by_class`), the semantic-segmentation figures instead."""
        if self.by_class:
            return self._class_metrics(prefix)
        out = {
            f"{prefix}/iou": metrics.summarize([r["iou"] for r in self.rows]),
            f"{prefix}/dice": metrics.summarize([r["dice"] for r in self.rows]),
        }
        categories = sorted({r.get("category", "object") for r in self.rows})
        if len(categories) > 1:
            for c in categories:
                rows = [r for r in self.rows if r.get("category") == c]
                key = metric_safe(c)
                out[f"{prefix}/iou/{key}"] = metrics.summarize([r["iou"] for r in rows])
                out[f"{prefix}/dice/{key}"] = metrics.summarize([r["dice"] for r in rows])
        return out

    def _class_metrics(self, prefix: str) -> dict[str, float]:
        """Per class, IoU = Σ intersection / Σ union over the split's images, Dice = 2 Σ I /
        (Σ predicted + Σ true), so pixels painted where a class is absent count against it;
        `iou` and `dice` (and `miou`) are their means over the classes that occur in the truth
        or the prediction (a class never seen nor predicted has no IoU)."""
        sums: dict[str, list[int]] = {}
        for r in self.rows:
            total = sums.setdefault(r["category"], [0, 0, 0, 0])
            for i, key in enumerate(("inter", "union", "pred_px", "true_px")):
                total[i] += r[key]
        out: dict[str, float] = {}
        for category, (inter, union, pred, true) in sorted(sums.items()):
            if union:
                out[f"{prefix}/iou/{metric_safe(category)}"] = inter / union
                out[f"{prefix}/dice/{metric_safe(category)}"] = 2 * inter / (pred + true)
        ious = [v for k, v in out.items() if k.startswith(f"{prefix}/iou/")]
        dices = [v for k, v in out.items() if k.startswith(f"{prefix}/dice/")]
        out[f"{prefix}/iou"] = out[f"{prefix}/miou"] = metrics.summarize(ious)
        out[f"{prefix}/dice"] = metrics.summarize(dices)
        return out

    def by_name(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in self.rows:
            out.setdefault(r["name"], []).append(r)
        return out


@torch.no_grad()
def evaluate(
    sam: nn.Module,
    loader: DataLoader,
    prompt: PromptStrategy,
    device: torch.device,
    seed: int = 0,
    keep_predictions: int = 0,
    desc: str = "eval",
    multimask_output: bool = False,
    encoder: Callable | None = None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    world: World = ONE_PROCESS,
) -> EvalResult:
    """Per-instance IoU/Dice at the original resolution. The prompt generator is seeded per batch
    (by `seed` and the batch's number), so every evaluation of a split sees exactly the same
    prompts, however its batches are shared between ranks (`ShardBatches`); under torchrun each
    rank evaluates its share and every rank returns the gathered whole, in single-process order."""
    was_training = sam.training
    sam.eval()
    geometry, threshold = pipeline(sam), mask_threshold(sam)
    generator = torch.Generator()
    result = EvalResult()
    numbers = getattr(loader.batch_sampler, "numbers", None) or range(len(loader))
    rows: list[tuple[int, dict]] = []
    shown = tqdm(loader, desc=desc, leave=False, disable=not world.is_main)
    for number, batch in zip(numbers, shown, strict=True):
        generator.manual_seed(seed * 1_000_003 + number)
        batch = batch.to(device)
        with autocast():
            passes = predict(
                sam,
                batch,
                prompt,
                generator,
                train=False,
                multimask_output=multimask_output,
                encoder=encoder,
            )
        low_res = select_best(*passes[-1]).float()
        for i, name in enumerate(batch.names):
            index = torch.nonzero(batch.instance_image == i).flatten()
            # back to the photo's pixels as predict and the demo do (`samexp.data.frame`)
            frame = geometry.frame(*batch.original_sizes[i])
            pred = frame.masks(low_res[index], threshold)[:, 0].cpu()
            target = torch.stack([batch.gt_masks[j] for j in index.tolist()])
            ious, dices = metrics.iou(pred, target), metrics.dice(pred, target)
            counts = _pixel_counts(pred, target) if prompt.promptless else [{}] * len(index)
            for k, j in enumerate(index.tolist()):
                category = batch.categories[j] if batch.categories else "object"
                rows.append((number, {"name": name, "instance": k, "category": category,
                                      "iou": float(ious[k]), "dice": float(dices[k]),
                                      **counts[k]}))  # fmt: skip
            if len(result.predictions) < keep_predictions:
                result.predictions[name] = pred.any(0).numpy()
    sam.train(was_training)
    whole = _whole(rows, result.predictions, keep_predictions, world)
    whole.by_class = prompt.promptless
    return whole


def _pixel_counts(pred: torch.Tensor, target: torch.Tensor) -> list[dict[str, int]]:
    """Intersection, union, predicted and true pixels of each of N mask pairs (N×H×W bool)."""
    inter = (pred & target).flatten(1).sum(1)
    union = (pred | target).flatten(1).sum(1)
    counts = zip(inter, union, pred.flatten(1).sum(1), target.flatten(1).sum(1), strict=True)
    return [{"inter": int(i), "union": int(u), "pred_px": int(p), "true_px": int(t)}
            for i, u, p, t in counts]  # fmt: skip


def _whole(rows: list[tuple[int, dict]], predictions: dict[str, np.ndarray], keep: int,
           world: World) -> EvalResult:  # fmt: skip
    """Every rank's rows in batch order (each rank's own are in order already), and the
    predictions of the first `keep` images of the split."""
    parts = gather((rows, predictions), world)
    ordered = sorted((r for part, _ in parts for r in part), key=lambda r: r[0])  # stable
    kept: dict[str, np.ndarray] = {}
    for _, row in ordered:
        name = row["name"]
        if len(kept) < keep and name not in kept:
            kept[name] = next(p[name] for _, p in parts if name in p)
    return EvalResult([row for _, row in ordered], kept)
