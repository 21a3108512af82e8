"""The ONNX page's example of the graphs without samexp (numpy, Pillow, onnxruntime) runs as
written and gives samexp's own mask, on both geometries (letterboxed SAM, stretched SAM 2.1)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.data.base import read_image_rgb
from samexp.export import export
from samexp.models.build import build_tiny
from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.onnx_predictor import OnnxPredictor
from tests.conftest import REPO

PAGE = REPO / "docs" / "tasks" / "onnx.md"
MARKER = "<!-- the plain onnxruntime example -->"


def example() -> str:
    text = PAGE.read_text()
    block = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert block, f"{PAGE} lost its example after {MARKER}"
    return block.group(1)


@pytest.mark.parametrize("family", ["tiny", "sam2_tiny"])
def test_the_plain_onnxruntime_example_gives_samexps_mask(family, rings_root, tmp_path):
    if family == "tiny":
        base = build_tiny()
    else:
        from samexp.models.sam2 import build_sam2_tiny

        base = build_sam2_tiny()
    adapter = LoraAdapter(rank=4)
    adapter.apply(base.sam)
    weights = save_adapter(tmp_path / "adapter.safetensors", base, adapter)
    folder = export(weights=str(weights), format="onnx", out=str(tmp_path / "onnx"))
    photo = rings_root / "test" / "images" / "ring_test_1.jpg"
    box = [150, 120, 600, 640]
    code, count = re.subn(r"^folder, photo_path, box = .*$",
                          f"folder, photo_path, box = {str(folder)!r}, {str(photo)!r}, {box}",
                          example(), flags=re.M)  # fmt: skip
    assert count == 1
    scope: dict = {}
    exec(compile(code, str(PAGE), "exec"), scope)  # noqa: S102 (the docs' own code)
    predictor = OnnxPredictor(OnnxModel(folder))
    predictor.set_image(read_image_rgb(photo, orient=True))
    want, _, _ = predictor.predict(box=np.array(box), multimask_output=False)
    got = scope["mask"]
    assert got.shape == want[0].shape
    if family == "tiny":  # Pillow's bilinear is SAM's resize: the same pixels
        assert np.array_equal(got, want[0])
    else:  # SAM 2.1 resizes with torchvision's antialiased bilinear: within a grey level
        iou = (got & want[0]).sum() / max((got | want[0]).sum(), 1)
        assert iou > 0.98, iou
