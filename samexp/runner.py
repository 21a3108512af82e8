"""The one pipeline: build -> zero-shot eval -> train -> eval -> log. Returns the metrics (for
sweepers) and the MLflow run id."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from samexp.adapters.base import Adapter, parameter_counts, trainable_parameters
from samexp.config.devices import resolve_device
from samexp.config.errors import Interrupted, SamexpError
from samexp.config.instantiate import build
from samexp.config.schema import validate
from samexp.data import loading
from samexp.data.splits import TEST_FILES, DatasetSplits
from samexp.evaluate.compare import compared, log_comparisons, per_image
from samexp.models.build import BaseModel
from samexp.models.cached_encoder import CachedEncoder
from samexp.models.checkpoints import in_cache
from samexp.models.seam import encoder_trains
from samexp.prompts.base import PromptStrategy
from samexp.sweeps.pruning import reporter_from_config, shared_verdict
from samexp.tracking.results import save_weights
from samexp.tracking.resume import (
    Checkpoints,
    check_epochs,
    check_same_config,
    fetch_checkpoint,
    rank_lost,
    resume_hint,
    run_to_resume,
)
from samexp.tracking.tracker import Tracker, flatten, provenance, scratch_dir
from samexp.training import distributed
from samexp.training.evaluation import EvalResult, evaluate
from samexp.training.loop import StopRequested, fit
from samexp.training.monitor import Monitor, check_monitor
from samexp.training.precision import mixed_precision
from samexp.training.state import load_state
from samexp.training.stop import StopRequests

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _output_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("output_dir"):
        path = Path(cfg.output_dir)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        path = scratch_dir()
    return path  # created by the first file written there


def _model_selection(
    splits: DatasetSplits, tc: DictConfig, has_plateau: bool, objective: str
) -> bool:
    """Whether epochs are evaluated to pick the best one. Only ever on a validation split: the
    test split chooses nothing, or every test figure reported would be inflated. Without one,
    training runs its fixed epochs and test is evaluated once; options that cannot work without
    it are refused rather than quietly fed the test split."""
    if splits.val is not None:
        return True
    asked = [name for name, on in (("trainer.patience", tc.patience is not None),
                                   ("scheduler=plateau", has_plateau),
                                   (f"objective={objective}", objective.startswith("best/val/")))
             if on]  # fmt: skip
    if asked:
        raise SamexpError(
            f"{' and '.join(asked)} {'need' if len(asked) > 1 else 'needs'} a validation split, "
            f"and {splits.name} has none "
            f"(trainer.val_fraction={tc.val_fraction}, train split of {len(splits.train)} "
            "images); set trainer.val_fraction > 0 (and give train enough images) or give the "
            "dataset a val split; the test split is never used to choose a model"
        )
    log.warning(
        "no validation split (trainer.val_fraction=%s, train split of %d images): training for "
        "the fixed %d epochs with no per-epoch evaluation; the last epoch is tested once",
        tc.val_fraction, len(splits.train), tc.epochs,
    )  # fmt: skip
    return False


@dataclass(frozen=True)
class RunResult:
    """What one run returns: its metrics, numbers only (what a sweeper reads), and where it was logged."""

    metrics: dict[str, float]
    run_id: str | None  # the MLflow run; None with tracking.enabled=false


def run(cfg: DictConfig) -> RunResult:
    validate(cfg)  # the cheap checks first: a bad value fails before a model is built or downloaded
    tc = cfg.trainer
    seed_everything(tc.seed)
    world = distributed.world_from_env()
    if not world.is_main:  # rank 0 tells the story; the others speak up only for warnings
        logging.getLogger("samexp").setLevel(logging.WARNING)
    device = distributed.start(world, resolve_device(tc.device))
    workers = loading.num_workers(tc.num_workers, device)
    cache_bytes = loading.sample_cache_bytes(tc.sample_cache_gb)
    amp = mixed_precision(_enum_value(tc.precision), device)
    # rank 0 alone talks to MLflow; the others learn the run id from it
    tracker: Tracker = build(cfg.tracking, **({} if world.is_main else {"enabled": False}))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    out = Path(distributed.broadcast(str(_output_dir(cfg)), world))  # one folder for all ranks
    resuming = None
    if world.is_main:  # before a model is built: a wrong id is cheap
        resuming = run_to_resume(tracker, tc.resume)
        if resuming is not None:
            check_same_config(tracker, resuming, resolved, out / "resumed-from")
    adapter: Adapter = build(cfg.adapter, _convert_="all")
    prompt: PromptStrategy = build(cfg.prompt)
    eval_prompt: PromptStrategy = build(cfg.eval_prompt) if cfg.get("eval_prompt") else prompt
    if eval_prompt.promptless != prompt.promptless:
        raise SamexpError(
            "prompt and eval_prompt must both be promptless (class_tokens) or neither"
        )
    augment = build(cfg.augment, _convert_="all") if cfg.get("augment") else None
    loss_fn = build(cfg.loss)
    base: BaseModel = build(cfg.model, _convert_="all")
    adapter.apply(base.sam)
    kernel = _speedups(base, tc, device)
    base.sam.to(device)

    splits: DatasetSplits = build(cfg.dataset, img_size=base.img_size)
    loaded = splits.summary()  # before carving: the skip counts of the files as read
    splits = splits.carve_val(tc.val_fraction, tc.seed)
    data_summary = {**loaded, **splits.summary()}  # ...and the sizes actually used
    splits = prompt.prepare(base.sam, splits)  # class prompts join the model's parameters
    eval_prompt.bind(base.sam)
    if splits.val is not None:  # its categories known: a monitor it cannot report stops here
        check_monitor(tc.monitor, getattr(splits.val, "class_names", None),
                      eval_prompt.promptless, f"the validation split of {splits.name}")  # fmt: skip
    if augment is not None:
        splits.train.transform = augment
        log.info("augmentation on the train split only: %s", cfg.augment)
    log.info("data %s: %s", splits.name, data_summary)
    train_loader, val_loader, test_loader = loading.loaders(
        splits, batch_size=tc.batch_size, seed=tc.seed, device=device, workers=workers,
        cache_bytes=cache_bytes, world=world,
    )  # fmt: skip

    optimizer = build(cfg.optim, params=list(trainable_parameters(base.sam).values()))
    steps_per_epoch = math.ceil(len(train_loader) / tc.grad_accum_steps)
    total_steps = min(tc.max_steps or math.inf, tc.epochs * steps_per_epoch)
    mode = _enum_value(tc.monitor_mode)
    schedule = build(cfg.scheduler, optimizer=optimizer, total_steps=int(total_steps), mode=mode)
    selecting = _model_selection(splits, tc, schedule.interval == "metric", cfg.objective)
    monitor = Monitor(f"val/{tc.monitor}", mode, tc.patience) if selecting else None

    run_name = f"{adapter.label()}-{splits.name}-{base.arch}{_trial_suffix(cfg)}"
    counts = parameter_counts(base.sam)
    log.info(
        "%s: %d of %d parameters train",
        run_name,
        counts["params/trainable"],
        counts["params/total"],
    )

    eval_encoder = _embedding_cache(cfg, base, f"attention={kernel},precision={amp.dtype}")
    train_encoder = eval_encoder if augment is None else None
    if eval_encoder is not None and augment is not None:
        log.info(
            "embedding cache off for the train split: augmentation changes every image, every epoch"
        )

    def eval_split(loader: DataLoader, keep: int = 0, desc: str = "eval") -> EvalResult:
        return evaluate(base.sam, loader, eval_prompt, device, seed=tc.seed, keep_predictions=keep,
                        desc=desc, multimask_output=tc.multimask_output, encoder=eval_encoder,
                        autocast=amp.autocast, world=world)  # fmt: skip

    state = None
    if resuming is not None:
        kept = fetch_checkpoint(tracker, resuming, out / "resumed-from")
        state = load_state(kept, trainable_parameters(base.sam))
        check_epochs(state, tc.epochs, resuming)
    state = distributed.broadcast(state, world)  # every rank goes on from rank 0's checkpoint
    checkpoints = Checkpoints(out / "checkpoints", tracker, state and state.where)
    reporter = reporter_from_config(**cfg.optuna) if world.is_main else None
    overrides = _overrides()

    def log_epoch(metrics: dict[str, float], step: int) -> None:
        tracker.log_metrics(metrics, step)
        tracker.heartbeat()

    with StopRequests() as stops, tracker.start_run(run_name, params=flatten(resolved),
                                                    tags={**provenance(overrides), **_trial_tags(cfg)},
                                                    resume_run_id=resuming):  # fmt: skip
        if resuming is None:  # a resumed run has them from its first part
            tracker.log_text(OmegaConf.to_yaml(resolved), "config.yaml")
            tracker.log_json(data_summary, "data/summary.json")
            # the images scored: a held-out test split is rebuilt from these by any later run
            tracker.log_text("".join(f"{f}\n" for f in splits.files("test")), TEST_FILES)
            tracker.log_metrics({**counts, **{f"data/{k}": v for k, v in data_summary.items()}})
        # evaluated again on resume (deterministic): the comparison images need its predictions
        baseline = eval_split(test_loader, keep=tracker.max_images, desc="zero-shot")
        if resuming is None:
            tracker.log_metrics(baseline.metrics("baseline/test"))
        log.info("zero-shot: %s", baseline.metrics("baseline/test"))
        if world.distributed and train_encoder is not None and train_encoder.cache.root:
            train_encoder.fill(base.sam, loading.sharded(train_loader, world), device, world,
                               amp.autocast)  # fmt: skip

        try:
            result = fit(
                base.sam, train_loader, prompt, loss_fn, optimizer,
                device=device, epochs=tc.epochs, max_steps=tc.max_steps, seed=tc.seed,
                multimask_output=tc.multimask_output, grad_accum_steps=tc.grad_accum_steps,
                grad_clip=tc.grad_clip, schedule=schedule, monitor=monitor, eval_every=tc.eval_every,
                evaluate_fn=(lambda epoch: eval_split(val_loader).metrics("val")) if selecting else None,
                log_fn=log_epoch, report_fn=shared_verdict(reporter, world),
                encoder=train_encoder, precision=amp, max_nonfinite_steps=tc.max_nonfinite_steps,
                resume=state, checkpoint=checkpoints if world.is_main else None,
                checkpoint_every=tc.checkpoint_every, world=world,
                stop_requested=lambda: distributed.any_rank(stops.received is not None, world),
            )  # fmt: skip
        except StopRequested as e:  # after the step in progress, its checkpoint written
            hint = resume_hint(overrides, tracker.run_id, checkpoints.last, world.per_node)
            raise Interrupted(stops.received.name, stops.exit_code, e.state.where, hint) from None
        except Exception as e:  # torchrun: a peer killed outright breaks this rank's collective
            if not distributed.peer_lost(e, world):
                raise
            hint = resume_hint(overrides, tracker.run_id, checkpoints.last, world.per_node)
            raise rank_lost(checkpoints, hint, world.is_main) from None
        if stops.received is not None:  # training is done: the last minutes keep it, go on
            log.warning("%s after training: finishing the final evaluation and saving",
                        stops.received.name)  # fmt: skip
        if eval_encoder:  # the job's figures: every rank's lookups
            stats = eval_encoder.cache.total(distributed.gather(eval_encoder.cache.stats(), world))
            tracker.log_metrics({f"cache/{k}": v for k, v in stats.items()})
        restored = tc.restore_best and monitor is not None and bool(monitor.best_state)
        if restored:
            monitor.restore(base.sam)
            log.info("restored the best epoch (%d, %s=%.4f) for the final evaluation",
                     monitor.best_epoch, monitor.name, monitor.best)  # fmt: skip
        weights_epoch = monitor.best_epoch if restored else result.epochs

        final = eval_split(test_loader, keep=tracker.max_images, desc="fine-tuned")
        metrics = compared(baseline, final, "test")
        metrics.update({"best/epoch": weights_epoch, "train/epochs_run": result.epochs,
                        "train/steps": result.steps,
                        "train/stopped_early": float(result.stopped_early)})  # fmt: skip
        if monitor is not None:
            metrics[f"best/{monitor.name}"] = monitor.best
        tracker.log_metrics(metrics)
        log.info("final: %s", {k: round(v, 4) for k, v in metrics.items()})
        if base.caveat():
            log.info("%s", base.caveat())
        if world.is_main:  # the files are rank 0's to write
            log_comparisons(tracker, splits.test, baseline, final)
            tracker.log_json(per_image(baseline, final), "metrics/per_image.json")
            weights = save_weights(out / "adapter.safetensors", base, adapter, tracker)
            log.info("adapter weights (epoch %d): %s", weights_epoch, weights)
        if reporter is not None:  # a sweep trial resumed after its sweep tells its study itself
            tracker.set_tags(reporter.finish(metrics.get(cfg.objective)))
    return RunResult(metrics, distributed.broadcast(tracker.run_id, world))


def _embedding_cache(cfg: DictConfig, base: BaseModel, numerics: str) -> CachedEncoder | None:
    """A cache of image embeddings when nothing can change them; says why when it is off.

    `numerics` (attention kernel, autocast dtype) joins the key: they move the embeddings' last bits.
    """
    if encoder_trains(base.sam):
        log.info(
            "embedding cache off: the image encoder trains (%s)",
            cfg.adapter._target_.rsplit(".", 1)[-1],
        )
        return None
    cache = build(cfg.cache)
    if cache is None:
        return None
    log.info("embedding cache on: %s", in_cache(cache.root) if cache.root else "memory only")
    return CachedEncoder(cache, base.identity, extra=numerics)


def _speedups(base: BaseModel, tc: DictConfig, device: torch.device) -> str:
    """Run-time patches of the stock encoder that change speed and memory, never the results.
    Returns the attention kernel in use (cached embeddings are keyed by it)."""
    from samexp.models.attention import choose_kernel, set_attention
    from samexp.models.checkpointing import enable_checkpointing

    kernel = choose_kernel(base.sam, _enum_value(tc.attention), device, "trainer.attention")
    log.info("attention kernel %s in %d encoder blocks", kernel, set_attention(base.sam, kernel))
    if tc.checkpointing:
        log.info("activation checkpointing in %d encoder blocks", enable_checkpointing(base.sam))
    return kernel


def _trial_tags(cfg: DictConfig) -> dict[str, str]:
    """The Optuna trial a sweep job runs, so the sweeper finds its MLflow child by tag."""
    if cfg.optuna.trial_number is None:
        return {}
    return {"optuna.study_name": str(cfg.optuna.study_name),
            "optuna.trial_number": str(cfg.optuna.trial_number)}  # fmt: skip


def _trial_suffix(cfg: DictConfig) -> str:
    """Tell a sweep's runs apart by name: `#t<optuna trial>` or `#<job number>`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.optuna.trial_number is not None:
        return f"#t{cfg.optuna.trial_number}"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"#{HydraConfig.get().job.num}"
    return ""


def _enum_value(value) -> str:
    return str(value.value if hasattr(value, "value") else value)
