"""The training loop, top to bottom: predict, loss, (accumulate, clip) step; evaluate once per epoch,
keep the best weights, stop early. Tracking and evaluation reach the loop as plain callables, so
the loop never imports mlflow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from segment_anything.modeling import Sam
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from samexp.adapters.base import trainable_parameters
from samexp.models.seam import upscale
from samexp.prompts.base import PromptStrategy
from samexp.training.distributed import ONE_PROCESS, World, any_rank, gather
from samexp.training.divergence import MAX_NONFINITE_STEPS, NonFiniteGuard
from samexp.training.evaluation import predict
from samexp.training.losses import SamLoss
from samexp.training.monitor import Monitor
from samexp.training.precision import MixedPrecision, mixed_precision
from samexp.training.schedulers import Schedule
from samexp.training.state import EpochProgress, TrainState, capture_rng, restore_rng

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    steps: int
    epochs: int
    last_loss: float
    best_epoch: int
    best_value: float
    stopped_early: bool


def training_loss(
    sam: Sam, loss_fn: SamLoss, passes: list[tuple[torch.Tensor, torch.Tensor]], masks: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean loss over the decoder passes; with several candidate masks per pass, each instance
    back-propagates only its lowest-loss candidate (SAM's multimask training)."""
    totals, parts_sum = [], {}
    for low_res, iou_pred in passes:
        # fp32 from here on, whatever autocast ran the model in: the loss sums over megapixels
        logits, iou_pred = upscale(sam, low_res.float()), iou_pred.float()
        if logits.shape[1] == 1:
            loss, parts = loss_fn(logits, masks, iou_pred)
        else:
            loss, parts = loss_fn.min_over_candidates(logits, masks, iou_pred)
        totals.append(loss)
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v.detach() / len(passes)
    return torch.stack(totals).mean(), parts_sum


def _optimizer_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
                    amp: MixedPrecision, grad_clip: float | None, finite_loss: bool) -> float | None:  # fmt: skip
    """Step on the accumulated gradients if they are finite; their norm, or None when skipped."""
    amp.unscale(optimizer)  # the true gradients, for the check and the clip (no-op unless fp16)
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    if not finite_loss or not torch.isfinite(norm):
        amp.skip(optimizer)
        return None
    if grad_clip is not None:
        torch.nn.utils.clip_grads_with_norm_(params, grad_clip, norm)
    amp.step(optimizer)
    return float(norm)


class StopRequested(Exception):
    """A stop was asked for (a signal): raised after the step in progress, with its checkpoint written."""

    def __init__(self, state: TrainState) -> None:
        super().__init__(state.where)
        self.state = state


