"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each yaml option in conf/<group>/ extends one of these (`defaults: [<schema>]`), so a typo or a
wrong type stops the run at startup with OmegaConf's message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import samexp.paths  # noqa: F401  (registers ${samexp_home:} before any config is composed)
from samexp.checks import (
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    Pattern,
    Range,
    checked,
    out_of_range,
)
from samexp.errors import ConfigValueError

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
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# --- model -----------------------------------------------------------------------------------
@dataclass
class OfficialModelConfig:
    _target_: str = "samexp.models.build.build_official"
    arch: str = "vit_b"
    checkpoint: str | None = None  # a local .pth: used instead of the cache / download
    pretrained: bool = True  # False: random init, no download (benchmarks)
    cache_dir: str | None = None  # default: $SAMEXP_CACHE or ~/.cache/samexp
    mirror: str | None = (
        None  # folder or URL holding the official files; default $SAMEXP_CHECKPOINT_MIRROR
    )
    download: bool = True
    seed: int = 0  # of a random init (pretrained=false); ${seed} in conf/model/
    encoder_size: int | None = (
        None  # run the image encoder at this input size (e.g. 512: ~4x less encoder work); default native
    )


@dataclass
class TinyModelConfig:
    _target_: str = "samexp.models.build.build_tiny"
    arch: str = "tiny"  # fixed: lets configs name the model uniformly (${model.arch})
    seed: int = 0  # ${seed} in conf/model/tiny.yaml
    img_size: int = 256
    patch_size: int = 16
    embed_dim: int = 32
    depth: int = 2
    num_heads: int = 2
    window_size: int = 4
    global_attn_indexes: list[int] = field(default_factory=lambda: [1])
    prompt_embed_dim: int = 32
    decoder_depth: int = 2
    decoder_mlp_dim: int = 64
    decoder_heads: int = 2
    encoder_size: int | None = (
        None  # run the image encoder at this input size (e.g. 512: ~4x less encoder work); default native
    )


# --- dataset ---------------------------------------------------------------------------------
@dataclass
class FolderDatasetConfig:
    _target_: str = "samexp.data.folder.folder_splits"
    name: str = MISSING
    root: str = MISSING
    train_split: str = "train"
    test_split: str = "test"
    val_split: str | None = None
    mask_threshold: int = checked(127, Range(0, 254), "a mask pixel counts above it")
    images_dir: str = "images"
    masks_dir: str = "masks"


@dataclass
class CocoDatasetConfig:
    """COCO instance segmentation. Two layouts, detected from the files:
    single: <root>/<images_dir>/ + <root>/<annotations>, `val_size` of the images held out (seeded);
    pre-split: <root>/<train_split>/ and <root>/<val_split>/, each with images + annotations.
    COCO's held-out `val` part is what samexp evaluates on (`test/*` metrics); the early-stopping
    validation split is carved from train by `trainer.val_fraction`."""

    _target_: str = "samexp.data.coco.coco_splits"
    name: str = MISSING
    root: str = MISSING
    images_dir: str = "images"
    annotations: str = "annotations.json"
    train_split: str = "train"
    val_split: str = "val"
    val_size: float = checked(0.2, Range(0, 1, open_low=True, open_high=True), "share held out")
    seed: int = 0  # of the held-out draw; ${seed} in conf/dataset/coco.yaml
    categories: list[str] | None = None  # keep only these category names (default: all)
    # instances smaller than this many pixels are skipped (and counted)
    min_area: float = checked(0.0, NON_NEGATIVE, "pixels")


@dataclass
class LabelMapDatasetConfig:
    """Semantic label maps: <root>/<split>/<images_dir>/ + <root>/<split>/<labels_dir>/ PNGs whose
    pixel value is a class id, and <root>/<classes_file> with `id name` per line. Each class
    present in an image becomes one target instance; metrics are also reported per class."""

    _target_: str = "samexp.data.labelmap.labelmap_splits"
    name: str = MISSING
    root: str = MISSING
    train_split: str = "train"
    test_split: str = "test"
    val_split: str | None = None
    images_dir: str = "images"
    labels_dir: str = "labels"
    classes_file: str = "classes.txt"
    ignore_index: int | None = 255  # pixels with this value belong to no target
    background_ids: list[int] = field(default_factory=lambda: [0])  # classes that are never targets
    # class regions smaller than this many pixels are skipped (and counted)
    min_area: int = checked(0, NON_NEGATIVE, "pixels")


# --- adapter ---------------------------------------------------------------------------------
@dataclass
class LoraAdapterConfig:
    _target_: str = "samexp.adapters.lora.LoraAdapter"
    rank: int = checked(8, AT_LEAST_1)
    alpha: float = checked(8.0, POSITIVE)
    dropout: float = checked(0.0, Range(0, 1, open_high=True))
    # regex matched against full module names (peft's check_target_module_exists)
    target_modules: str = r"image_encoder\.blocks\.\d+\.attn\.qkv"
    # on SAM's fused qkv Linear, which of q/k/v get a LoRA delta (the ring study: q and v)
    qkv_parts: list[str] = field(default_factory=lambda: ["q", "v"])


