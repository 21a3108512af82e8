"""The session's tiny LoRA training run on the rings data (tests/conftest.py `tiny_lora_run`), as the
prediction tests read it: its MLflow run id, tracking URI and local weights; the rings test images
are the inputs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samexp.config.schema import Device
from samexp.data.base import read_image_rgb
from samexp.predict import PredictConfig, predict
from samexp.predict.config import AutoConfig, OverlayConfig, PromptConfig
from samexp.tracking.finetuned import load_finetuned
from tests.conftest import TinyRun

# inside both test images (1024×1024 and 740×740), around the rings
BOX = [60.0, 300.0, 700.0, 650.0]


@dataclass
class Trained:
    run_id: str
    tracking_uri: str
    weights: Path
    images: list[Path] = field(default_factory=list)

    def config(self, out: Path, source: str = "run", **overrides: Any) -> PredictConfig:
        """A prediction config into `out` from the run (`source="run"`) or the weights file."""
        where = {"run_id": self.run_id} if source == "run" else {"weights": str(self.weights)}
        cfg = PredictConfig(
            **where, tracking_uri=self.tracking_uri, out=str(out), device=Device.cpu
        )
        nested = {"prompt": PromptConfig, "overlay": OverlayConfig, "auto": AutoConfig}
        for key, kind in nested.items():
            if isinstance(overrides.get(key), dict):
                overrides[key] = kind(**overrides[key])
        return replace(cfg, **overrides)

    def predict(self, out: Path, source: str = "run", **overrides: Any) -> dict:
        return predict(self.config(out, source, **overrides))


@pytest.fixture(scope="package")
def trained(rings_root: Path, tiny_lora_run: TinyRun) -> Trained:
    images = sorted((rings_root / "test" / "images").glob("*.jpg"))
    run = tiny_lora_run
    return Trained(run.run_id, run.tracking_uri, run.weights, images)


def read_mask(path: Path) -> np.ndarray:
    """A written mask PNG as bool, after checking it holds only 0 and 255."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.ndim == 2, path
    assert set(np.unique(mask)) <= {0, 255}, path
    return mask == 255


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="package")
def reference(trained: Trained) -> SamPredictor:
    """SamPredictor called directly on the fine-tuned model, LoRA merged as predict does."""
    base, adapter, _ = load_finetuned(weights=str(trained.weights))
    adapter.merge(base.sam)
    return SamPredictor(base.sam)


def sam_predict(predictor: SamPredictor, image: Path, box=None, points=None, labels=None,
                multimask: bool = False, logits: list | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(low-res logits upsampled to the image > 0, predicted IoU) from the stock single-prompt API;
    the logits themselves are appended to `logits` when it is given."""
    predictor.set_image(read_image_rgb(image, orient=True))
    _, iou, low_res = predictor.predict(
        point_coords=None if points is None else np.array(points),
        point_labels=None if points is None else np.array(labels or [1] * len(points)),
        box=None if box is None else np.array(box),
        multimask_output=multimask,
    )
    upscaled = predictor.model.postprocess_masks(
        torch.from_numpy(low_res)[None], predictor.input_size, predictor.original_size
    )[0]
    if logits is not None:
        logits.append(upscaled.numpy())
    return (upscaled > 0).numpy(), iou