def fit(
    sam: Sam,
    loader: DataLoader,
    prompt: PromptStrategy,
    loss_fn: SamLoss,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epochs: int,
    max_steps: int | None = None,
    seed: int = 0,
    multimask_output: bool = False,
    grad_accum_steps: int = 1,
    grad_clip: float | None = None,
    schedule: Schedule | None = None,
    monitor: Monitor | None = None,
    eval_every: int = 1,
    evaluate_fn: Callable[[int], dict[str, float]] | None = None,
    log_fn: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
    report_fn: Callable[[float, int], None] | None = None,
    encoder: Callable | None = None,
    precision: MixedPrecision | None = None,
    max_nonfinite_steps: int = MAX_NONFINITE_STEPS,
    resume: TrainState | None = None,
    checkpoint: Callable[[TrainState, bool], None] | None = None,
    checkpoint_every: int = 1,
    stop_requested: Callable[[], bool] = lambda: False,
    world: World = ONE_PROCESS,
) -> FitResult:
    """`report_fn(value, epoch)` receives the monitored metric after each evaluation (a sweep's
    pruning hook; it may raise to stop the trial). Raises TrainingDiverged when the loss or the
    gradients stay non-finite (see NonFiniteGuard).

    `checkpoint(state, is_best)` is called after every `checkpoint_every` epochs (0: never) and
    when `stop_requested()` turns true, which is checked after each optimizer step; then
    StopRequested is raised. `resume` continues from such a state exactly: the epoch in progress
    draws its batches in the same order, skips those already trained, and goes on with every RNG
    where it was.
    """
    amp = precision or mixed_precision("fp32", device)
    generator = torch.Generator().manual_seed(seed)
    schedule = schedule or Schedule(None, "step")
    params = list(trainable_parameters(sam).values())
    guard = NonFiniteGuard(max_nonfinite_steps)
    step, epoch, mean_loss, stop, loss = 0, 0, math.nan, False, torch.zeros(())
    progress = EpochProgress()
    step_model = _StepModel(sam, prompt, multimask_output, encoder)
    if world.distributed:  # gradients all-reduced by DDP; frozen or unused parameters are fine
        step_model = DistributedDataParallel(step_model, find_unused_parameters=True)
    if resume is not None:
        _restore(resume, sam, optimizer, schedule, amp, monitor, guard, loader, device)
        step, epoch, progress = resume.step, resume.epoch, resume.progress
        if resume.epoch_complete:
            restore_rng(resume.rng, generator)
            progress = EpochProgress()
        log.info("resuming after %s", resume.where)

    def snapshot(complete: bool, loader_rng: torch.Tensor | None) -> TrainState:
        return TrainState(
            epoch=epoch, epoch_complete=complete, step=step,
            params={n: p.detach().cpu().clone() for n, p in trainable_parameters(sam).items()},
            optimizer=optimizer.state_dict(),
            scheduler=schedule.scheduler.state_dict() if schedule.scheduler is not None else None,
            scaler=amp.scaler.state_dict(), rng=capture_rng(generator), loader_rng=loader_rng,
            monitor=monitor.progress() if monitor is not None else {},
            best_params=monitor.best_state if monitor is not None else {},
            guard={k: v for k, v in asdict(guard).items() if k != "limit"},
            progress=EpochProgress(**asdict(progress)),
        )  # fmt: skip

    def stop_here(complete: bool, loader_rng: torch.Tensor | None) -> None:
        state = snapshot(complete, loader_rng)
        if checkpoint is not None:
            checkpoint(state, False)
        raise StopRequested(state)

    def stop_if_diverged(**when: bool) -> None:
        what = guard.verdict(epoch, **when)
        if what is not None:
            log_fn({"train/skipped_nonfinite": guard.skipped}, epoch)
            raise guard.fail(what, epoch, step, loss.item(), optimizer.param_groups[0]["lr"],
                             amp.name)  # fmt: skip

    if stop_requested():  # asked before the first step: nothing trained yet, a checkpoint at 0
        stop_here(complete=True, loader_rng=_rng_of(loader))
    first = epoch + 1 if resume is None or resume.epoch_complete else epoch
    for epoch in range(first, epochs + 1):
        sam.train()
        skip = progress.batches_done  # > 0 only in the epoch a resume continues
        if not skip:
            progress = EpochProgress()
            guard.new_epoch()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)  # this epoch's order, the same on every rank
        epoch_rng = _rng_of(loader)  # the data order of this epoch is drawn from it
        window_finite = True  # every loss of the current accumulation window was finite
        optimizer.zero_grad(set_to_none=True)
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False)
        for i, batch in enumerate(bar, start=1):
            if i <= skip:  # trained before the interruption: drawn again in order, not again
                if i == skip:
                    restore_rng(resume.rng, generator)
                continue
            batch = batch.to(device)
            ends_window = i % grad_accum_steps == 0 or i == len(loader)
            # DDP all-reduces on the backward that ends a window, never inside it
            syncing = (
                step_model.no_sync() if world.distributed and not ends_window else nullcontext()
            )
            with syncing:
                with amp.autocast():
                    passes = step_model(batch, generator)
                loss, parts = training_loss(sam, loss_fn, passes, batch.masks)
                finite = bool(torch.isfinite(loss))
                # a non-finite loss would poison the window's gradients: no backward; under DDP
                # every rank must take part, and the window is skipped on all of them below
                if finite or world.distributed:
                    amp.backward(loss / grad_accum_steps)
            if finite:
                progress.seen += 1
                for name, value in {"loss": loss, **{f"loss/{k}": v for k, v in parts.items()}}.items():  # fmt: skip
                    progress.sums[name] = progress.sums.get(name, 0.0) + float(value.detach())
            window_finite &= finite
            progress.batches_done = i
            if ends_window:
                window_finite = not any_rank(not window_finite, world)
                norm = _optimizer_step(optimizer, params, amp, grad_clip, window_finite)
                optimizer.zero_grad(set_to_none=True)
                guard.record(norm is not None, window_finite)
                if norm is not None:
                    progress.norms.append(norm)
                schedule.step("step")
                step += 1
                window_finite = True
                stop_if_diverged()
                if stop_requested() and i < len(loader):
                    stop_here(complete=False, loader_rng=epoch_rng)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if max_steps is not None and step >= max_steps:
                break
        sums, seen = _over_ranks(progress, world)
        mean_loss = sums["loss"] / seen if seen else math.nan
        epoch_metrics = {f"train/{k}": v / max(seen, 1) for k, v in sums.items()}
        epoch_metrics["train/loss"] = mean_loss
        if progress.norms:  # per optimizer step, not per micro-batch
            epoch_metrics["train/grad_norm"] = sum(progress.norms) / len(progress.norms)
        epoch_metrics["train/skipped_nonfinite"] = guard.skipped
        epoch_metrics["train/lr"] = optimizer.param_groups[0]["lr"]
        progress = EpochProgress()
        if guard.epoch_skipped:
            log.warning("epoch %d: skipped %d of %d optimizer steps with a non-finite loss or "
                        "gradient", epoch, guard.epoch_skipped, guard.epoch_steps)  # fmt: skip
        stop_if_diverged(end_of_epoch=True)
        done = max_steps is not None and step >= max_steps
        improved = False
        if evaluate_fn is not None and (epoch % eval_every == 0 or epoch == epochs or done):
            eval_metrics = evaluate_fn(epoch)
            epoch_metrics.update(eval_metrics)
            if monitor is not None:
                value = eval_metrics.get(monitor.name, math.nan)
                improved = monitor.improved(value)
                stop = monitor.update(value, epoch, sam)
                schedule.step("metric", value)
        schedule.step("epoch")
        log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in epoch_metrics.items()))
        log_fn(epoch_metrics, epoch)
        if report_fn is not None and monitor is not None and monitor.name in epoch_metrics:
            report_fn(epoch_metrics[monitor.name], epoch)
        if stop:
            log.info("early stop: %s did not improve for %d evaluations (best %.4f at epoch %d)",
                     monitor.name, monitor.stale, monitor.best, monitor.best_epoch)  # fmt: skip
        last = done or stop or epoch == epochs
        if checkpoint is not None and checkpoint_every and (epoch % checkpoint_every == 0 or last):
            checkpoint(snapshot(complete=True, loader_rng=_rng_of(loader)), improved)
        if stop_requested() and not last:
            stop_here(complete=True, loader_rng=_rng_of(loader))
        if last:
            break
    stop_if_diverged(end_of_run=True)
    best_epoch = monitor.best_epoch if monitor is not None else epoch
    best_value = monitor.best if monitor is not None else math.nan
    return FitResult(step, epoch, mean_loss, best_epoch, best_value, stop)