@dataclass
class DecoderAdapterConfig:
    _target_: str = "samexp.adapters.decoder.DecoderAdapter"
    train_prompt_encoder: bool = False


@dataclass
class FullAdapterConfig:
    _target_: str = "samexp.adapters.full.FullAdapter"


# --- loss / prompt ---------------------------------------------------------------------------
@dataclass
class LossConfig:
    _target_: str = "samexp.losses.SamLoss"
    mask_loss: Any = MISSING  # a MONAI loss, built by its own _target_
    # weight of the MSE between SAM's predicted IoU and the true IoU
    iou_head_weight: float = checked(0.0, NON_NEGATIVE)


@dataclass
class BoxPromptConfig:
    _target_: str = "samexp.prompts.box.BoxPrompt"
    jitter: float = 0.1  # training only: each side moves up to this fraction of the box size
    max_jitter_px: float = 20.0  # ... and never more than this many input-frame pixels


@dataclass
class PointsPromptConfig:
    _target_: str = "samexp.prompts.points.PointsPrompt"
    positive: int = 1  # points sampled inside the target
    negative: int = 0  # points sampled outside it (within the image)
    center: bool = False  # first positive point = deepest point of the distance transform
    grid_points_per_side: int | None = None  # snap points to the automatic mask generator's grid


@dataclass
class BoxPointsPromptConfig:
    _target_: str = "samexp.prompts.box_points.BoxPointsPrompt"
    jitter: float = 0.1
    max_jitter_px: float = 20.0
    positive: int = 1
    negative: int = 0
    center: bool = True


@dataclass
class MaskPromptConfig:
    """Two decoder passes: `initial` prompts, then the same prompts plus the first pass's logits."""

    _target_: str = "samexp.prompts.mask.MaskPrompt"
    initial: Any = field(default_factory=lambda: {"_target_": "samexp.prompts.box.BoxPrompt"})


@dataclass
class IterativePromptConfig:
    """SAM-paper / micro-sam training: start from a box or one point, then `iterations` times add a
    corrective point from the error region (positive in misses, negative in false alarms),
    feeding back the previous logits as mask prompt."""

    _target_: str = "samexp.prompts.iterative.IterativePrompt"
    start: str = "box"  # box | point
    iterations: int = 7
    mask_feedback: bool = True
    jitter: float = 0.1
    max_jitter_px: float = 20.0


# --- lr schedules / augmentation -------------------------------------------------------------
@dataclass
class ConstantScheduleConfig:
    _target_: str = "samexp.schedulers.constant"


@dataclass
class WarmupCosineScheduleConfig:
    _target_: str = "samexp.schedulers.warmup_cosine"
    # fraction of all steps (< 1) or a number of steps (>= 1)
    warmup: float = checked(0.05, NON_NEGATIVE)
    min_lr_ratio: float = checked(0.0, Range(0, 1))


@dataclass
class StepScheduleConfig:
    _target_: str = "samexp.schedulers.step_decay"
    step_size: int = checked(10, AT_LEAST_1, "epochs")
    gamma: float = checked(0.1, POSITIVE)


@dataclass
class PlateauScheduleConfig:
    _target_: str = "samexp.schedulers.plateau"
    factor: float = checked(0.5, Range(0, 1, open_low=True, open_high=True))
    # evaluations without improvement of trainer.monitor
    patience: int = checked(2, NON_NEGATIVE)
    min_lr: float = checked(0.0, NON_NEGATIVE)


@dataclass
class AugmentConfig:
    """Training-only augmentation (torchvision.transforms.v2, image and masks together; prompts are
    derived from the augmented masks, so they follow)."""

    _target_: str = "samexp.data.augment.Augment"
    hflip: float = 0.5
    vflip: float = 0.0
    crop: float = 0.5  # probability of a random scale/crop
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])  # area fraction kept
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0


# --- optimisation / training / tracking ------------------------------------------------------
@dataclass
class OptimConfig:
    _target_: str = "torch.optim.AdamW"
    lr: float = checked(1e-4, POSITIVE, "learning rate")
    weight_decay: float = checked(1e-2, NON_NEGATIVE)
    fused: bool = True  # one kernel per step, not one per tensor group: ~40% faster AdamW on CPU


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
    max_nonfinite_steps: int = checked(20, AT_LEAST_1, "skipped non-finite steps in a row")
    attention: AttentionKernel = AttentionKernel.auto
    precision: Precision = Precision.fp32
    checkpointing: bool = (
        False  # recompute encoder blocks in backward: less memory, a bit more time
    )


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str = "sqlite:///${paths.mlruns}/mlflow.db"  # or http://server:5000 for a team
    artifact_root: str = "${paths.mlruns}/artifacts"  # used when the experiment is created
    experiment: str = "samexp"
    run_name: str | None = None  # default: <adapter>-<dataset>-<model>, e.g. lora-r8-rings-vit_b
    max_images: int = checked(16, NON_NEGATIVE, "comparison images logged per run")
    log_weights: bool = True
    parent_run_id: str | None = (
        None  # nest under this run (sweeps set $SAMEXP_PARENT_RUN_ID instead)
    )


