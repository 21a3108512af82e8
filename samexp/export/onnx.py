"""`python -m samexp.export format=onnx`: the fine-tuned model as SAM's two ONNX graphs (image
encoder; prompt-to-mask decoder, `samexp.models.onnx.graphs`) in one folder with their manifest,
checked against PyTorch with onnxruntime in the same command on a real image and real prompts.

The graphs are traced with torch's TorchScript-based exporter, as SAM's own
`scripts/export_onnx_model.py` does: the decoder's output size is an input *value*
(`orig_im_size`), which `torch.export` (the dynamo exporter) cannot trace without a fixed size.
Opset 17 (`OPSET`), which onnxruntime has run since 1.14. Mergeable adapters are folded into the
weights first; a method that cannot be folded (AdaptFormer) is exported as the extra modules it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samexp.adapters.base import Adapter
from samexp.config.errors import SamexpError
from samexp.export.parity import compare
from samexp.models.build import BaseModel
from samexp.models.family import family_of
from samexp.models.onnx.graphs import (
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    PROMPT_INPUTS,
    DecoderGraph,
    EncoderGraph,
)
from samexp.models.onnx.manifest import (
    DECODER_FILE,
    ENCODER_FILE,
    MANIFEST_FILE,
    OPSET,
    write_manifest,
)
from samexp.models.onnx.runtime import OnnxModel
from samexp.models.seam import encode, pipeline
from samexp.tracking.finetuned import test_image

log = logging.getLogger(__name__)

PARITY_FILE = "parity.json"

# prompts vary per call: how many prompts (B) and points per prompt (N), and the image's size
DYNAMIC = {
    "point_coords": {0: "prompts", 1: "points"},
    "point_labels": {0: "prompts", 1: "points"},
    "mask_input": {0: "prompts"},
    "masks": {0: "prompts", 2: "height", 3: "width"},
    "iou_predictions": {0: "prompts"},
    "low_res_masks": {0: "prompts"},
}


def export_graphs(sam: nn.Module, folder: Path, opset: int = OPSET) -> list[str]:
    """Write encoder.onnx and decoder.onnx of `sam` (eval mode, CPU) into `folder`; returns the
    feature levels between them. An operator ONNX cannot express is refused naming it."""
    geometry = pipeline(sam)
    image = torch.zeros(1, 3, geometry.size, geometry.size, dtype=torch.uint8)
    input_size = torch.tensor([geometry.size, geometry.size])
    with torch.no_grad():
        features = encode(sam, image, input_size.reshape(1, 2))
    levels = list(features)
    side = geometry.size // 4
    prompts = (torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]]), torch.zeros(1, 1, side, side),
               torch.zeros(1), torch.tensor([float(geometry.size)] * 2))  # fmt: skip
    # the graphs in eval mode: the exporter restores the mode it found afterwards, recursively,
    # and a wrapper left in training mode would put `sam` back into it (SAM 2.1's single-mask
    # answer differs between the two)
    encoder, decoder = EncoderGraph(sam, levels).eval(), DecoderGraph(sam, levels).eval()
    with _exporting(family_of(sam).name, opset):
        torch.onnx.export(encoder, (image, input_size), str(folder / ENCODER_FILE),
                          input_names=list(ENCODER_INPUTS), output_names=levels,
                          opset_version=opset, dynamo=False)  # fmt: skip
        _one_data_file(folder / ENCODER_FILE)  # before the decoder joins it in the folder
        torch.onnx.export(decoder, (*features.values(), *prompts),
                          str(folder / DECODER_FILE), input_names=[*levels, *PROMPT_INPUTS],
                          output_names=list(DECODER_OUTPUTS), dynamic_axes=DYNAMIC,
                          opset_version=opset, dynamo=False)  # fmt: skip
    return levels


def _one_data_file(graph: Path) -> None:
    """A graph over protobuf's 2 GiB (vit_h's encoder) keeps its weights outside it; the exporter
    writes one file per tensor (hundreds): gathered into one `<graph>.data` beside it."""
    import onnx

    before = set(graph.parent.iterdir())
    if before == {graph}:
        return
    model = onnx.load(str(graph))  # reads the external tensors in
    onnx.save_model(model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{graph.name}.data", size_threshold=1024)  # fmt: skip
    for stray in before - {graph}:
        stray.unlink()


@contextlib.contextmanager
def _exporting(family: str, opset: int) -> Iterator[None]:
    """The exporter's own failures as one line naming the operator; its deprecation and tracer
    warnings (about the exporter and SAM's Python shape arithmetic, not the user's model) quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except (torch.onnx.errors.OnnxExporterError, RuntimeError) as e:
            text = str(e)
            found = re.search(r"operator '([\w:.]+)'", text) or re.search(
                r"(aten::\w+|\w+::\w+)", text
            )
            if found is None:
                raise
            raise SamexpError(
                f"cannot export this {family} model to ONNX opset {opset}: operator "
                f"{found.group(1)} has no ONNX translation (a module an adapter or a patch added?); "
                "the PyTorch export (format=pth) still works"
            ) from None


