"""The one pipeline: build -> zero-shot eval -> train -> eval -> log. Returns the metrics (for
sweepers) and the MLflow run id. `run` reads as the pipeline; the steps that build its pieces
from the config are the functions below it."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from samexp.adapters.base import Adapter, parameter_counts, trainable_parameters
from samexp.config import distributed
from samexp.config.devices import resolve_device
from samexp.config.distributed import World
from samexp.config.errors import Interrupted, SamexpError
from samexp.config.instantiate import build
from samexp.config.schema import validate
from samexp.data import loading
from samexp.data.splits import TEST_FILES, DatasetSplits
from samexp.evaluate.compare import compared, log_comparisons, per_image
from samexp.export.mlflow_model import ship_trained
from samexp.models.build import BaseModel
from samexp.models.cached_encoder import CachedEncoder
from samexp.models.checkpoints import in_cache
from samexp.models.seam import encoder_trains
from samexp.prompts.base import PromptStrategy
from samexp.sweeps.pruning import reporter_from_config, shared_verdict
from samexp.tracking.names import STUDY_NAME, TRIAL_NUMBER
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
from samexp.training.checkpoint import Checkpointing
from samexp.training.costs import Costs
from samexp.training.divergence import Divergence
from samexp.training.evaluation import EvalResult, evaluate
from samexp.training.loop import Setup, fit
from samexp.training.monitor import Monitor, Validation, check_monitor
from samexp.training.parts import Part, Parts
from samexp.training.precision import MixedPrecision, mixed_precision
from samexp.training.reporting import Heartbeat, LogEpochs, ReportToTrial
from samexp.training.state import TrainState, load_state
from samexp.training.stop import StopRequests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What one run returns: its metrics, numbers only (what a sweeper reads), and where it was logged."""

    metrics: dict[str, float]
    run_id: str | None  # the MLflow run; None with tracking.enabled=false


def run(cfg: DictConfig) -> RunResult:
    validate(cfg)  # the cheap checks first: a bad value fails before a model is built or downloaded
    tc, env = cfg.trainer, _Environment.start(cfg)
    resuming = env.run_to_resume(tc.resume)  # before a model is built: a wrong id is cheap
    m = _Model.build(cfg, env)
    data = _Data.build(cfg, m, env)
    setup, monitor = _setup(cfg, m, data, env)
    checkpoints = Checkpoints(env.out / "checkpoints", env.tracker)
    reporter = reporter_from_config(**cfg.optuna) if env.world.is_main else None
    stops, parts = _parts(tc, env, data, monitor, checkpoints, reporter)
    state = env.resumed_state(resuming, m.base, tc.epochs, parts)
    checkpoints.logged = state and state.where  # a resumed run starts with the one it goes on from
    with stops, env.tracker.start_run(data.run_name, params=flatten(env.resolved),
                                      tags={**provenance(env.overrides), **_trial_tags(cfg)},
                                      resume_run_id=resuming):  # fmt: skip
        if resuming is None:  # a resumed run has them from its first part
            _log_inputs(env, m, data)
        # evaluated again on resume (deterministic): the comparison images need its predictions
        baseline = data.evaluate(data.test, "zero-shot", keep=env.tracker.max_images)
        if resuming is None:
            env.tracker.log_metrics(baseline.metrics("baseline/test"))
        log.info("zero-shot: %s", baseline.metrics("baseline/test"))
        data.fill_train_cache(m, env)
        try:
            result = fit(setup, parts, state)
        except Interrupted as e:  # after the step in progress, its checkpoint written
            raise e.resumable(env.hint(checkpoints)) from None
        except Exception as e:  # torchrun: a peer killed outright breaks this rank's collective
            if not distributed.peer_lost(e, env.world):
                raise
            raise rank_lost(checkpoints, env.hint(checkpoints), env.world.is_main) from None
        if stops.received is not None:  # training is done: the last minutes keep it, go on
            log.warning("%s after training: finishing the final evaluation and saving",
                        stops.received.name)  # fmt: skip
        data.log_cache_figures(env)
        weights_epoch = _restore_best(tc, monitor, m.base, result.epochs)
        final = data.evaluate(data.test, "fine-tuned", keep=env.tracker.max_images)
        metrics = {**compared(baseline, final, "test"), "best/epoch": weights_epoch,
                   "train/epochs_run": result.epochs, "train/steps": result.steps,
                   "train/stopped_early": float(result.stopped_early),
                   **({f"best/{monitor.name}": monitor.best} if monitor else {})}  # fmt: skip
        env.tracker.log_metrics(metrics)
        log.info("final: %s", {k: round(v, 4) for k, v in metrics.items()})
        if m.base.caveat():
            log.info("%s", m.base.caveat())
        if env.world.is_main:  # the files are rank 0's to write
            _log_outputs(env, m, data, baseline, final, weights_epoch)
        if reporter is not None:  # a sweep trial resumed after its sweep tells its study itself
            env.tracker.set_tags(reporter.finish(metrics.get(cfg.objective)))
    return RunResult(metrics, distributed.broadcast(env.tracker.run_id, env.world))


