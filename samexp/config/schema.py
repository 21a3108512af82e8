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
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import samexp.config.paths  # noqa: F401  (registers ${samexp_home:} before any config is composed)
from samexp.config.checks import (
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    Pattern,
    Range,
    checked,
    closest,
    declared,
    out_of_range,
    unknown_keys,
)
from samexp.config.errors import ConfigValueError
from samexp.config.options import by_target, groups, load_all, options
from samexp.training.divergence import MAX_NONFINITE_STEPS

# the metrics `run()` returns, by name: <stage>/test/<metric>[/<category>], best/val/<monitor>,
# best/epoch and the train/ counts
OBJECTIVE = (r"(baseline|final|delta)/test/(iou|dice)(/.+)?|best/(epoch|val/(iou|dice)(/.+)?)"
             r"|train/(epochs_run|steps|stopped_early)")  # fmt: skip
OBJECTIVES = ("a metric the run returns: final/test/iou, final/test/dice, delta/test/<metric>, "
              "baseline/test/<metric>, <stage>/test/<metric>/<category>, best/val/<monitor>, "
              "best/epoch, train/steps")  # fmt: skip


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
@dataclass
class TrainerConfig:
    epochs: int = checked(10, AT_LEAST_1, "passes over the train split")
    # stop after this many optimizer steps, whatever the epochs
    max_steps: int | None = checked(None, AT_LEAST_1, "or null for no limit")
    batch_size: int = checked(2, AT_LEAST_1, "images per batch")
    seed: int = checked(0, NON_NEGATIVE, "numpy takes no negative seed")  # ${seed} in conf/
    device: Device = Device.auto
    # DataLoader workers; default (null): 0 on CPU, min(8, cores // 2) on CUDA
    num_workers: int | None = checked(None, NON_NEGATIVE, "0 loads in the main process")
    # decoded, resized samples of un-augmented splits kept in memory
    sample_cache_gb: float = checked(2.0, NON_NEGATIVE, "0 turns the cache off")
    eval_every: int = checked(1, AT_LEAST_1, "epochs between evaluations on the val split")
    multimask_output: bool = False  # train on SAM's 3 masks, back-propagating the min-loss one
    # optimizer step every N batches (effective batch = N × batch_size)
    grad_accum_steps: int = checked(1, AT_LEAST_1, "batches per optimizer step")
    grad_clip: float | None = checked(None, POSITIVE, "max global grad norm, or null")
    # carved (seeded) from train when the dataset has no val split; 0: no validation split, so
    # no model selection (fixed epochs, test evaluated once)
    val_fraction: float = checked(0.2, Range(0, 1, open_high=True), "share of train held out")
    # eval metric for early stopping / best epoch / plateau schedule: iou or dice, or the
    # per-category iou/<category>
    monitor: str = checked("iou", Pattern(r"(iou|dice)(/.+)?", "iou, dice, iou/<category> or dice/<category>"))  # fmt: skip
    monitor_mode: Mode = Mode.max
    # stop after this many evaluations without improvement (needs a validation split)
    patience: int | None = checked(None, AT_LEAST_1, "evaluations without improvement, or null")
    restore_best: bool = True  # evaluate on test (and save) the best validation epoch's weights
    # a step whose loss or gradient is not finite is skipped; this many in a row (or a whole
    # epoch of them) stop the run as diverged
    max_nonfinite_steps: int = checked(
        MAX_NONFINITE_STEPS, AT_LEAST_1, "skipped non-finite steps in a row"
    )
    # write a training checkpoint (weights, optimizer, every RNG) every N epochs, and always when
    # stopped by SIGINT/SIGTERM; 0: only then
    checkpoint_every: int = checked(1, NON_NEGATIVE, "epochs; 0 writes one only on a signal")
    # continue an interrupted run in place: its MLflow run id, or `last` for the newest
    # interrupted run of this experiment; only trainer.epochs may differ from its config
    resume: str | None = None
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
    seed: int = checked(0, NON_NEGATIVE, "numpy takes no negative seed")
    paths: PathsConfig = field(default_factory=PathsConfig)
    # folder holding the datasets (rings/, ...)
    data_root: str = "${oc.env:SAMEXP_DATA,${paths.root}/data}"
    output_dir: str | None = None  # default: Hydra's run folder (outputs/<date>/<time>)
    # the metric `python -m samexp` returns (sweepers optimise it)
    objective: str = checked("final/test/iou", Pattern(OBJECTIVE, OBJECTIVES))


# the groups whose schema is one of the dataclasses above; every other group is made of options
SETTINGS = {"trainer": TrainerConfig, "paths": PathsConfig, "optuna": TrialConfig}


def register_configs() -> None:
    load_all()  # each option stores its own schema (<group>/<name>_schema) as its module loads
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in SETTINGS.items():
        cs.store(group=group, name=f"{group}_schema", node=schema)


register_configs()


def schema_of(group: str, node: Any) -> type | None:
    """The dataclass a composed group node was built from (None for a node no schema describes)."""
    if group in SETTINGS:
        return SETTINGS[group]
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    entry = by_target(group, target)
    return entry.schema if entry is not None else None


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


def validate(cfg: DictConfig) -> None:
    """Every declared range and pattern, checked before anything is built: a value that makes no
    sense (epochs=-1, val_fraction=1.5, monitor=loss) stops the run naming the key and what it
    accepts, rather than a traceback an epoch later or a silently wrong result."""
    problems = []
    for group in dict.fromkeys((*SETTINGS, *groups(), "eval_prompt")):
        node = cfg.get(group)
        schema = schema_of("prompt" if group == "eval_prompt" else group, node)
        if schema is None or node is None:
            continue
        for name, value, problem in out_of_range(schema, node):
            problems.append(f"{group}.{name}={value!r}: {problem}")
    for name, value, problem in out_of_range(Config, cfg):
        problems.append(f"{name}={value!r}: {problem}")
    problems += undeclared(cfg)  # added by `+group.key=value`
    best = f"best/val/{cfg.trainer.monitor}"
    if cfg.objective.startswith("best/val/") and cfg.objective != best:
        problems.append(f"objective={cfg.objective!r}: the run records {best} (trainer.monitor="
                        f"{cfg.trainer.monitor}); set trainer.monitor to match or objective={best}")  # fmt: skip
    if problems:
        raise ConfigValueError("; ".join(problems))
