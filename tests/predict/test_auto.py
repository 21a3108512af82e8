"""Auto mode: SamAutomaticMaskGenerator's masks on the fine-tuned model, as COCO RLE or PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator

from samexp.data.base import read_image_rgb
from samexp.tracking.finetuned import load_finetuned
from tests.predict.conftest import Trained, read_mask, read_rgb

# pycocotools' decode predates numpy 2's `copy=` keyword; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
# permissive, so even the tiny random-ish model yields masks; 4×4 points keeps it fast
KNOBS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def outputs(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The rings test folder predicted once per output mode. Automatic masks of both photos in both
    modes take seconds, so the tests that read them are `slow`; test_max_side_... and the knob checks
    keep auto mode in the fast suite."""
    out = {}
    for mode in ("coco_rle", "binary_mask"):
        out[mode] = tmp_path_factory.mktemp(mode)
        trained.predict(out[mode], images=str(trained.images[0].parent), mode="auto",
                        auto={**KNOBS, "output_mode": mode})  # fmt: skip
    return out


def anns(folder: Path, image: Path) -> list[dict]:
    return json.loads((folder / f"{image.stem}_auto.json").read_text())


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_binary_mask_mode_writes_one_png_per_mask_equal_to_the_rle(trained, outputs):
    image = trained.images[0]
    rle, png = anns(outputs["coco_rle"], image), anns(outputs["binary_mask"], image)
    assert [r["mask"] for r in png] == [f"{image.stem}_auto/mask_{k}.png" for k in range(len(rle))]
    assert all("segmentation" not in r for r in png)
    for r, p in zip(rle, png, strict=True):
        mask = read_mask(outputs["binary_mask"] / p["mask"])
        assert np.array_equal(mask, mask_utils.decode(r["segmentation"]).astype(bool))
        assert p["area"] == r["area"]


@pytest.mark.slow
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


def test_max_side_generates_on_a_smaller_copy_and_scales_every_mask_back_to_the_photo(
    trained: Trained, tmp_path: Path
):
    image = trained.images[0]  # 1024 px: generated at 256 px, 16x fewer pixels per mask
    index = trained.predict(tmp_path, image=str(image), mode="auto",
                            auto={**KNOBS, "max_side": 256, "output_mode": "coco_rle"})  # fmt: skip
    h, w = read_image_rgb(image, orient=True).shape[:2]
    base, adapter, _ = load_finetuned(weights=str(trained.weights))
    adapter.merge(base.sam)
    small = cv2.resize(read_image_rgb(image, orient=True), (256, 256), interpolation=cv2.INTER_AREA)
    expected = SamAutomaticMaskGenerator(base.sam, **KNOBS).generate(small)
    written = anns(tmp_path, image)
    assert index["images"][0]["masks"] == len(written) == len(expected) > 0
    for got, want in zip(written, expected, strict=True):
        mask = mask_utils.decode(got["segmentation"]).astype(bool)
        assert mask.shape == (h, w)
        upscaled = cv2.resize(
            want["segmentation"].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
        )
        assert np.array_equal(mask, upscaled.astype(bool))
        assert got["area"] == int(mask.sum())
        assert got["point_coords"][0] == pytest.approx([c * 4 for c in want["point_coords"][0]])


@pytest.mark.slow
def test_points_per_batch_bounds_memory_without_changing_the_masks(
    trained: Trained, outputs, tmp_path: Path
):
    image = trained.images[1]
    trained.predict(tmp_path, image=str(image), mode="auto",
                    auto={**KNOBS, "points_per_batch": 3, "output_mode": "coco_rle"})  # fmt: skip
    batched, whole = anns(tmp_path, image), anns(outputs["coco_rle"], image)
    # the decoder's sums run over batches of another shape: logits equal up to float rounding,
    # so a pixel whose logit sits within rounding of the threshold may flip (stock
    # SamAutomaticMaskGenerator does the same: 2 pixels of ring_test_2 between 3 and 64 points a
    # batch). The same masks, then, up to such pixels: a few on their edges, never a mask more
    # or less, the scores equal up to rounding.
    assert len(batched) == len(whole)
    for got, want in zip(batched, whole, strict=True):
        a, b = mask_utils.decode(got["segmentation"]), mask_utils.decode(want["segmentation"])
        flipped = int((a != b).sum())
        assert flipped <= 8 and flipped <= 1e-3 * max(int(b.sum()), 1), (flipped, int(b.sum()))
        edges = cv2.morphologyEx(b, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
        assert not ((a != b) & ~edges).any()  # flips only where the mask meets the background
        for k in SCORES:
            assert got[k] == pytest.approx(want[k], abs=1e-6)
        same = [k for k in want if k not in (*SCORES, "segmentation", "area", "bbox")]
        assert {k: got[k] for k in same} == {k: want[k] for k in same}  # its point, its crop


SCORES = ("predicted_iou", "stability_score")


@pytest.mark.parametrize("knob, value", [("points_per_batch", 0), ("max_side", 10)])
def test_auto_knobs_out_of_range_are_refused_naming_them(
    trained: Trained, tmp_path: Path, knob, value
):
    from samexp.config.errors import SamexpError

    with pytest.raises(SamexpError, match=f"auto.{knob}={value}"):
        trained.predict(tmp_path, image=str(trained.images[0]), mode="auto", auto={knob: value})