# --- the pieces run() builds, in the order it builds them -----------------------------------
@dataclass
class _Environment:
    """The process's place in the job (rank, device, precision), its tracker and run folder."""

    world: World
    device: torch.device
    amp: MixedPrecision
    tracker: Tracker
    resolved: dict[str, Any]
    out: Path
    overrides: list[str]

    @classmethod
    def start(cls, cfg: DictConfig) -> _Environment:
        tc = cfg.trainer
        seed_everything(tc.seed)
        world = distributed.world_from_env()
        if not world.is_main:  # rank 0 tells the story; the others speak up only for warnings
            logging.getLogger("samexp").setLevel(logging.WARNING)
        device = distributed.start(world, resolve_device(tc.device))
        amp = mixed_precision(_enum_value(tc.precision), device)  # refused before anything is built
        # rank 0 alone talks to MLflow; the others learn the run id from it
        tracker = build(cfg.tracking, **({} if world.is_main else {"enabled": False}))
        out = Path(distributed.broadcast(str(_output_dir(cfg)), world))  # one folder for all ranks
        return cls(world, device, amp, tracker, OmegaConf.to_container(cfg, resolve=True), out,
                   _overrides())  # fmt: skip

    def run_to_resume(self, resume: str | None) -> str | None:
        if not self.world.is_main:
            return None
        resuming = run_to_resume(self.tracker, resume)
        if resuming is not None:
            check_same_config(self.tracker, resuming, self.resolved, self.out / "resumed-from")
        return resuming

    def resumed_state(self, resuming: str | None, base: BaseModel, epochs: int,
                      parts: list[Part]) -> TrainState | None:  # fmt: skip
        """The interrupted run's checkpoint, read by rank 0 and sent to every rank; it must
        hold the state of each of this run's `parts`."""
        state = None
        if resuming is not None:
            kept_file = fetch_checkpoint(self.tracker, resuming, self.out / "resumed-from")
            state = load_state(kept_file, trainable_parameters(base.sam), Parts(parts).kept)
            check_epochs(state, epochs, resuming)
        return distributed.broadcast(state, self.world)

    def hint(self, checkpoints: Checkpoints) -> str:
        return resume_hint(self.overrides, self.tracker.run_id, checkpoints.last,
                           self.world.per_node)  # fmt: skip


@dataclass
class _Model:
    """The model with its adapter and prompts, patched for speed and on its device."""

    base: BaseModel
    adapter: Adapter
    prompt: PromptStrategy
    eval_prompt: PromptStrategy
    kernel: str  # the attention kernel in use: cached embeddings are keyed by it

    @classmethod
    def build(cls, cfg: DictConfig, env: _Environment) -> _Model:
        adapter: Adapter = build(cfg.adapter, _convert_="all")
        prompt: PromptStrategy = build(cfg.prompt)
        eval_prompt: PromptStrategy = build(cfg.eval_prompt) if cfg.get("eval_prompt") else prompt
        if eval_prompt.promptless != prompt.promptless:
            raise SamexpError(
                "prompt and eval_prompt must both be promptless (class_tokens) or neither"
            )
        base: BaseModel = build(cfg.model, _convert_="all")
        adapter.apply(base.sam)
        kernel = _speedups(base, cfg.trainer, env.device)
        base.sam.to(env.device)
        return cls(base, adapter, prompt, eval_prompt, kernel)


