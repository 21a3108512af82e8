"""The root config and the settings the runner reads, registered in Hydra's ConfigStore.

Every choosable option (model, dataset, adapter, loss, prompt, scheduler, optim, augment, tracking,
cache) is defined by its own code instead: `@option` beside the class or function generates its
schema (samexp/config/options.py). Each yaml in conf/<group>/ extends its schema (`defaults:
[<name>_schema]`), so a typo or a wrong type stops the run at startup with OmegaConf's message
naming the key, and `validate` checks every declared range before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass
from enum import Enum
from typing import Annotated, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import samexp.config.paths  # noqa: F401  (registers ${samexp_home:} before any config is composed)
from samexp.config.checks import (
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    Pattern,
    Range,
    Seed,
    because,
    closest,
    declared,
    out_of_range,
    unknown_keys,
)
from samexp.config.errors import ConfigValueError
from samexp.config.options import groups, load_all, options

# the metrics `run()` returns, by name: <stage>/test/<metric>[/<category>], best/val/<monitor>,
# best/epoch and the train/ counts
OBJECTIVE = (r"(baseline|final|delta)/test/(iou|dice)(/.+)?|best/(epoch|val/(iou|dice)(/.+)?)"
             r"|train/(epochs_run|steps|stopped_early)")  # fmt: skip
OBJECTIVES = ("a metric the run returns: final/test/iou, final/test/dice, delta/test/<metric>, "
              "baseline/test/<metric>, <stage>/test/<metric>/<category>, best/val/<monitor>, "
              "best/epoch, train/steps")  # fmt: skip


# skipped non-finite steps in a row that end a run as diverged (trainer.max_nonfinite_steps)
MAX_NONFINITE_STEPS = 20


class Mode(str, Enum):
    max = "max"
    min = "min"


class AttentionKernel(str, Enum):
    """How the image encoder computes attention; `auto` picks the fastest exact one for the device."""

    auto = "auto"  # blocked on CPU, sdpa on CUDA
    stock = "stock"  # segment_anything's own Attention.forward
    sdpa = "sdpa"  # F.scaled_dot_product_attention with the rel-pos bias as a float mask
    blocked = "blocked"  # block-wise exact attention: the N×N scores never leave the cache


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"  # autocast to bfloat16 (CUDA; CPUs with AVX512-BF16/AMX)
    fp16 = "fp16"  # autocast to float16 with loss scaling (CUDA)


class Device(str, Enum):
    auto = "auto"  # CUDA, else Apple's GPU (MPS), else the CPU
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"  # Apple silicon


# --- the settings the runner reads (no constructor of their own) -----------------------------
BatchSize = Annotated[int, because(AT_LEAST_1, "images per batch")]
# the folder holding the datasets (rings/, ...), for a run and `python -m samexp.evaluate`
DATA_ROOT = "${oc.env:SAMEXP_DATA,${paths.root}/data}"


@dataclass
class TrainerConfig:
    epochs: Annotated[int, because(AT_LEAST_1, "passes over the train split")] = 10
    # stop after this many optimizer steps, whatever the epochs
    max_steps: Annotated[int | None, because(AT_LEAST_1, "or null for no limit")] = None
    batch_size: BatchSize = 2
    seed: Seed = 0  # ${seed} in conf/
    # what a run is measured on, apart from how it trains: the carved validation split (and
    # dataset.limit's subset) follows split_seed, the evaluation prompts eval_seed; null: seed.
    # A study of training seeds fixes both (hparams_search=adapter_study)
    split_seed: Annotated[int | None, because(NON_NEGATIVE, "a seed, or null for trainer.seed")] = None  # fmt: skip
    eval_seed: Annotated[int | None, because(NON_NEGATIVE, "a seed, or null for trainer.seed")] = None  # fmt: skip
    device: Device = Device.auto
    # DataLoader workers; default (null): 0 on CPU, min(8, cores // 2) on CUDA
    num_workers: Annotated[int | None, because(NON_NEGATIVE, "0 loads in the main process")] = None
    # decoded, resized samples of un-augmented splits kept in memory
    sample_cache_gb: Annotated[float, because(NON_NEGATIVE, "0 turns the cache off")] = 2.0
    eval_every: Annotated[
        int, because(AT_LEAST_1, "epochs between evaluations on the val split")
    ] = 1
    multimask_output: bool = False  # train on SAM's 3 masks, back-propagating the min-loss one
    # optimizer step every N batches (effective batch = N × batch_size)
    grad_accum_steps: Annotated[int, because(AT_LEAST_1, "batches per optimizer step")] = 1
    grad_clip: Annotated[float | None, because(POSITIVE, "max global grad norm, or null")] = None
    # carved (seeded) from train when the dataset has no val split; 0: no validation split, so
    # no model selection (fixed epochs, test evaluated once)
    val_fraction: Annotated[
        float, because(Range(0, 1, open_high=True), "share of train held out")
    ] = 0.2
    # eval metric for early stopping / best epoch / plateau schedule: iou or dice, or the
    # per-category iou/<category>
    monitor: Annotated[str, Pattern(r"(iou|dice)(/.+)?", "iou, dice, iou/<category> or dice/<category>")] = "iou"  # fmt: skip
    monitor_mode: Mode = Mode.max
    # stop after this many evaluations without improvement (needs a validation split)
    patience: Annotated[
        int | None, because(AT_LEAST_1, "evaluations without improvement, or null")
    ] = None
    restore_best: bool = True  # evaluate on test (and save) the best validation epoch's weights
    # a step whose loss or gradient is not finite is skipped; this many in a row (or a whole
    # epoch of them) stop the run as diverged
    max_nonfinite_steps: Annotated[
        int, because(AT_LEAST_1, "skipped non-finite steps in a row")
    ] = MAX_NONFINITE_STEPS
    # write a training checkpoint (weights, optimizer, every RNG) every N epochs, and always when
    # stopped by SIGINT/SIGTERM; 0: only then
    checkpoint_every: Annotated[
        int, because(NON_NEGATIVE, "epochs; 0 writes one only on a signal")
    ] = 1
    # continue an interrupted run in place: its MLflow run id, or `last` for the newest
    # interrupted run of this experiment; only trainer.epochs may differ from its config
    resume: str | None = None
    # under torchrun, the ranks agree on a stop request (SIGTERM, Ctrl-C) every N optimizer steps
    # and at each epoch's end: one all-reduce every N steps instead of one per step
    stop_check_every: Annotated[
        int, because(AT_LEAST_1, "optimizer steps between the ranks' stop checks")
    ] = 10
    attention: AttentionKernel = AttentionKernel.auto
    precision: Precision = Precision.fp32
    checkpointing: bool = (
        False  # recompute encoder blocks in backward: less memory, a bit more time
    )


@dataclass
class PathsConfig:
    """Where a run writes (conf/paths/default.yaml): everything under one root."""

    root: str = "${samexp_home:}"
    mlruns: str = "${paths.root}/mlruns"
    outputs: str = "${paths.root}/outputs"
    multirun: str = "${paths.root}/multirun"


@dataclass
class TrialConfig:
    """Set by the samexp_optuna sweeper on each job, so the epoch loop can report to its trial and be
    pruned through the shared storage. All None outside an Optuna sweep."""

    storage: str | None = None
    study_name: str | None = None
    trial_number: int | None = None
    pruner: Any = None  # Hydra-instantiable Optuna pruner; None = never prune


@dataclass
class Config:
    # the option groups: each node's schema is generated from its code (samexp.config.options) and chosen
    # in conf/config.yaml's defaults list
    model: Any = MISSING
    dataset: Any = MISSING
    adapter: Any = MISSING
    loss: Any = MISSING
    prompt: Any = MISSING
    eval_prompt: Any = (
        None  # default: `prompt` without training randomness; `+prompt@eval_prompt=points`
    )
    scheduler: Any = MISSING
    augment: Any = None  # `augment=default` to turn it on
    optim: Any = MISSING
    tracking: Any = MISSING
    cache: Any = MISSING  # the embedding cache (conf/cache/embeddings.yaml)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optuna: TrialConfig = field(default_factory=TrialConfig)
    # the run's one seed: trainer.seed and model.seed are `${seed}` in conf/, so `seed=1` moves
    # the RNGs, a random model's init and the carved validation split together (each can be set
    # alone); a held-out test split follows each file's path, never a seed
    seed: Seed = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    # folder holding the datasets (rings/, ...)
    data_root: str = DATA_ROOT
    output_dir: str | None = None  # default: Hydra's run folder (outputs/<date>/<time>)
    # the metric `python -m samexp` returns (sweepers optimise it)
    objective: Annotated[str, Pattern(OBJECTIVE, OBJECTIVES)] = "final/test/iou"


# the groups whose schema is one of the dataclasses above; every other group is made of options
SETTINGS = {"trainer": TrainerConfig, "paths": PathsConfig, "optuna": TrialConfig}


def register_configs() -> None:
    load_all()  # each option stores its own schema (<group>/<name>_schema) as its module loads
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in SETTINGS.items():
        cs.store(group=group, name=f"{group}_schema", node=schema)


register_configs()


def owner_of(schema: type, where: str = "") -> str:
    """What a schema is in the user's words: `adapter=lora`, `trainer`, else the key `where` it
    sits at, or `the config` at the top."""
    for group in groups():
        for name, entry in options(group).items():
            if entry.schema is schema:
                return f"{group}={name}"
    return where or "the config"


def no_such_key(path: str, schema: type, key: str | None = None) -> str:
    """`adapter.rnak: adapter=lora has no key rnak; did you mean rank?` (`key`: the unknown part
    of `path`, its last one by default)."""
    key = key or path.rsplit(".", 1)[-1]
    where = path[: path.index(key)].rstrip(".") if key in path else ""
    return f"{path}: {owner_of(schema, where)} has no key {key}; {closest(key, declared(schema))}"


def undeclared(cfg: DictConfig, prefix: str = "") -> list[str]:
    """One line per key no schema declares, at any depth: `+group.key=value` adds a key Hydra
    cannot check, and the constructor would fail on it with a TypeError."""
    schema, problems = OmegaConf.get_type(cfg), []
    for key in cfg.keys():
        path, node = f"{prefix}{key}", cfg._get_node(key)
        if path == "hydra":
            continue
        if is_dataclass(schema) and str(key) in unknown_keys(schema, [str(key)]):
            problems.append(no_such_key(path, schema))
        elif isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            problems += undeclared(node, f"{path}.")
    return problems


def outside_ranges(node: Any, prefix: str = "") -> list[str]:
    """`key=value: must be ...` for every value, at any depth, outside the range its schema
    declares: of a composed config (each node typed by its schema: an option's, trainer's, a
    command's) or of a settings object (`PredictConfig(...)` from Python)."""
    if isinstance(node, DictConfig):
        if node._is_missing() or node._is_none():
            return []
        schema, values = OmegaConf.get_type(node), node
        children = {k: node._get_node(k) for k in node.keys() if f"{prefix}{k}" != "hydra"}
    elif is_dataclass(node) and not isinstance(node, type):
        schema, values = type(node), vars(node)
        children = vars(node)
    else:
        return []
    problems = []
    if is_dataclass(schema):
        problems += [f"{prefix}{name}={value!r}: {problem}"
                     for name, value, problem in out_of_range(schema, values)]  # fmt: skip
    for key, child in children.items():
        problems += outside_ranges(child, f"{prefix}{key}.")
    return problems


def refuse_outside_ranges(node: Any, prefix: str = "") -> None:
    """`outside_ranges`, all in one line: what every command does before it builds anything."""
    problems = outside_ranges(node, prefix)
    if problems:
        raise ConfigValueError("; ".join(problems))


def validate(cfg: DictConfig) -> None:
    """Every declared range and pattern, checked before anything is built: a value that makes no
    sense (epochs=-1, val_fraction=1.5, monitor=loss) stops the run naming the key and what it
    accepts, rather than a traceback an epoch later or a silently wrong result."""
    problems = outside_ranges(cfg)
    problems += undeclared(cfg)  # added by `+group.key=value`
    best = f"best/val/{cfg.trainer.monitor}"
    if cfg.objective.startswith("best/val/") and cfg.objective != best:
        problems.append(f"objective={cfg.objective!r}: the run records {best} (trainer.monitor="
                        f"{cfg.trainer.monitor}); set trainer.monitor to match or objective={best}")  # fmt: skip
    if problems:
        raise ConfigValueError("; ".join(problems))
