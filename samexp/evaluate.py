"""Prompted prediction on a batch, and evaluation of a model on a split with fixed, seeded prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from samexp import metrics
from samexp.data.base import Batch
from samexp.models.seam import decode, encode, to_original
from samexp.prompts.base import PromptStrategy


def predict(
    sam: Sam,
    batch: Batch,
    prompt: PromptStrategy,
    generator: torch.Generator,
    train: bool,
    multimask_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res logits and predicted IoU for every instance of the batch, one encoder pass per image."""
    encoder_trains = any(p.requires_grad for p in sam.image_encoder.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and encoder_trains):
        embeddings = encode(sam, batch.images, batch.input_sizes)
    sizes = torch.tensor(batch.input_sizes, device=batch.masks.device)[batch.instance_image]
    prompts = prompt(batch.masks, sizes, generator, train=train).to(embeddings.device)
    return decode(sam, embeddings, batch.instance_image, prompts, multimask_output)


@dataclass
class EvalResult:
    rows: list[dict] = field(default_factory=list)  # one per instance: name, instance, iou, dice
    predictions: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # name -> H×W bool (kept images)

    def metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/iou": metrics.summarize([r["iou"] for r in self.rows]),
            f"{prefix}/dice": metrics.summarize([r["dice"] for r in self.rows]),
        }

    def by_name(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in self.rows:
            out.setdefault(r["name"], []).append(r)
        return out


@torch.no_grad()
def evaluate(
    sam: Sam,
    loader: DataLoader,
    prompt: PromptStrategy,
    device: torch.device,
    seed: int = 0,
    keep_predictions: int = 0,
    desc: str = "eval",
) -> EvalResult:
    """Per-instance IoU/Dice at the original resolution. The generator is re-seeded on every call,
    so every evaluation of a split sees exactly the same prompts."""
    was_training = sam.training
    sam.eval()
    generator = torch.Generator().manual_seed(seed)
    result = EvalResult()
    for batch in tqdm(loader, desc=desc, leave=False):
        batch = batch.to(device)
        low_res, _ = predict(sam, batch, prompt, generator, train=False)
        for i, name in enumerate(batch.names):
            index = torch.nonzero(batch.instance_image == i).flatten()
            logits = to_original(
                sam, low_res[index][:, :1], batch.input_sizes[i], batch.original_sizes[i]
            )
            pred = (logits[:, 0] > sam.mask_threshold).cpu()
            target = torch.stack([batch.gt_masks[j] for j in index.tolist()])
            ious, dices = metrics.iou(pred, target), metrics.dice(pred, target)
            for k in range(len(index)):
                result.rows.append(
                    {"name": name, "instance": k, "iou": float(ious[k]), "dice": float(dices[k])}
                )
            if len(result.predictions) < keep_predictions:
                result.predictions[name] = pred.any(0).numpy()
    sam.train(was_training)
    return result