@dataclass
class _Data:
    """The splits as the run uses them, their loaders, and how a split is evaluated."""

    splits: DatasetSplits
    summary: dict[str, Any]
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    eval_encoder: CachedEncoder | None
    train_encoder: CachedEncoder | None
    evaluate_with: dict[str, Any]
    run_name: str

    @classmethod
    def build(cls, cfg: DictConfig, m: _Model, env: _Environment) -> _Data:
        tc = cfg.trainer
        augment = build(cfg.augment, _convert_="all") if cfg.get("augment") else None
        splits: DatasetSplits = build(cfg.dataset, pipeline=m.base.pipeline, _convert_="object")
        loaded = splits.summary()  # before carving: the skip counts of the files as read
        splits = splits.carve_val(tc.val_fraction, _or_seed(tc.split_seed, tc))
        summary = {**loaded, **splits.summary()}  # ...and the sizes actually used
        splits = m.prompt.prepare(m.base.sam, splits)  # class prompts join the model's parameters
        m.eval_prompt.bind(m.base.sam)
        if splits.val is not None:  # its categories known: a monitor it cannot report stops here
            check_monitor(tc.monitor, getattr(splits.val, "class_names", None),
                          m.eval_prompt.promptless, f"the validation split of {splits.name}")  # fmt: skip
        if augment is not None:
            splits.train.transform = augment
            log.info("augmentation on the train split only: %s", cfg.augment)
        log.info("data %s: %s", splits.name, summary)
        train, val, test = loading.loaders(
            splits, batch_size=tc.batch_size, seed=tc.seed, device=env.device,
            workers=loading.num_workers(tc.num_workers, env.device), world=env.world,
            cache_bytes=loading.sample_cache_bytes(tc.sample_cache_gb),
        )  # fmt: skip
        numerics = f"attention={m.kernel},precision={env.amp.dtype}"
        eval_encoder = _embedding_cache(cfg, m.base, numerics)
        if eval_encoder is not None and augment is not None:
            log.info("embedding cache off for the train split: augmentation changes every "
                     "image, every epoch")  # fmt: skip
        evaluate_with = dict(sam=m.base.sam, prompt=m.eval_prompt, device=env.device,
                             seed=_or_seed(tc.eval_seed, tc), multimask_output=tc.multimask_output,
                             encoder=eval_encoder, autocast=env.amp.autocast, world=env.world)  # fmt: skip
        run_name = f"{m.adapter.label()}-{splits.name}-{m.base.arch}{_trial_suffix(cfg)}"
        return cls(splits, summary, train, val, test, eval_encoder,
                   eval_encoder if augment is None else None, evaluate_with, run_name)  # fmt: skip

    def evaluate(self, loader: DataLoader, desc: str, keep: int = 0) -> EvalResult:
        return evaluate(loader=loader, keep_predictions=keep, desc=desc, **self.evaluate_with)

    def fill_train_cache(self, m: _Model, env: _Environment) -> None:
        """Under torchrun each rank encodes its shard of the train split once, up front."""
        enc = self.train_encoder
        if env.world.distributed and enc is not None and enc.cache.root:
            enc.fill(m.base.sam, loading.sharded(self.train, env.world), env.device, env.world,
                     env.amp.autocast)  # fmt: skip

    def log_cache_figures(self, env: _Environment) -> None:
        if self.eval_encoder:  # the job's figures: every rank's lookups
            cache = self.eval_encoder.cache
            stats = cache.total(distributed.gather(cache.stats(), env.world))
            env.tracker.log_metrics({f"cache/{k}": v for k, v in stats.items()})


def _setup(cfg: DictConfig, m: _Model, data: _Data, env: _Environment) -> tuple[Setup, Monitor | None]:  # fmt: skip
    """The optimizer, its schedule and the monitor, and the loop's setup."""
    tc = cfg.trainer
    optimizer = build(cfg.optim, params=list(trainable_parameters(m.base.sam).values()))
    steps_per_epoch = math.ceil(len(data.train) / tc.grad_accum_steps)
    total_steps = min(tc.max_steps or math.inf, tc.epochs * steps_per_epoch)
    mode = _enum_value(tc.monitor_mode)
    schedule = build(cfg.scheduler, optimizer=optimizer, total_steps=int(total_steps), mode=mode)
    selecting = _model_selection(data.splits, tc, schedule.interval == "metric", cfg.objective)
    monitor = Monitor(f"val/{tc.monitor}", mode, tc.patience) if selecting else None
    counts = parameter_counts(m.base.sam)
    log.info("%s: %d of %d parameters train", data.run_name, counts["params/trainable"],
             counts["params/total"])  # fmt: skip
    setup = Setup(
        m.base.sam, data.train, m.prompt, build(cfg.loss), optimizer, env.device, tc.epochs,
        max_steps=tc.max_steps, seed=tc.seed, multimask_output=tc.multimask_output,
        grad_accum_steps=tc.grad_accum_steps, grad_clip=tc.grad_clip, schedule=schedule,
        precision=env.amp, encoder=data.train_encoder, world=env.world,
    )  # fmt: skip
    return setup, monitor