@dataclass
class PathsConfig:
    """Where a run writes (conf/paths/default.yaml): everything under one root."""

    root: str = "${samexp_home:}"
    mlruns: str = "${paths.root}/mlruns"
    outputs: str = "${paths.root}/outputs"
    multirun: str = "${paths.root}/multirun"


@dataclass
class EmbeddingCacheConfig:
    """Frozen-encoder runs (adapter=decoder, decoder-only LoRA) reuse image embeddings across epochs,
    runs and sweep trials. Off automatically when the encoder trains or augmentation is on."""

    enabled: bool = True
    dir: str | None = (
        None  # default: <$SAMEXP_CACHE or ~/.cache/samexp>/embeddings; null in memory only
    )
    max_disk_gb: float = checked(10.0, NON_NEGATIVE)
    memory_items: int = checked(256, NON_NEGATIVE)


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
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    optuna: TrialConfig = field(default_factory=TrialConfig)
    cache: EmbeddingCacheConfig = field(default_factory=EmbeddingCacheConfig)
    # the run's one seed: trainer.seed, model.seed and dataset.seed are `${seed}` in conf/, so
    # `seed=1` moves the RNGs, a random model's init and the splits together (each can be set alone)
    seed: int = checked(0, NON_NEGATIVE, "numpy takes no negative seed")
    paths: PathsConfig = field(default_factory=PathsConfig)
    # folder holding the datasets (rings/, ...)
    data_root: str = "${oc.env:SAMEXP_DATA,${paths.root}/data}"
    output_dir: str | None = None  # default: Hydra's run folder (outputs/<date>/<time>)
    # the metric `python -m samexp` returns (sweepers optimise it)
    objective: str = checked("final/test/iou", Pattern(OBJECTIVE, OBJECTIVES))


SCHEMAS = {
    "model": {"official_schema": OfficialModelConfig, "tiny_schema": TinyModelConfig},
    "dataset": {
        "folder_schema": FolderDatasetConfig,
        "coco_schema": CocoDatasetConfig,
        "labelmap_schema": LabelMapDatasetConfig,
    },
    "adapter": {
        "lora_schema": LoraAdapterConfig,
        "decoder_schema": DecoderAdapterConfig,
        "full_schema": FullAdapterConfig,
    },
    "loss": {"loss_schema": LossConfig},
    "prompt": {
        "box_schema": BoxPromptConfig,
        "points_schema": PointsPromptConfig,
        "box_points_schema": BoxPointsPromptConfig,
        "mask_schema": MaskPromptConfig,
        "iterative_schema": IterativePromptConfig,
    },
    "scheduler": {
        "constant_schema": ConstantScheduleConfig,
        "cosine_schema": WarmupCosineScheduleConfig,
        "step_schema": StepScheduleConfig,
        "plateau_schema": PlateauScheduleConfig,
    },
    "augment": {"augment_schema": AugmentConfig},
    "optim": {"optim_schema": OptimConfig},
    "trainer": {"trainer_schema": TrainerConfig},
    "tracking": {"tracking_schema": TrackingConfig},
    "paths": {"paths_schema": PathsConfig},
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=group, name=name, node=node)


register_configs()


# the groups whose schema is fixed, and the option groups whose schema is found by `_target_`
FIXED = {"trainer": TrainerConfig, "optim": OptimConfig, "tracking": TrackingConfig,
         "cache": EmbeddingCacheConfig}  # fmt: skip


def schema_of(group: str, node: Any) -> type | None:
    """The dataclass a composed group node was built from (None for a node no schema describes)."""
    if group in FIXED:
        return FIXED[group]
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    for schema in SCHEMAS.get(group, {}).values():
        if any(f.name == "_target_" and f.default == target for f in fields(schema)):
            return schema
    return None


def validate(cfg: DictConfig) -> None:
    """Every declared range and pattern, checked before anything is built: a value that makes no
    sense (epochs=-1, val_fraction=1.5, monitor=loss) stops the run naming the key and what it
    accepts, rather than a traceback an epoch later or a silently wrong result."""
    problems = []
    for group in dict.fromkeys((*FIXED, *SCHEMAS)):
        node = cfg.get(group)
        schema = schema_of(group, node)
        if schema is None or node is None:
            continue
        for name, value, problem in out_of_range(schema, node):
            problems.append(f"{group}.{name}={value!r}: {problem}")
    for name, value, problem in out_of_range(Config, cfg):
        problems.append(f"{name}={value!r}: {problem}")
    best = f"best/val/{cfg.trainer.monitor}"
    if cfg.objective.startswith("best/val/") and cfg.objective != best:
        problems.append(f"objective={cfg.objective!r}: the run records {best} (trainer.monitor="
                        f"{cfg.trainer.monitor}); set trainer.monitor to match or objective={best}")  # fmt: skip
    if problems:
        raise ConfigValueError("; ".join(problems))
