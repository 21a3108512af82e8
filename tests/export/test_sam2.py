"""Export of a SAM 2.1 fine-tune (the session's tiny SAM 2.1 LoRA run, `tiny_sam2_run`): a file
that stock `sam2.build_sam.build_sam2` loads with strict keys, on which stock `SAM2ImagePredictor`
gives the masks samexp's `Predictor` gives on the fine-tuned model, and the line samexp prints to
load it works as printed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import initialize_config_module

from samexp.data.base import read_image_rgb
from samexp.export import export
from samexp.export.pth import how_to_load
from samexp.models.sam2 import tiny_overrides
from samexp.predict.predictor import Predictor
from samexp.tracking.finetuned import build_base, load_finetuned
from tests.conftest import REPO, TinyRun
from tests.models.stock_sam2 import stock_predictor

BOX = np.array([60.0, 300.0, 700.0, 650.0])  # around the rings of ring_test_2.jpg (740×740)


@pytest.fixture(scope="module")
def exported(tiny_sam2_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tiny_sam2_run
    out = tmp_path_factory.mktemp("export-sam2") / "sam2_rings.pt"
    return export(run_id=run.run_id, tracking_uri=run.tracking_uri, out=str(out))


def _stock_build(path: Path | None, image_size: int) -> torch.nn.Module:
    """Stock build_sam2 of the tiny SAM 2.1. samexp imported sam2 leaving Hydra's global state
    uninitialised (its own Hydra app needs that); a fresh `import sam2` initialises it instead."""
    import sam2.build_sam

    with initialize_config_module("sam2", version_base="1.2"):
        return sam2.build_sam.build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", path and str(path),
                                         device="cpu", hydra_overrides_extra=tiny_overrides(image_size))  # fmt: skip


def _logits(predictor, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictor.set_image(image)
    logits, iou, _ = predictor.predict(box=box, multimask_output=False, return_logits=True)
    return np.asarray(logits)[0], np.asarray(iou)


# (image, box, tolerance): on an S×S image neither pipeline resizes, so the logits differ by float
# rounding only (normalising in 0..255 vs 0..1 units, LoRA merged vs not); a photo is resized by
# stock SAM2Transforms in float 0..1 without rounding, while samexp keeps the resized image as
# uint8 as training saw it (up to 0.5/255 apart): logits then differ by at most ~3e-4
def _square(root: Path) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)


def _photo(root: Path) -> np.ndarray:
    return read_image_rgb(root / "test" / "images" / "ring_test_2.jpg", orient=True)


CASES = {
    "256×256 image": (_square, np.array([30.0, 40, 200, 220]), 1e-5),
    "740×740 photo": (_photo, BOX, 1e-3),
}


@pytest.mark.parametrize("case", CASES)
def test_stock_sam2_image_predictor_on_the_export_gives_samexps_masks(
    exported, tiny_sam2_run, rings_root, case
):
    make, box, tolerance = CASES[case]
    image = make(rings_root)
    info = json.loads(exported.with_suffix(".json").read_text())
    assert info["arch"] == "sam2_tiny" and info["build_kwargs"]["image_size"] == 256
    stock = _stock_build(exported, 256)  # strict: a missing or left-over key raises
    saved = torch.load(exported, weights_only=True)["model"]
    assert stock.state_dict().keys() == saved.keys()

    fine_tuned, _, meta = load_finetuned(run_id=tiny_sam2_run.run_id,
                                         tracking_uri=tiny_sam2_run.tracking_uri)  # fmt: skip
    logits, iou = _logits(Predictor(fine_tuned.sam.eval()), image, box)
    stock_logits, stock_iou = _logits(stock_predictor(stock), image, box)
    masks, differ = logits > 0, (stock_logits > 0) != (logits > 0)
    assert masks.any() and not masks.all()
    assert np.all(np.abs(logits[differ]) < tolerance) and np.all(np.abs(stock_logits[differ]) < tolerance)  # fmt: skip
    np.testing.assert_allclose(stock_iou, iou, atol=tolerance)
    # the export carries the training (LoRA merged into Hiera's qkv): not the base's weights
    base = build_base(meta).sam.state_dict()
    changed = [k for k in saved if not torch.equal(saved[k], base[k])]
    assert changed and all(k.endswith("attn.qkv.weight") for k in changed)


@pytest.mark.slow  # a fresh interpreter: seconds
def test_the_logged_load_line_loads_the_export_in_a_fresh_interpreter(
    exported, tiny_sam2_run, caplog
):
    with caplog.at_level(logging.INFO, logger="samexp.export"):
        path = export(run_id=tiny_sam2_run.run_id, tracking_uri=tiny_sam2_run.tracking_uri,
                      out=str(exported.with_name("again.pt")))  # fmt: skip
    fine_tuned, _, _ = load_finetuned(run_id=tiny_sam2_run.run_id,
                                      tracking_uri=tiny_sam2_run.tracking_uri)  # fmt: skip
    line = how_to_load(fine_tuned, path)
    assert line in caplog.text
    code = (
        "import sam2.build_sam, samexp.models.sam2, torch\n"
        f"sam = {line}\n"
        f"saved = torch.load({str(path)!r}, weights_only=True)['model']\n"
        "assert all(torch.equal(sam.state_dict()[k], v) for k, v in saved.items())\n"
        "print('loaded', type(sam).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "loaded SAM2Base"
