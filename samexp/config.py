"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each yaml option in conf/<group>/ extends one of these (`defaults: [<schema>]`), so a typo or a
wrong type stops the run at startup with OmegaConf's message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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
    seed: int = 0


@dataclass
class TinyModelConfig:
    _target_: str = "samexp.models.build.build_tiny"
    seed: int = 0
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


# --- dataset ---------------------------------------------------------------------------------
@dataclass
class FolderDatasetConfig:
    _target_: str = "samexp.data.folder.folder_splits"
    name: str = MISSING
    root: str = MISSING
    train_split: str = "train"
    test_split: str = "test"
    val_split: str | None = None
    mask_threshold: int = 127
    images_dir: str = "images"
    masks_dir: str = "masks"


# --- adapter ---------------------------------------------------------------------------------
@dataclass
class LoraAdapterConfig:
    _target_: str = "samexp.adapters.lora.LoraAdapter"
    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
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
    iou_head_weight: float = 0.0  # weight of the MSE between SAM's predicted IoU and the true IoU


@dataclass
class BoxPromptConfig:
    _target_: str = "samexp.prompts.box.BoxPrompt"
    jitter: float = 0.1  # training only: each side moves up to this fraction of the box size
    max_jitter_px: float = 20.0  # ... and never more than this many input-frame pixels


# --- optimisation / training / tracking ------------------------------------------------------
@dataclass
class OptimConfig:
    _target_: str = "torch.optim.AdamW"
    lr: float = 1e-4
    weight_decay: float = 1e-2


@dataclass
class TrainerConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps, whatever the epochs
    batch_size: int = 2
    seed: int = 0
    device: Device = Device.auto
    num_workers: int = 0
    eval_every: int = 1  # epochs between evaluations on the eval split
    multimask_output: bool = False


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"  # or http://server:5000 for a team
    artifact_root: str = "mlruns/artifacts"  # used when the experiment is created
    experiment: str = "samexp"
    run_name: str | None = None  # default: <adapter>-<dataset>-<model>, e.g. lora-r8-rings-vit_b
    max_images: int = 16  # comparison images logged per run
    log_weights: bool = True


@dataclass
class Config:
    model: Any = MISSING
    dataset: Any = MISSING
    adapter: Any = MISSING
    loss: Any = MISSING
    prompt: Any = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    data_root: str = "${oc.env:SAMEXP_DATA,data}"  # folder holding the datasets (rings/, ...)
    output_dir: str | None = None  # default: Hydra's run folder (outputs/<date>/<time>)
    objective: str = (
        "final/test/iou"  # the metric `python -m samexp` returns (sweepers optimise it)
    )


SCHEMAS = {
    "model": {"official_schema": OfficialModelConfig, "tiny_schema": TinyModelConfig},
    "dataset": {"folder_schema": FolderDatasetConfig},
    "adapter": {
        "lora_schema": LoraAdapterConfig,
        "decoder_schema": DecoderAdapterConfig,
        "full_schema": FullAdapterConfig,
    },
    "loss": {"loss_schema": LossConfig},
    "prompt": {"box_schema": BoxPromptConfig},
    "optim": {"optim_schema": OptimConfig},
    "trainer": {"trainer_schema": TrainerConfig},
    "tracking": {"tracking_schema": TrackingConfig},
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=group, name=name, node=node)


register_configs()
