"""The training loop, one page, the steps in the order they happen (nanoGPT's `train.py`):
forward under autocast, loss, backward (gradients accumulated over a window, synced by DDP on its
last batch), optimizer step; the epoch's figures; then the parts. Everything else a run needs
(stop requests, divergence, validation and early stopping, logging, heartbeat, pruning,
checkpoints) is a part called at fixed points (samexp/training/parts.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from samexp.adapters.base import trainable_parameters
from samexp.config.distributed import ONE_PROCESS, World, any_rank, gather
from samexp.data.base import Batch
from samexp.models.seam import upscale
from samexp.prompts.base import PromptStrategy
from samexp.training.evaluation import predict
from samexp.training.losses import SamLoss
from samexp.training.parts import Part, Parts
from samexp.training.precision import MixedPrecision, mixed_precision
from samexp.training.schedulers import Schedule
from samexp.training.state import EpochProgress, TrainState, capture_rng, restore_rng

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """What trains and how: the model, its data, prompts and loss, the optimizer and schedule,
    and the few settings of the step itself. Everything else is a part."""

    sam: nn.Module
    loader: DataLoader
    prompt: PromptStrategy
    loss_fn: SamLoss
    optimizer: torch.optim.Optimizer
    device: torch.device
    epochs: int
    max_steps: int | None = None
    seed: int = 0  # the prompt generator's
    multimask_output: bool = False
    grad_accum_steps: int = 1
    grad_clip: float | None = None
    schedule: Schedule | None = None
    precision: MixedPrecision | None = None
    encoder: Callable | None = None  # image embeddings from a cache instead of the encoder
    world: World = ONE_PROCESS


@dataclass
class FitResult:
    steps: int
    epochs: int
    last_loss: float
    stopped_early: bool


def fit(setup: Setup, parts: Sequence[Part] = (), resume: TrainState | None = None) -> FitResult:
    """Train `setup.sam`; `resume` goes on from a checkpoint exactly (the epoch in progress draws
    its batches in the same order, skips those already trained, every RNG where it was)."""
    loop = Loop(setup, Parts(parts), resume)
    s, amp, first = setup, loop.amp, loop.first_epoch
    loop.parts.fit_start(loop)  # a stop asked before the first step ends here
    for loop.epoch in range(first, s.epochs + 1):
        loop.start_epoch()
        loop.parts.epoch_start(loop)
        for i, batch in loop.batches():
            batch = batch.to(s.device)
            with loop.accumulating(i):  # DDP all-reduces on a window's last backward only
                with amp.autocast():
                    passes = loop.model(batch, loop.generator)
                loss, loss_parts = training_loss(s.sam, s.loss_fn, passes, batch.masks)
                finite = bool(torch.isfinite(loss))
                # a non-finite loss would poison the window's gradients: no backward; under DDP
                # every rank must take part, and the window is skipped on all of them
                if finite or s.world.distributed:
                    amp.backward(loss / s.grad_accum_steps)
            loop.record(i, loss, loss_parts, finite)
            if loop.ends_window(i):
                loop.optimizer_step()
                loop.parts.step_end(loop)  # divergence, heartbeat, stop request
            if loop.out_of_steps:
                break
        loop.end_epoch()  # the epoch's train figures, summed over every rank
        loop.parts.epoch_end(loop)  # divergence; validation, best weights, early stop
        loop.schedule.step("epoch")
        loop.parts.after_epoch(loop)  # log, heartbeat, pruning, checkpoint, stop request
        if loop.last:
            break
    loop.parts.fit_end(loop)  # a run that ends on a non-finite loss diverged
    return FitResult(loop.step, loop.epoch, loop.mean_loss, loop.stopped_early)


class Loop:
    """Where training is, shared with its parts: what they read (epoch, step, metrics, the model
    and optimizer) and the flags they set (`improved`, `stopped_early`)."""

    def __init__(self, setup: Setup, parts: Parts, resume: TrainState | None) -> None:
        self.setup, self.parts, self.sam, self.world = setup, parts, setup.sam, setup.world
        self.epochs, self.device, self.optimizer = setup.epochs, setup.device, setup.optimizer
        self.amp = setup.precision or mixed_precision("fp32", setup.device)
        self.schedule = setup.schedule or Schedule(None, "step")
        self.generator = torch.Generator().manual_seed(setup.seed)
        self.params = list(trainable_parameters(setup.sam).values())
        self.model = _StepModel(setup.sam, setup.prompt, setup.multimask_output, setup.encoder)
        # gradients all-reduced by DDP; frozen or unused parameters are fine
        if setup.world.distributed:
            self.model = DistributedDataParallel(self.model, find_unused_parameters=True)
        self.epoch = self.step = 0
        self.first_epoch, self.progress, self.resume = 1, EpochProgress(), resume
        self.metrics: dict[str, float] = {}
        self.loss, self.mean_loss, self.lr = torch.zeros(()), math.nan, self.optimizer.param_groups[0]["lr"]  # fmt: skip
        self.stepped, self.step_finite, self.window_finite = False, True, True
        self.epoch_ends_here = False
        self.improved = self.stopped_early = False
        self.skip, self.epoch_rng, self.bar = 0, None, None
        if resume is not None:
            self._restore(resume)

    @property
    def out_of_steps(self) -> bool:
        return self.setup.max_steps is not None and self.step >= self.setup.max_steps

    @property
    def last(self) -> bool:
        """Whether the epoch just ended is the run's last."""
        return self.out_of_steps or self.stopped_early or self.epoch == self.epochs

    @property
    def where(self) -> str:
        return f"epoch {self.epoch} step {self.step}"

    def start_epoch(self) -> None:
        loader = self.setup.loader
        self.sam.train()
        self.skip = self.progress.batches_done  # > 0 only in the epoch a resume continues
        if not self.skip:
            self.progress = EpochProgress()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(self.epoch)  # this epoch's order, the same on every rank
        self.epoch_rng = _rng_of(loader)  # the data order of this epoch is drawn from it
        self.window_finite, self.epoch_ends_here = True, False
        self.optimizer.zero_grad(set_to_none=True)

    def batches(self) -> Iterator[tuple[int, Batch]]:
        """This epoch's batches, numbered from 1; in the epoch a resume continues, those trained
        before the interruption are drawn again in order (the data order stays), not trained."""
        loader = self.setup.loader
        self.bar = tqdm(loader, desc=f"epoch {self.epoch}/{self.epochs}", leave=False)
        for i, batch in enumerate(self.bar, start=1):
            if i <= self.skip:
                if i == self.skip:
                    restore_rng(self.resume.rng, self.generator)
                continue
            self.epoch_ends_here = i == len(loader)
            yield i, batch

    def ends_window(self, i: int) -> bool:
        """Whether batch `i` is the last of its accumulation window (or of the epoch)."""
        return self.epoch_ends_here or i % self.setup.grad_accum_steps == 0

    def accumulating(self, i: int) -> AbstractContextManager:
        if self.world.distributed and not self.ends_window(i):
            return self.model.no_sync()
        return nullcontext()

    def record(self, i: int, loss: torch.Tensor, parts: dict[str, torch.Tensor], finite: bool) -> None:  # fmt: skip
        """The batch's loss into the epoch's running sums (finite ones only)."""
        self.loss = loss
        if finite:
            self.progress.seen += 1
            for name, value in {"loss": loss, **{f"loss/{k}": v for k, v in parts.items()}}.items():  # fmt: skip
                self.progress.sums[name] = self.progress.sums.get(name, 0.0) + float(value.detach())
        self.window_finite &= finite
        self.progress.batches_done = i
        self.bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{self.lr:.2e}")

    def optimizer_step(self) -> None:
        """Step on the window's accumulated gradients if every rank's are finite, clipped."""
        self.window_finite = not any_rank(not self.window_finite, self.world)
        norm = _optimizer_step(self.optimizer, self.params, self.amp, self.setup.grad_clip,
                               self.window_finite)  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        self.stepped = norm is not None
        if norm is not None:
            self.progress.norms.append(norm)
        self.schedule.step("step")
        self.step += 1
        self.lr = self.optimizer.param_groups[0]["lr"]
        # what the parts read: whether the window's losses were finite on every rank
        self.step_finite, self.window_finite = self.window_finite, True

    def end_epoch(self) -> None:
        sums, seen = _over_ranks(self.progress, self.world)
        self.mean_loss = sums["loss"] / seen if seen else math.nan
        self.metrics = {f"train/{k}": v / max(seen, 1) for k, v in sums.items()}
        self.metrics["train/loss"] = self.mean_loss
        if self.progress.norms:  # per optimizer step, not per micro-batch
            self.metrics["train/grad_norm"] = sum(self.progress.norms) / len(self.progress.norms)
        self.metrics["train/lr"] = self.optimizer.param_groups[0]["lr"]
        self.progress = EpochProgress()

    def snapshot(self, complete: bool) -> TrainState:
        """The state to go on from: at the end of `epoch` (`complete`), or inside it (its data
        order as it was at its start, so the batches are drawn again)."""
        return TrainState(
            epoch=self.epoch, epoch_complete=complete, step=self.step,
            params={n: p.detach().cpu().clone() for n, p in trainable_parameters(self.sam).items()},
            optimizer=self.optimizer.state_dict(),
            scheduler=self.schedule.scheduler.state_dict() if self.schedule.scheduler is not None else None,
            scaler=self.amp.scaler.state_dict(), rng=capture_rng(self.generator),
            loader_rng=_rng_of(self.setup.loader) if complete else self.epoch_rng,
            progress=EpochProgress(**asdict(self.progress)), parts=self.parts.state_dict(),
        )  # fmt: skip

    def _restore(self, state: TrainState) -> None:
        """Put the model, optimizer, schedule, scaler, parts and data order where `state` left
        them (the RNGs follow once the skipped batches are drawn)."""
        trainable = trainable_parameters(self.sam)
        with torch.no_grad():
            for name, value in state.params.items():
                trainable[name].copy_(value)
        self.optimizer.load_state_dict(state.optimizer)
        if self.schedule.scheduler is not None and state.scheduler is not None:
            self.schedule.scheduler.load_state_dict(state.scheduler)
        if state.scaler:
            self.amp.scaler.load_state_dict(state.scaler)
        self.parts.load_state_dict(state.parts, self)
        loader = self.setup.loader
        if loader.generator is not None and state.loader_rng is not None:
            loader.generator.set_state(state.loader_rng)
        self.step, self.epoch, self.progress = state.step, state.epoch, state.progress
        self.first_epoch = state.epoch + 1 if state.epoch_complete else state.epoch
        if state.epoch_complete:
            restore_rng(state.rng, self.generator)
            self.progress = EpochProgress()
        self.lr = self.optimizer.param_groups[0]["lr"]
        log.info("resuming after %s", state.where)


def training_loss(
    sam: nn.Module,
    loss_fn: SamLoss,
    passes: list[tuple[torch.Tensor, torch.Tensor]],
    masks: torch.Tensor,
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


class _StepModel(torch.nn.Module):
    """The prompted forward of one batch as a module, so DistributedDataParallel can wrap it
    (training never goes through `Sam.forward`, which is no_grad)."""

    def __init__(self, sam: nn.Module, prompt: PromptStrategy, multimask_output: bool,
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
