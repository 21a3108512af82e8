"""`python -m samexp.predict` as a user runs it: files where `out=` says, user errors as one line
and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def samexp_predict(tmp: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "samexp.predict", f"hydra.run.dir={tmp}/hydra", *overrides],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, output(result)
    assert "Traceback" not in output(result)
    errors = [line for line in output(result).splitlines() if "ERROR" in line]
    assert len(errors) == 1, output(result)
    return errors[0]


@pytest.mark.slow
def test_prompted_run_writes_masks_overlay_json_and_index_into_its_run_folder(trained, tmp_path):
    image = trained.images[0]
    result = samexp_predict(
        tmp_path, f"run_id={trained.run_id}", f"tracking_uri={trained.tracking_uri}",
        f"image={image}", "prompt.boxes=[[60,300,700,650],[400,420,600,600]]",  # ints, nested
        "device=cpu",  # no out=: the command's run folder (hydra.run.dir), beside its log
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    written = sorted(p.name for p in (tmp_path / "hydra").iterdir())
    stem = image.stem
    assert written == sorted([f"{stem}_mask0.png", f"{stem}_mask1.png", f"{stem}_overlay.png",
                              f"{stem}.json", "predictions.json", ".hydra", "predict.log"])  # fmt: skip
    index = json.loads((tmp_path / "hydra" / "predictions.json").read_text())
    assert index["source"]["run_id"] == trained.run_id and index["images"][0]["masks"] == 2
    assert f"{image.name} (1024×1024): 2 masks" in output(result)  # the per-image summary


@pytest.mark.slow
def test_both_image_and_images_exits_2_with_one_line(trained, tmp_path):
    image = trained.images[0]
    result = samexp_predict(tmp_path, f"weights={trained.weights}", f"image={image}",
                            f"images={image.parent}", "prompt.box=[1,2,3,4]")  # fmt: skip
    line = one_error_line(result)
    assert "image=" in line and "images=" in line


@pytest.mark.slow
def test_a_box_outside_the_image_exits_2_naming_it_and_the_image_size(trained, tmp_path):
    image = trained.images[1]
    result = samexp_predict(tmp_path, f"weights={trained.weights}", f"image={image}",
                            "prompt.box=[0,0,1600,100]", f"out={tmp_path}/pred")  # fmt: skip
    line = one_error_line(result)
    assert "prompt.box=[0, 0, 1600, 100]" in line and "740×740" in line and image.name in line
