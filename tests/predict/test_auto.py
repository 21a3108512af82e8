"""Auto mode: SamAutomaticMaskGenerator's masks on the fine-tuned model, as COCO RLE or PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator

from samexp.data.base import read_image_rgb
from samexp.finetuned import load_finetuned
from tests.predict.conftest import Trained, read_mask, read_rgb

# pycocotools' decode predates numpy 2's `copy=` keyword; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
# permissive, so even the tiny random-ish model yields masks; 4×4 points keeps it fast
KNOBS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def outputs(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The rings test folder predicted once per output mode."""
    out = {}
    for mode in ("coco_rle", "binary_mask"):
        out[mode] = tmp_path_factory.mktemp(mode)
        trained.predict(out[mode], images=str(trained.images[0].parent), mode="auto",
                        auto={**KNOBS, "output_mode": mode})  # fmt: skip
    return out


def anns(folder: Path, image: Path) -> list[dict]:
    return json.loads((folder / f"{image.stem}_auto.json").read_text())


def test_coco_rle_decodes_to_masks_of_the_image_size_with_the_json_areas(trained, outputs):
    for image in trained.images:
        h, w = read_image_rgb(image, orient=True).shape[:2]
        records = anns(outputs["coco_rle"], image)
        assert records, f"no masks for {image.name}"
        for r in records:
            assert isinstance(r["segmentation"]["counts"], str)
            assert r["segmentation"]["size"] == [h, w]
            mask = mask_utils.decode(r["segmentation"])
            assert mask.shape == (h, w)
            assert int(mask.sum()) == r["area"]
            x, y, bw, bh = r["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x, y, x + bw, y + bh) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert {"predicted_iou", "stability_score"} <= set(r)


def test_auto_masks_are_the_stock_generators_on_the_fine_tuned_model(trained, outputs):
    base, adapter, _ = load_finetuned(weights=str(trained.weights))
    adapter.merge(base.sam)
    image = trained.images[1]
    expected = SamAutomaticMaskGenerator(base.sam, output_mode="coco_rle", **KNOBS).generate(
        read_image_rgb(image, orient=True)
    )
    written = anns(outputs["coco_rle"], image)
    assert [r["segmentation"] for r in written] == [e["segmentation"] for e in expected]
    assert [r["predicted_iou"] for r in written] == pytest.approx([e["predicted_iou"] for e in expected], abs=1e-6)  # fmt: skip


def test_binary_mask_mode_writes_one_png_per_mask_equal_to_the_rle(trained, outputs):
    image = trained.images[0]
    rle, png = anns(outputs["coco_rle"], image), anns(outputs["binary_mask"], image)
    assert [r["mask"] for r in png] == [f"{image.stem}_auto/mask_{k}.png" for k in range(len(rle))]
    assert all("segmentation" not in r for r in png)
    for r, p in zip(rle, png, strict=True):
        mask = read_mask(outputs["binary_mask"] / p["mask"])
        assert np.array_equal(mask, mask_utils.decode(r["segmentation"]).astype(bool))
        assert p["area"] == r["area"]


@pytest.mark.parametrize("mode", ["coco_rle", "binary_mask"])
def test_auto_overlay_is_coloured_where_the_masks_are_and_indexed(trained, outputs, mode):
    image = trained.images[1]
    overlay = read_rgb(outputs[mode] / f"{image.stem}_auto_overlay.png")
    original = read_image_rgb(image, orient=True)
    union = np.any([mask_utils.decode(r["segmentation"]) for r in anns(outputs["coco_rle"], image)], 0)  # fmt: skip
    changed = (overlay.astype(int) - original).any(2)
    assert changed[union].mean() > 0.9
    index = json.loads((outputs[mode] / "predictions.json").read_text())
    assert index["mode"] == "auto" and len(index["images"]) == len(trained.images)
    assert f"{image.stem}_auto_overlay.png" in index["images"][1]["files"]