def check_export_folder(dest: Path) -> None:
    """`out` of an ONNX export: a new folder, an empty one or an earlier export (replaced whole),
    never a file or a folder holding anything else. The command asks before building the model;
    `staged_folder` asks again for every other caller."""
    if dest.exists() and not dest.is_dir():
        raise SamexpError(f"out={dest} is a file: format=onnx writes a folder (two graphs and "
                          "their manifest)")  # fmt: skip
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MANIFEST_FILE).is_file():
        raise SamexpError(f"out={dest} is a folder holding other files: give a new or empty "
                          "folder (an earlier ONNX export there is replaced)")  # fmt: skip


@contextlib.contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """A fresh folder beside `dest` to write into, which replaces `dest` when the block succeeds
    (an earlier export there is replaced whole) and is removed when it fails: no half-written
    export is ever left where a runtime would load it."""
    check_export_folder(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.partial"
    stage.mkdir()
    old = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.old"
    try:
        yield stage
        if dest.exists():
            dest.rename(old)
        stage.rename(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def manifest_of(sam: nn.Module, levels: list[str], opset: int, **about: Any) -> dict[str, Any]:
    """What a runtime needs to feed the graphs (checked when read: `read_manifest`)."""
    geometry, family = pipeline(sam), family_of(sam)
    return {
        "family": family.name,
        "opset": opset,
        "encoder": {"file": ENCODER_FILE, "inputs": list(ENCODER_INPUTS), "outputs": levels},
        "decoder": {
            "file": DECODER_FILE,
            "inputs": [*levels, *PROMPT_INPUTS],
            "outputs": list(DECODER_OUTPUTS),
        },  # fmt: skip
        "input": {
            "size": geometry.size,
            "stretch": geometry.stretch,
            "mask_threshold": family.mask_threshold(sam),
            "pad_with_box": family.pads_boxed_prompts,
        },
        **about,
        "how_to_feed": HOW_TO_FEED,
    }


HOW_TO_FEED = (
    "encoder: image = uint8 1x3xSxS RGB, the photo resized (stretch: to SxS; else its longest side "
    "to S, bilinear) and zero-padded bottom/right; input_size = int64 [h, w] of the resized photo "
    "inside it. decoder: the encoder's outputs by name; point_coords float Bx Nx2 (x, y in the "
    "SxS frame: photo pixels times the resize factors), point_labels float BxN (1 foreground, "
    "0 background, 2 and 3 a box's top-left and bottom-right corners, -1 a padding point, which "
    "prompts without a box need, and with a box too when pad_with_box is true); mask_input "
    "Bx1x(S/4)x(S/4) low-res logits used where has_mask_input=[1]; orig_im_size float [H, W]. "
    "masks are logits at HxW, foreground above mask_threshold; [:, 0] is the single-mask answer, "
    "[:, 1:] the three candidates, ranked by iou_predictions."
)


def probe_image(path: str | Path | None) -> tuple[np.ndarray, str]:
    """The image parity is measured on: the user's, else a generated one (said so)."""
    from samexp.data.base import read_image_rgb

    if path is not None:
        return read_image_rgb(Path(path), orient=True), str(path)
    rng = np.random.default_rng(0)  # structure (a disc on a gradient) plus noise, 480×640
    yy, xx = np.mgrid[0:480, 0:640]
    disc = ((yy - 240) ** 2 + (xx - 320) ** 2 < 120**2)[..., None]
    base = np.stack([xx / 640, yy / 480, np.full_like(xx, 0.5, dtype=float)], -1) * 200
    image = base + disc * 55 + rng.normal(0, 8, base.shape)
    return np.clip(image, 0, 255).astype(np.uint8), "a generated 640×480 image (give image=)"


def write_onnx(
    folder: Path,
    base: BaseModel,
    adapter: Adapter,
    meta: dict,
    source: str | None,
    image: str | None = None,
    atol: float = 1e-3,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Export, check with onnxruntime, write the manifest and `parity.json`; the folder appears
    only when the check passed (a model the graphs do not reproduce is never left looking done)."""
    import onnxruntime

    sam = base.sam.cpu().eval()
    adapter.merge(sam)  # folds what folds; AdaptFormer's bottlenecks stay modules, and export so
    if meta.get("class_prompts"):
        log.warning("the learned class prompts are not part of the ONNX graphs (they take "
                    "prompts); format=pth exports them beside the model")  # fmt: skip
    if image is None and run_id is not None:
        image = test_image(run_id, tracking_uri)
    photo, shown = probe_image(image)
    with staged_folder(folder) as stage:
        started = time.perf_counter()
        levels = export_graphs(sam, stage)
        exported_s = time.perf_counter() - started
        about = {"arch": base.arch, "build_kwargs": base.build_kwargs, "adapter": meta["adapter"],
                 "base_weights_id": base.weights_id, "source": source}  # fmt: skip
        write_manifest(stage, manifest_of(sam, levels, OPSET, **about))  # what the check reads
        report = compare(sam, OnnxModel(stage), photo)
        report.update(image=shown, atol=atol, opset=OPSET, onnxruntime=onnxruntime.__version__,
                      torch=torch.__version__, export_s=round(exported_s, 2))  # fmt: skip
        report["passed"] = report["max_logits"] <= atol and report["max_iou"] <= atol
        (stage / PARITY_FILE).write_text(json.dumps(report, indent=2))
        summary = {k: report[k] for k in ("image", "max_features", "max_logits", "max_iou", "atol",
                                          "passed", "onnxruntime")}  # fmt: skip
        write_manifest(stage, manifest_of(sam, levels, OPSET, **about, parity=summary))
        log.info("%s", parity_table(report))
        if not report["passed"]:
            raise SamexpError(
                f"the ONNX graphs do not reproduce the PyTorch model within atol={atol} "
                f"(logits {report['max_logits']:.2e}, IoU {report['max_iou']:.2e}); nothing was "
                f"written to {folder}. Raise atol= to accept it"
            )
    sizes = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    log.info("wrote %s (%s, %s merged, opset %d, %.1f MB): %s, %s, %s, %s; predict with "
             "python -m samexp.predict backend=onnx onnx=%s", folder, base.arch, adapter.label(),
             OPSET, sizes, ENCODER_FILE, DECODER_FILE, MANIFEST_FILE, PARITY_FILE, folder)  # fmt: skip
    return folder


def parity_table(report: dict[str, Any]) -> str:
    """The check as a table the log shows (largest absolute differences)."""
    lines = [f"onnxruntime {report['onnxruntime']} vs PyTorch {report['torch']} on "
             f"{report['image']}, opset {report['opset']}:",
             f"  {'prompts':<20} {'low-res logits':>14} {'logits':>10} {'IoU':>10} {'mask px differ':>16}"]  # fmt: skip
    for name, case in report["cases"].items():
        lines.append(f"  {name:<20} {case['low_res_logits']:>14.2e} {case['logits']:>10.2e} "
                     f"{case['iou']:>10.2e} {case['mask_pixels_differ']:>7} of {case['mask_pixels']}")  # fmt: skip
    levels = ", ".join(f"{k} {v:.2e}" for k, v in report["features"].items())
    lines.append(
        f"  features: {levels}; the decoder's own full-size masks {report['graph_masks']:.2e}"
    )
    verdict = "within" if report["passed"] else "OUTSIDE"
    lines.append(f"  {verdict} atol={report['atol']} (largest: logits {report['max_logits']:.2e}, "
                 f"IoU {report['max_iou']:.2e})")  # fmt: skip
    return "\n".join(lines)
