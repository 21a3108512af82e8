"""Bad input stops prediction with a SamexpError that names the offending key, file or prompt (the
CLI prints it as one line). Prompt mistakes are caught before any model is built."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from samexp.adapters.io import META_KEY, read_adapter_meta
from samexp.config.errors import SamexpError
from samexp.config.schema import Device
from tests.predict.conftest import BOX

PROMPT_ERRORS = {
    "no prompt": ({}, ["mode=prompt needs a prompt", "prompt.box="]),
    "box and boxes": ({"box": BOX, "boxes": [BOX]}, ["prompt.box", "prompt.boxes", "not both"]),
    "box of 3 numbers": ({"box": [1, 2, 3]}, ["prompt.box=[1, 2, 3]", "4 numbers"]),
    "x0 > x1": ({"box": [500, 10, 100, 200]}, ["prompt.box=[500, 10, 100, 200]", "x0 > x1"]),
    "y0 > y1": ({"boxes": [BOX, [10, 300, 50, 20]]}, ["prompt.boxes[1]=[10, 300, 50, 20]", "y0 > y1"]),
    "point not a pair": ({"points": [[1, 2], [3]]}, ["prompt.points[1]=[3]", "[x, y]"]),
    "point not numbers": ({"points": [["a", "b"]]}, ["prompt.points[0]", "numbers"]),
    "labels mismatch": ({"points": [[1, 2], [3, 4]], "labels": [1]}, ["2 points", "1 labels"]),
    "label not 0/1": ({"points": [[1, 2]], "labels": [2]}, ["prompt.labels[0]=2", "1 (foreground) or 0"]),
    "labels alone": ({"labels": [1], "box": BOX}, ["prompt.labels", "prompt.points"]),
}  # fmt: skip


def error_of(trained, tmp_path, source: str = "weights", **overrides) -> str:
    with pytest.raises(SamexpError) as e:
        trained.predict(tmp_path, source, **overrides)
    return str(e.value)


@pytest.mark.parametrize("case", PROMPT_ERRORS)
def test_a_malformed_prompt_is_refused_naming_it(trained, tmp_path, case):
    prompt, expected = PROMPT_ERRORS[case]
    # a missing weights file proves the prompt is checked first, before any model is loaded
    message = error_of(trained, tmp_path, image=str(trained.images[0]), prompt=prompt,
                       weights=str(tmp_path / "never-read.safetensors"))  # fmt: skip
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    "prompt, named",
    [({"box": [0, 0, 800, 2100]}, "prompt.box=[0, 0, 800, 2100]"),  # farther than a near miss
     ({"boxes": [BOX, [-1100, 0, 10, 10]]}, "prompt.boxes[1]=[-1100, 0, 10, 10]"),
     ({"boxes": [BOX, [1030, 0, 1040, 10]]}, "prompt.boxes[1]=[1030, 0, 1040, 10]"),  # all out
     ({"points": [[10, 10], [1030, 20]]}, "prompt.points[1]=[1030, 20]")],  # points: never clipped
)  # fmt: skip
def test_a_prompt_outside_the_image_is_refused_naming_it_and_the_image_size(
    trained, tmp_path, prompt, named
):
    image = trained.images[0]  # 1024×1024
    message = error_of(trained, tmp_path, image=str(image), prompt=prompt)
    assert named in message and image.name in message and "1024×1024" in message, message


def test_a_box_fitting_one_image_of_a_folder_but_not_the_next_names_that_image(trained, tmp_path):
    folder = trained.images[0].parent  # ring_test_1 is 1024×1024, ring_test_2 740×740
    # past the 1024 px image's edge by a near miss (clipped), the 740 px one's by more than its size
    message = error_of(trained, tmp_path, images=str(folder), prompt={"box": [0, 0, 900, 1600]})
    assert "ring_test_2.jpg" in message and "740×740" in message, message


@pytest.mark.parametrize("image, images", [(True, True), (False, False)])
def test_exactly_one_of_image_and_images_is_required(trained, tmp_path, image, images):
    message = error_of(trained, tmp_path, prompt={"box": BOX},
                       image=str(trained.images[0]) if image else None,
                       images=str(trained.images[0].parent) if images else None)  # fmt: skip
    assert "image=" in message and "images=" in message, message


def test_an_empty_folder_is_refused_naming_it(trained, tmp_path):
    (empty := tmp_path / "empty").mkdir()
    (empty / "readme.md").write_text("no images here")
    message = error_of(trained, tmp_path, images=str(empty), prompt={"box": BOX})
    assert str(empty) in message and "no image files" in message, message


def test_a_missing_image_is_refused_naming_it(trained, tmp_path):
    message = error_of(trained, tmp_path, image=str(tmp_path / "nope.jpg"), prompt={"box": BOX})
    assert "nope.jpg" in message, message


def test_an_unreadable_image_in_a_folder_is_refused_naming_it(trained, tmp_path):
    (folder := tmp_path / "in").mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    message = error_of(trained, tmp_path, images=str(folder), prompt={"box": [0, 0, 1, 1]})
    assert "broken.jpg" in message and "cannot be read" in message, message


def test_an_unknown_run_is_refused_naming_it_and_the_tracking_store(trained, tmp_path):
    run_id = "0" * 32
    message = error_of(trained, tmp_path, "run", run_id=run_id, image=str(trained.images[0]),
                       prompt={"box": BOX})  # fmt: skip
    assert run_id in message and trained.tracking_uri in message, message


def test_missing_weights_are_refused_naming_the_file(trained, tmp_path):
    missing = tmp_path / "adapter.safetensors"
    message = error_of(trained, tmp_path, weights=str(missing), image=str(trained.images[0]),
                       prompt={"box": BOX})  # fmt: skip
    assert str(missing) in message, message


def test_weights_from_another_base_model_are_refused_naming_both_bases(trained, tmp_path):
    meta = read_adapter_meta(trained.weights)
    meta["base"]["weights_id"] = "random:tiny:seed7"  # says: trained on a base we will not rebuild
    other = tmp_path / "other.safetensors"
    save_file(load_file(str(trained.weights)), str(other), metadata={META_KEY: json.dumps(meta)})
    message = error_of(trained, tmp_path, weights=str(other), image=str(trained.images[0]),
                       prompt={"box": BOX})  # fmt: skip
    assert "random:tiny:seed7" in message and "random:tiny:seed0" in message, message


def test_compare_in_auto_mode_is_refused(trained, tmp_path):
    message = error_of(trained, tmp_path, image=str(trained.images[0]), mode="auto", compare=True)
    assert "compare=true" in message and "mode=prompt" in message, message


@pytest.mark.parametrize(
    "overlay, named",
    [({"alpha": 1.5}, "overlay.alpha=1.5"), ({"colors": [[255, 0]]}, "overlay.colors")],
)
def test_a_bad_overlay_style_is_refused_naming_the_key(trained, tmp_path, overlay, named):
    message = error_of(trained, tmp_path, image=str(trained.images[0]), prompt={"box": BOX},
                       overlay=overlay)  # fmt: skip
    assert named in message, message


@pytest.mark.parametrize(
    "auto, named",
    [({"points_per_side": 0}, "auto.points_per_side=0"),
     ({"pred_iou_thresh": 1.5}, "auto.pred_iou_thresh=1.5")],
)  # fmt: skip
def test_bad_auto_knobs_are_refused_before_the_model_is_built(trained, tmp_path, auto, named):
    message = error_of(trained, tmp_path, image=str(trained.images[0]), mode="auto", auto=auto,
                       weights=str(tmp_path / "never-read.safetensors"))  # fmt: skip
    assert named in message, message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_refused_naming_the_key(trained, tmp_path):
    message = error_of(trained, tmp_path, image=str(trained.images[0]), prompt={"box": BOX},
                       device=Device.cuda)  # fmt: skip
    assert "device=cuda" in message and "trainer" not in message, message
