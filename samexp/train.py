"""The training loop, top to bottom: predict, loss, step; evaluate and report once per epoch.

Tracking and evaluation reach the loop as plain callables, so the loop never imports mlflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from segment_anything.modeling import Sam
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from samexp.evaluate import predict
from samexp.models.seam import upscale
from samexp.prompts.base import PromptStrategy

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    steps: int
    epochs: int
    last_loss: float


def fit(
    sam: Sam,
    loader: DataLoader,
    prompt: PromptStrategy,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epochs: int,
    max_steps: int | None = None,
    seed: int = 0,
    multimask_output: bool = False,
    eval_every: int = 1,
    evaluate_fn: Callable[[int], dict[str, float]] | None = None,
    log_fn: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
) -> FitResult:
    generator = torch.Generator().manual_seed(seed)
    step, epoch, mean_loss = 0, 0, float("nan")
    for epoch in range(1, epochs + 1):
        sam.train()
        sums: dict[str, float] = {}
        seen = 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False)
        for batch in bar:
            batch = batch.to(device)
            low_res, iou_pred = predict(
                sam, batch, prompt, generator, train=True, multimask_output=multimask_output
            )
            loss, parts = loss_fn(upscale(sam, low_res), batch.masks, iou_pred)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += 1
            for name, value in {"loss": loss, **{f"loss/{k}": v for k, v in parts.items()}}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if max_steps is not None and step >= max_steps:
                break
        mean_loss = sums["loss"] / max(seen, 1)
        epoch_metrics = {f"train/{k}": v / max(seen, 1) for k, v in sums.items()}
        epoch_metrics["train/lr"] = optimizer.param_groups[0]["lr"]
        done = max_steps is not None and step >= max_steps
        if evaluate_fn is not None and (epoch % eval_every == 0 or epoch == epochs or done):
            epoch_metrics.update(evaluate_fn(epoch))
        log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in epoch_metrics.items()))
        log_fn(epoch_metrics, epoch)
        if done:
            break
    return FitResult(steps=step, epochs=epoch, last_loss=mean_loss)
