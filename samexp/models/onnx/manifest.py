"""What an ONNX export folder holds beside its two graphs: `samexp_onnx.json`, the manifest a
runtime (samexp's or a user's, in any language) needs to feed them: the input side, whether
images are stretched or letterboxed, the mask threshold, the opset, where the model came from and
the parity measured at export.

The file names are fixed here, never read from the manifest, and the values it does give are
checked: an export folder may come from anyone (a shared server, a download), so it chooses
neither a path nor an allocation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from samexp.config.errors import UntrustedFileError
from samexp.config.limits import load_json

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
MANIFEST_FILE = "samexp_onnx.json"
FORMAT = "samexp-onnx/1"
OPSET = 17  # what SAM's own scripts/export_onnx_model.py uses; onnxruntime >= 1.14 runs it
SIDES = range(64, 4097)  # input sides samexp builds (tiny 64..; SAM 1024), bounded


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps({"format": FORMAT, **manifest}, indent=2))
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an export folder, its runtime fields checked (one line naming the file
    and the key when one is off)."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise UntrustedFileError(f"{folder}: no such folder (an ONNX export: python -m "
                                 "samexp.export format=onnx writes one)")  # fmt: skip
    for name in (MANIFEST_FILE, ENCODER_FILE, DECODER_FILE):
        if not (folder / name).is_file():
            raise UntrustedFileError(f"{folder} holds no {name}: not a samexp ONNX export "
                                     "(python -m samexp.export format=onnx writes one)")  # fmt: skip
    manifest = load_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UntrustedFileError(f"{path}: format is not {FORMAT!r}")
    model = manifest.get("input")
    if not isinstance(model, dict):
        raise UntrustedFileError(f"{path}: key 'input' is missing")
    size, stretch, threshold = model.get("size"), model.get("stretch"), model.get("mask_threshold")
    if type(size) is not int or size not in SIDES:
        raise UntrustedFileError(f"{path}: input.size={size!r} is not a side in "
                                 f"{SIDES.start}..{SIDES.stop - 1}")  # fmt: skip
    if type(stretch) is not bool:
        raise UntrustedFileError(f"{path}: input.stretch={stretch!r} is not true or false")
    if type(threshold) not in (int, float) or not math.isfinite(threshold):
        raise UntrustedFileError(f"{path}: input.mask_threshold={threshold!r} is not a number")
    if type(model.get("pad_with_box")) is not bool:
        raise UntrustedFileError(f"{path}: input.pad_with_box is not true or false")
    return manifest
