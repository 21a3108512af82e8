"""Typed schema of `python -m samexp.predict` (conf/predict.yaml extends it): a typo or a wrong type
stops the command before any model is built, with OmegaConf's message naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

from samexp.config.schema import AttentionKernel, Device


class PredictMode(str, Enum):
    prompt = "prompt"  # the user's boxes / points, through SamPredictor
    auto = "auto"  # everything in the image, through SamAutomaticMaskGenerator
    classes = "classes"  # every learned class, no prompt (a run trained with prompt=class_tokens)


class AutoOutput(str, Enum):
    binary_mask = "binary_mask"  # one PNG per mask
    coco_rle = "coco_rle"  # one JSON of COCO RLEs per image


@dataclass
class PromptConfig:
    """Pixel coordinates of the original image (as displayed, EXIF orientation applied)."""

    box: list[float] | None = None  # [x0, y0, x1, y1]
    # Nested lists are typed `list[Any]` because OmegaConf refuses ints in a list[list[float]]
    # when merging command-line overrides ([[10,20]]); parse_prompts checks they are numbers.
    boxes: list[Any] | None = None  # [[x0, y0, x1, y1], ...]: several boxes = several prompts
    points: list[Any] | None = None  # [[x, y], ...]; with boxes, added to every box
    labels: list[int] | None = None  # 1 foreground, 0 background; default: all 1


@dataclass
class OverlayConfig:
    alpha: float = 0.5
    # RGB palette, cycled per mask
    colors: list[list[int]] = field(
        default_factory=lambda: [
            [52, 152, 219],
            [231, 76, 60],
            [46, 204, 113],
            [241, 196, 15],
            [155, 89, 182],
            [26, 188, 156],
            [230, 126, 34],
            [236, 64, 122],
        ]
    )


@dataclass
class AutoConfig:
    """SamAutomaticMaskGenerator's knobs (its defaults, chosen by Meta for vit_h)."""

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    output_mode: AutoOutput = AutoOutput.binary_mask
    # prompts decoded together: each holds 3 full-size logit maps in memory until filtered, so
    # on a 15-megapixel photo 64 of them take ~11 GB; lower it to bound memory
    points_per_batch: int = 64
    # generate on a copy whose longest side is at most this (then masks are scaled back to the
    # photo): SAM sees 1024 px anyway, and every mask of a 4000 px photo costs 16x the pixels
    max_side: int | None = None


@dataclass
class PredictConfig:
    run_id: str | None = None  # an MLflow run that logged weights/adapter.safetensors
    weights: str | None = None  # or a local adapter.safetensors
    tracking_uri: str = "sqlite:///${samexp_home:}/mlruns/mlflow.db"  # where runs go (paths.py)
    checkpoint: str | None = None  # the official base checkpoint, if not in the cache
    image: str | None = None  # one image ...
    images: str | None = None  # ... or a folder of them
    # default: the command's own folder under the paths root, beside its log
    # ($SAMEXP_HOME or the checkout)/outputs/predict/<date>/<time>_<pid>-<hex>/
    out: str | None = None
    mode: PredictMode = PredictMode.prompt
    device: Device = Device.auto
    attention: AttentionKernel = AttentionKernel.auto  # the fastest exact kernel for the device
    multimask: bool = False  # SAM's three masks per prompt
    compare: bool = False  # also run the zero-shot base model and write a side-by-side
    merge: bool = True  # fold LoRA into the base weights: no extra latency at inference
    prompt: PromptConfig = field(default_factory=PromptConfig)
    # a JSON file of prompts per image (COCO-style bboxes, or {file: [[x0,y0,x1,y1], ...]}),
    # instead of prompt.*: samexp/predict/prompt_file.py
    prompts: str | None = None
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    auto: AutoConfig = field(default_factory=AutoConfig)


ConfigStore.instance().store(name="predict_schema", node=PredictConfig)