class _StepModel(torch.nn.Module):
    """The prompted forward of one batch as a module, so DistributedDataParallel can wrap it
    (training never goes through `Sam.forward`, which is no_grad)."""

    def __init__(self, sam: Sam, prompt: PromptStrategy, multimask_output: bool,
                 encoder: Callable | None) -> None:  # fmt: skip
        super().__init__()
        self.sam, self.prompt = sam, prompt
        self.multimask_output, self.encoder = multimask_output, encoder

    def forward(self, batch, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return predict(self.sam, batch, self.prompt, generator, train=True,
                       multimask_output=self.multimask_output, encoder=self.encoder)  # fmt: skip


def _over_ranks(progress: EpochProgress, world: World) -> tuple[dict[str, float], int]:
    """The epoch's loss sums and counts of every rank, so train/loss is the whole epoch's mean."""
    parts = gather((progress.sums, progress.seen), world)
    sums: dict[str, float] = {}
    for part, _ in parts:
        for k, v in part.items():
            sums[k] = sums.get(k, 0.0) + v
    return sums, sum(seen for _, seen in parts)


def _rng_of(loader: DataLoader) -> torch.Tensor | None:
    return loader.generator.get_state() if loader.generator is not None else None


def _restore(state: TrainState, sam: Sam, optimizer: torch.optim.Optimizer, schedule: Schedule,
             amp: MixedPrecision, monitor: Monitor | None, guard: NonFiniteGuard,
             loader: DataLoader, device: torch.device) -> None:  # fmt: skip
    """Put the model, optimizer, schedule, scaler, monitor, guard and data order where `state`
    left them (the RNGs follow once the skipped batches are drawn)."""
    trainable = trainable_parameters(sam)
    with torch.no_grad():
        for name, value in state.params.items():
            trainable[name].copy_(value)
    optimizer.load_state_dict(state.optimizer)
    if schedule.scheduler is not None and state.scheduler is not None:
        schedule.scheduler.load_state_dict(state.scheduler)
    if state.scaler:
        amp.scaler.load_state_dict(state.scaler)
    if monitor is not None:
        monitor.resume(state.monitor, {n: t.to(device) for n, t in state.best_params.items()})
    for key, value in state.guard.items():
        setattr(guard, key, value)
    if loader.generator is not None and state.loader_rng is not None:
        loader.generator.set_state(state.loader_rng)
