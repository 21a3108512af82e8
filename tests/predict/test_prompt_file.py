"""Prompts from a file (`prompts=boxes.json`): a prompt per image of a folder, from COCO-style
bboxes or a plain {file: boxes} map, checked before any model is built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from samexp.config.errors import SamexpError
from samexp.predict.prompt_file import read_prompt_file
from tests.predict.conftest import BOX, read_mask, sam_predict

SECOND = [400.0, 420.0, 600.0, 600.0]


def write(tmp_path: Path, data, name: str = "prompts.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_coco_style_bboxes_become_one_box_prompt_each_by_file_name(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "JPEGImages/a.jpg"}, {"id": 8, "file_name": "b.png"}],
            "annotations": [{"image_id": 7, "bbox": [10, 20, 30, 40]},
                            {"image_id": 7, "bbox": [0, 0, 5, 5]},
                            {"image_id": 8, "bbox": [1, 2, 3, 4]}]}  # fmt: skip
    prompts = read_prompt_file(write(tmp_path, coco))
    a = prompts.for_image(Path("photos/a.jpg"))  # a sub-folder in the file, the base name here
    assert a.boxes.tolist() == [[10, 20, 40, 60], [0, 0, 5, 5]]  # xywh -> xyxy
    assert prompts.for_image(Path("b.png")).boxes.tolist() == [[1, 2, 4, 6]]
    assert prompts.for_image(Path("c.jpg")) is None


def test_a_plain_map_takes_boxes_or_points_named_by_file_or_stem(tmp_path):
    data = {"a.jpg": [[1, 2, 3, 4]], "b": {"points": [[5, 6], [7, 8]], "labels": [1, 0]}}
    prompts = read_prompt_file(write(tmp_path, data))
    assert prompts.for_image(Path("a.jpg")).boxes.tolist() == [[1, 2, 3, 4]]
    b = prompts.for_image(Path("in/b.png"))
    assert b.boxes is None and b.points.tolist() == [[5, 6], [7, 8]] and b.labels.tolist() == [1, 0]
    assert prompts.unused([Path("a.jpg")]) == ["b"]


@pytest.mark.parametrize(
    "data, said",
    [
        ({"a.jpg": [[5, 2, 3, 4]]}, "entry 1 ('a.jpg'): boxes[0]=[5, 2, 3, 4] has x0 > x1"),
        ({"a.jpg": {"points": [[1, 2]], "labels": [3]}}, "entry 1 ('a.jpg'): labels[0]=3"),
        ({"a.jpg": {"box": [1, 2, 3, 4]}}, "entry 1 ('a.jpg'): expected [[x0, y0, x1, y1], ...]"),
        ([[1, 2, 3, 4]], "expected an object"),
        ({}, "holds no prompt"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "bbox": [1, 2, 3, 4]}]},
         "annotations[0]: its image_id names no image"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "bbox": [1, 2]}]},
         "annotations[0]: bbox must be [x, y, width, height]"),
    ],
)  # fmt: skip
def test_a_bad_prompt_file_is_refused_in_one_line_naming_the_file_and_entry(tmp_path, data, said):
    path = write(tmp_path, data)
    with pytest.raises(SamexpError) as refused:
        read_prompt_file(path)
    message = str(refused.value)
    assert str(path) in message and said in message and "\n" not in message, message


def test_a_file_that_is_not_json_is_refused_naming_it(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text("{not json")
    with pytest.raises(SamexpError, match="boxes.json is not a readable JSON file"):
        read_prompt_file(path)


def test_each_image_of_a_folder_gets_its_own_prompt_and_an_image_without_one_is_skipped(
    trained, reference, tmp_path, caplog
):
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = trained.images
    for image in trained.images:
        shutil.copy(image, folder / image.name)
    shutil.copy(first, folder / "extra.jpg")  # no entry: skipped, with a warning
    prompts = write(tmp_path, {first.name: [BOX], second.stem: [SECOND], "typo.jpg": [BOX]})
    index = trained.predict(tmp_path / "out", images=str(folder), prompts=str(prompts))
    for image, box in ((first, BOX), (second, SECOND)):
        expected, _ = sam_predict(reference, image, box=box)
        assert np.array_equal(read_mask(tmp_path / "out" / f"{image.stem}_mask0.png"), expected[0])
    by_name = {Path(e["image"]).name: e for e in index["images"]}
    assert by_name["extra.jpg"]["masks"] == 0 and by_name["extra.jpg"]["files"] == []
    assert "extra.jpg" in caplog.text and "typo.jpg" in caplog.text
    assert index["prompts"] == str(prompts)


def test_prompts_from_a_file_and_on_the_command_line_are_refused_together(trained, tmp_path):
    prompts = write(tmp_path, {"a.jpg": [BOX]})
    with pytest.raises(SamexpError, match="not both"):
        trained.predict(
            tmp_path / "out", images=str(tmp_path), prompts=str(prompts), prompt={"box": BOX}
        )
    with pytest.raises(SamexpError, match="names none of the"):
        trained.predict(tmp_path / "out", image=str(trained.images[0]), prompts=str(prompts))
