"""Typed schema of `python -m samexp.predict` (conf/predict.yaml extends it): a typo or a wrong type
stops the command before any model is built, with OmegaConf's message naming the key, and a value
out of its declared range (`Annotated`) with `refuse_outside_ranges`'s.

`PredictConfig` is the one object `predict()` receives, so this dataclass is its signature: each
default is written here once. The automatic-mask settings are `SamAutomaticMaskGenerator`'s own
signature (Meta's defaults, chosen for vit_h), plus `max_side`; predict and the demo share them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Annotated, Any, Literal

from hydra.core.config_store import ConfigStore
from segment_anything import SamAutomaticMaskGenerator

from samexp.config.checks import AT_LEAST_1, NON_NEGATIVE, UNIT, Range, because
from samexp.config.options import schema_of_signature
from samexp.config.schema import AttentionKernel, Device


class PredictMode(str, Enum):
    prompt = "prompt"  # the user's boxes / points, through the Predictor (SamPredictor's API)
    auto = "auto"  # everything in the image, through SamAutomaticMaskGenerator
    classes = "classes"  # every learned class, no prompt (a run trained with prompt=class_tokens)


class Backend(str, Enum):
    torch = "torch"  # the PyTorch model, rebuilt from run_id= / weights=
    # an ONNX export (python -m samexp.export format=onnx) through onnxruntime on the CPU:
    # prompt mode only, the graphs take prompts
    onnx = "onnx"


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
    alpha: Annotated[float, UNIT] = 0.5
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


# the ranges SamAutomaticMaskGenerator's annotations cannot carry (its signature is the schema)
GENERATOR_RANGES = {
    "points_per_side": Annotated[int, AT_LEAST_1],  # never None: no point_grids here
    # each prompt holds 3 full-size logit maps until filtered: on a 15-megapixel photo 64 take
    # ~11 GB; lower it to bound memory
    "points_per_batch": Annotated[
        int, because(AT_LEAST_1, "prompts decoded together; fewer: less memory")
    ],
    "pred_iou_thresh": Annotated[float, UNIT],
    "stability_score_thresh": Annotated[float, UNIT],
    "box_nms_thresh": Annotated[float, UNIT],
    "crop_nms_thresh": Annotated[float, UNIT],
    "crop_n_layers": Annotated[int, NON_NEGATIVE],
    "crop_n_points_downscale_factor": Annotated[int, AT_LEAST_1],
    # binary_mask: one PNG per mask; coco_rle: one JSON of COCO RLEs per image
    "output_mode": Literal["binary_mask", "coco_rle"],
}
GeneratorConfig = schema_of_signature(SamAutomaticMaskGenerator, ("model", "point_grids"),
                                      GENERATOR_RANGES, target=False)  # fmt: skip


@dataclass
class AutoConfig(GeneratorConfig):
    """SamAutomaticMaskGenerator's arguments, and the size it runs at."""

    # generate on a copy whose longest side is at most this (then masks are scaled back to the
    # photo): SAM sees 1024 px anyway, and every mask of a 4000 px photo costs 16x the pixels
    max_side: Annotated[int | None, because(Range(low=64), "pixels, or null")] = None

    def generator_arguments(self) -> dict[str, Any]:
        """The keyword arguments of SamAutomaticMaskGenerator (all but `max_side`)."""
        return {k: v for k, v in asdict(self).items() if k != "max_side"}


@dataclass
class PredictConfig:
    run_id: str | None = None  # an MLflow run that logged weights/adapter.safetensors
    weights: str | None = None  # or a local adapter.safetensors
    backend: Backend = Backend.torch
    onnx: str | None = None  # backend=onnx: the folder python -m samexp.export format=onnx wrote
    tracking_uri: str | None = None  # where runs go; default: the store under the paths root
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
