"""What the served MLflow model does with a request: rows of (base64 image, box, points, labels,
multimask) checked as `python -m samexp.predict` checks them, decoded by the ONNX export through
`OnnxPredictor`, answered as base64 PNG masks with their scores.

The MLflow side (`samexp.tracking.pyfunc`) is handed `onnx_handler` and stores it by reference;
it never imports this layer. Nothing read from a request picks code, and what it may allocate is
bounded: the encoded image (`REQUEST_IMAGE_BYTES`), its decoded pixels (`IMAGE_PIXELS`, from the
header before decoding), and one box per row.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samexp.config.errors import SamexpError
from samexp.config.limits import REQUEST_IMAGE_BYTES
from samexp.data.base import read_image_rgb
from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.onnx_predictor import OnnxPredictor
from samexp.predict.prompted import Prediction, predict_prompts
from samexp.predict.prompts import check_inside, parse_prompts

COLUMNS = ("image", "box", "points", "labels", "multimask")
Handler = Callable[[Sequence[dict[str, Any]]], list[dict[str, Any]]]


def plain(value: Any) -> Any:
    """A cell as JSON would have it: MLflow's schema enforcement hands arrays as numpy arrays
    (nested: arrays of arrays) and a missing optional value as None or NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray | list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode_image(text: Any, where: str) -> np.ndarray:
    """An H×W×3 RGB image (EXIF orientation applied) from base64 PNG or JPEG text, optionally a
    `data:image/...;base64,` URL; refused in one line naming `where` and the limit."""
    if not isinstance(text, str) or not text:
        raise SamexpError(f"{where}: image must be a base64-encoded PNG or JPEG file, as text")
    text = text.split(",", 1)[1] if text.startswith("data:") else text
    REQUEST_IMAGE_BYTES.check(
        len(text) * 3 // 4, where, f"the image is {len(text) * 3 // 4:,} bytes"
    )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SamexpError(f"{where}: image is not base64 text (A-Z, a-z, 0-9, +, / and = "
                          "padding); encode the file's bytes, e.g. base64.b64encode(...)") from None  # fmt: skip
    # through the file reader datasets and predict use: truncation, pixel limit, 16-bit, EXIF
    with tempfile.TemporaryDirectory(prefix="samexp-request-") as tmp:
        path = Path(tmp) / "image"
        path.write_bytes(data)
        try:
            return read_image_rgb(path, orient=True)
        except SamexpError as e:
            raise SamexpError(str(e).replace(str(path), f"{where}: image")) from None


def encode_mask(mask: np.ndarray) -> str:
    """A boolean mask as base64 of a 0/255 grey PNG (what `python -m samexp.predict` writes)."""
    ok, png = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:  # pragma: no cover - OpenCV encodes any 2-D uint8 array
        raise SamexpError("could not encode a mask as PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")


def decode_mask(text: str) -> np.ndarray:
    """The inverse of `encode_mask`, for clients and tests."""
    png = np.frombuffer(base64.b64decode(text), np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE) > 127


@dataclass
class OnnxHandler:
    """Answers rows with one model export's two graphs (one image encoding per row)."""

    predictor: OnnxPredictor

    def __call__(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One answer per row; a row samexp refuses is answered with its one-line reason in
        `error` (and no masks), the other rows of the request still answered."""
        answers = []
        for i, row in enumerate(rows):
            try:
                answers.append(self.answer(row, f"row {i}"))
            except SamexpError as e:
                answers.append({"masks": [], "scores": [], "width": 0, "height": 0,
                                "error": str(e)})  # fmt: skip
        return answers

    def predict(self, row: dict[str, Any], where: str) -> tuple[np.ndarray, Prediction]:
        """The row's image and its prediction; the prompts are checked before any graph runs."""
        row = {k: plain(v) for k, v in row.items()}
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise SamexpError(f"{where}: unknown column(s) {', '.join(map(str, unknown))}; a row "
                              f"has {', '.join(COLUMNS)}")  # fmt: skip
        multimask = row.get("multimask") or False
        if not isinstance(multimask, bool):
            raise SamexpError(f"{where}: multimask={multimask!r} must be true or false")
        if row.get("box") is None and row.get("points") is None:
            raise SamexpError(f"{where}: no prompt; give box=[x0,y0,x1,y1] and/or "
                              "points=[[x,y],...] (labels=[1,0,...]: 1 foreground, 0 background)")  # fmt: skip
        try:
            prompts = parse_prompts(box=row.get("box"), points=row.get("points"),
                                    labels=row.get("labels"))  # fmt: skip
        except SamexpError as e:
            raise SamexpError(f"{where}: {str(e).replace('prompt.', '')}") from None
        image = decode_image(row.get("image"), where)
        h, w = image.shape[:2]
        # messages about a row's box and points name the row: `row 2: box=[...] lies outside`
        named = dataclasses.replace(prompts, origin=f"{where}: ")
        prompts = check_inside(named, "the image", h, w)
        return image, predict_prompts(self.predictor, image, prompts, multimask)

    def answer(self, row: dict[str, Any], where: str) -> dict[str, Any]:
        image, pred = self.predict(row, where)
        return {
            "masks": [encode_mask(m) for m in pred.masks[0]],
            "scores": [float(s) for s in pred.scores[0]],
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "error": None,
        }


def onnx_handler(folder: str | Path) -> OnnxHandler:
    """The handler of an ONNX export folder (`python -m samexp.export format=onnx`): the factory
    the MLflow model is given, called once when the model is loaded."""
    return OnnxHandler(OnnxPredictor(OnnxModel(folder)))