def _parts(tc: DictConfig, env: _Environment, data: _Data, monitor: Monitor | None,
           checkpoints: Checkpoints, reporter) -> tuple[StopRequests, list[Part]]:  # fmt: skip
    """The parts of this run's training, in the order the loop calls them."""

    def log_epoch(metrics: dict[str, float], epoch: int) -> None:
        env.tracker.log_metrics(metrics, epoch)

    checkpointing = Checkpointing(checkpoints if env.world.is_main else None, tc.checkpoint_every)
    # one stop decision for every rank: agreed every stop_check_every steps, not on each one
    stops = StopRequests(checkpointing, 1 if not env.world.distributed else tc.stop_check_every)
    parts: list[Part] = [Divergence(tc.max_nonfinite_steps, log_epoch)]
    if monitor is not None:
        parts.append(Validation(lambda epoch: data.evaluate(data.val, "eval").metrics("val"),
                                monitor, tc.eval_every))  # fmt: skip
    parts += [LogEpochs(log_epoch), Heartbeat(env.tracker.heartbeat), Costs(env.device, log_epoch)]
    report = shared_verdict(reporter, env.world)  # None outside an Optuna sweep
    if monitor is not None and report is not None:
        parts.append(ReportToTrial(report, monitor.name))
    return stops, [*parts, checkpointing, stops]


def _log_inputs(env: _Environment, m: _Model, data: _Data) -> None:
    """What a run is given, logged once at its start (a resumed run has them already)."""
    tracker = env.tracker
    tracker.log_text(OmegaConf.to_yaml(env.resolved), "config.yaml")
    tracker.log_json(data.summary, "data/summary.json")
    # the images scored: a held-out test split is rebuilt from these by any later run
    tracker.log_text("".join(f"{f}\n" for f in data.splits.files("test")), TEST_FILES)
    counts = parameter_counts(m.base.sam)
    tracker.log_metrics({**counts, **{f"data/{k}": v for k, v in data.summary.items()}})


def _log_outputs(env: _Environment, m: _Model, data: _Data, baseline: EvalResult,
                 final: EvalResult, weights_epoch: int) -> None:  # fmt: skip
    """What a run leaves: comparison images, per-image figures and the trained weights."""
    log_comparisons(env.tracker, data.splits.test, baseline, final)
    env.tracker.log_json(per_image(baseline, final), "metrics/per_image.json")
    weights = save_weights(env.out / "adapter.safetensors", m.base, m.adapter, env.tracker)
    log.info("adapter weights (epoch %d): %s", weights_epoch, weights)
    if env.tracker.log_model and env.tracker.run_id is not None:
        ship_trained(weights, env.tracker.run_id, env.tracker.tracking_uri, env.tracker.register)


def _restore_best(tc: DictConfig, monitor: Monitor | None, base: BaseModel, epochs_run: int) -> int:  # fmt: skip
    """The best validation epoch's weights back for the final evaluation (trainer.restore_best);
    returns the epoch whose weights are tested."""
    if not (tc.restore_best and monitor is not None and monitor.best_state):
        return epochs_run
    monitor.restore(base.sam)
    log.info("restored the best epoch (%d, %s=%.4f) for the final evaluation",
             monitor.best_epoch, monitor.name, monitor.best)  # fmt: skip
    return monitor.best_epoch


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
    return {STUDY_NAME: str(cfg.optuna.study_name), TRIAL_NUMBER: str(cfg.optuna.trial_number)}


def _trial_suffix(cfg: DictConfig) -> str:
    """Tell a sweep's runs apart by name: `#t<optuna trial>` or `#<job number>`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.optuna.trial_number is not None:
        return f"#t{cfg.optuna.trial_number}"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"#{HydraConfig.get().job.num}"
    return ""


def _or_seed(seed: int | None, tc: DictConfig) -> int:
    """trainer.split_seed / eval_seed, which follow trainer.seed unless set."""
    return tc.seed if seed is None else seed


def _enum_value(value) -> str:
    return str(value.value if hasattr(value, "value") else value)
