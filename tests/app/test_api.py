"""The API behind the page, through gradio_client as a script would call it: both models answer
one box, the embedding is reused by the next call, and a bad upload is an error that says why."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.app.conftest import App, Store

# end to end: a training run, then `python -m samexp.app` started as a server (seconds of imports)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app: App) -> Client:
    return Client(app.url, verbose=False)


def _segment(client: Client, image: Path, box: str = "[60, 300, 700, 650]", **kw) -> tuple:
    args = {"box": box, "points": "", "labels": "", "run_id": "", "weights": "", "alpha": 0.5}
    args.update(kw)
    return client.predict(handle_file(str(image)), *args.values(), api_name="/segment")


def test_the_app_listens_on_127_0_0_1_only(app: App):
    assert app.url.startswith("http://127.0.0.1:")
    assert "the demo answers on http://127.0.0.1:" in app.log.read_text()
    assert "share=True" not in app.log.read_text()  # no public-link hint for a local demo
    assert "HTTP Request:" not in app.log.read_text()  # nor gradio's calls to its own page


def test_a_box_through_the_api_gives_both_masks_and_reuses_the_embedding(
    client: Client, store: Store, rings_root: Path
):
    image = rings_root / "test" / "images" / "ring_test_2.jpg"
    zero, tuned, info = _segment(client, image)
    assert info["source"] == f"run {store.run_id}"  # the newest finished run answers by default
    height, width = cv2.imread(str(image)).shape[:2]
    for picture in (zero, tuned):
        assert cv2.imread(picture).shape[:2] == (height, width)
    assert set(info["predicted_iou"]) == {"zero-shot", "fine-tuned"}
    assert all(info["encode_ms"][m] > 0 for m in ("zero-shot", "fine-tuned"))  # LoRA: one each
    # the same image again, with points: decoder time only
    _, _, again = _segment(client, image, box="", points="[[380, 470], [20, 20]]", labels="[1, 0]")
    assert again["encode_ms"] == {"zero-shot": 0.0, "fine-tuned": 0.0}
    assert again["decode_ms"]["fine-tuned"] > 0


def test_an_upload_that_is_not_an_image_is_an_error_naming_it(client: Client, tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(AppError, match="notes.txt is not an image this app can read"):
        _segment(client, notes)


def test_a_box_outside_the_image_is_an_error_with_the_image_size(client: Client, rings_root: Path):
    image = rings_root / "test" / "images" / "ring_test_2.jpg"
    with pytest.raises(AppError, match=r"lies outside the image, which is 740×740"):
        _segment(client, image, box="[0, 0, 5000, 10]")
