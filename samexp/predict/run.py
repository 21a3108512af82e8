"""The prediction pipeline: check inputs -> build the fine-tuned model once -> each image through the
segment_anything API over samexp's one image pipeline -> files under `out/` and a
`predictions.json` index."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from samexp.config.devices import resolve_device
from samexp.config.errors import DatasetError, SamexpError
from samexp.config.schema import AttentionKernel, Device, refuse_outside_ranges
from samexp.data.base import IMAGE_EXTENSIONS, read_image_rgb
from samexp.data.files import require_complete
from samexp.data.orientation import displayed_shape, image_header
from samexp.data.pairing import index_images
from samexp.models.attention import choose_kernel, set_attention
from samexp.models.onnx.manifest import read_manifest
from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.auto import generate, mask_generator, write_auto
from samexp.predict.classes import learned_classes, predict_classes, write_class_list, write_classes
from samexp.predict.config import Backend, PredictConfig, PredictMode
from samexp.predict.onnx_predictor import OnnxPredictor
from samexp.predict.outputs import check_palette, write_json
from samexp.predict.predictor import Predictor
from samexp.predict.prompt_file import PromptFile, load_prompt_file
from samexp.predict.prompted import predict_prompts, write_prompted
from samexp.predict.prompts import Prompts, fit_images, parse_prompts
from samexp.tracking.finetuned import build_base, load_finetuned

log = logging.getLogger(__name__)


def list_images(image: str | None, images: str | None) -> list[Path]:
    """`image=` alone, or the image files of the folder `images=` sorted by name.

    Every file is checked complete here, so a truncated photo stops the run before the model is
    built rather than after the images before it were predicted.
    """
    if (image is None) == (images is None):
        raise SamexpError("give exactly one of image=path/to/photo.jpg or images=path/to/folder")
    if image is not None:
        if not Path(image).is_file():
            raise DatasetError(f"image={image}: no such file")
        paths = [Path(image)]
    else:
        paths = sorted(index_images(Path(images), "image").files.values())
    if not paths:
        raise DatasetError(
            f"images={images} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    for path in paths:
        require_complete(path)
    return paths


def load_model(cfg: PredictConfig, device: torch.device) -> tuple[nn.Module, dict]:
    """The fine-tuned SAM on `device` (LoRA merged into its weights unless merge=false)."""
    base, adapter, meta = load_finetuned(cfg.run_id, cfg.weights, cfg.tracking_uri, cfg.checkpoint)
    if cfg.merge:
        adapter.merge(base.sam)
    return ready(base.sam, cfg.attention, device), meta


def load_predictor(cfg: PredictConfig, device: torch.device) -> tuple[Predictor, dict]:
    """The predictor every mode's step runs, and what the index records of the model: the
    PyTorch model's (`load_model`), or the export's graphs through onnxruntime (its manifest)."""
    if Backend(cfg.backend) is Backend.torch:
        sam, meta = load_model(cfg, device)
        return Predictor(sam), meta
    onnx = OnnxModel(cfg.onnx)
    found = onnx.manifest
    base = {"arch": found.get("arch"), "weights_id": found.get("base_weights_id"),
            "build_kwargs": found.get("build_kwargs")}  # fmt: skip
    log.info("running the ONNX export %s (%s) through onnxruntime", onnx.folder, base["arch"])
    return OnnxPredictor(onnx), {"adapter": found.get("adapter"), "base": base,
                                 "exported_from": found.get("source")}  # fmt: skip


def ready(sam: nn.Module, attention: str | AttentionKernel, device: torch.device) -> nn.Module:
    """On `device`, in eval mode, with the `attention` kernel (auto: the fastest exact one)."""
    kernel = choose_kernel(sam, AttentionKernel(attention).value, device, "attention")
    set_attention(sam, kernel)
    return sam.to(device).eval()


def _check(cfg: PredictConfig) -> PromptFile | Prompts | None:
    """Everything that can be wrong before a model is built; the prompts in prompt mode (one
    set for every image, or a file of them per image)."""
    refuse_outside_ranges(cfg)  # every declared range: overlay.alpha, auto.*, ...
    check_palette(cfg.overlay.colors)
    p = cfg.prompt
    mode = PredictMode(cfg.mode)
    _check_backend(cfg, mode)
    given = any(v is not None for v in (p.box, p.boxes, p.points, p.labels))
    if cfg.prompts is not None:
        if mode is not PredictMode.prompt:
            raise SamexpError(f"prompts={cfg.prompts} needs mode=prompt")
        if given:
            raise SamexpError(f"give prompts={cfg.prompts} or prompt.*, not both")
        return load_prompt_file(cfg.prompts)  # its entries' problems: said with their bounds
    if mode is PredictMode.prompt:
        return parse_prompts(p.box, p.boxes, p.points, p.labels)
    if cfg.compare:
        raise SamexpError("compare=true needs mode=prompt (the comparison uses your prompts)")
    if given:
        log.warning("mode=%s needs no prompt; the prompt.* values are ignored", mode.value)
    return None


# what only the PyTorch model has, and the settings that build or tune it: with backend=onnx,
# fixed when the graphs were exported
NEEDS_TORCH = {
    PredictMode.auto: "the automatic mask generators run the PyTorch model",
    PredictMode.classes: "the learned class prompts are not in the ONNX graphs, which take "
    "prompts (format=pth exports them)",
}
NOT_APPLIED = {"attention": AttentionKernel.auto, "merge": True, "checkpoint": None,
               "tracking_uri": None}  # fmt: skip


def _check_backend(cfg: PredictConfig, mode: PredictMode) -> None:
    """backend=onnx runs an export folder's graphs (checked here, before any image is read):
    no run or weights file is read, and what needs the PyTorch model is refused."""
    if Backend(cfg.backend) is Backend.torch:
        if cfg.onnx is not None:
            raise SamexpError(f"onnx={cfg.onnx} needs backend=onnx (backend=torch rebuilds the "
                              "model from run_id= or weights=)")  # fmt: skip
        return
    if cfg.onnx is None:
        raise SamexpError("backend=onnx needs onnx=<folder> (python -m samexp.export format=onnx "
                          "writes one)")  # fmt: skip
    given = [f"{k}={v}" for k in ("run_id", "weights") if (v := getattr(cfg, k)) is not None]
    if given:
        raise SamexpError(f"backend=onnx runs the graphs in onnx={cfg.onnx}, not {given[0]}: "
                          "drop one of them (backend=torch reads the run or weights)")  # fmt: skip
    if mode in NEEDS_TORCH:
        raise SamexpError(f"mode={mode.value} needs backend=torch: {NEEDS_TORCH[mode]}")
    if cfg.compare:
        raise SamexpError("compare=true needs backend=torch: the zero-shot side rebuilds the base "
                          "PyTorch model")  # fmt: skip
    shown = {k: getattr(cfg, k) for k, default in NOT_APPLIED.items() if getattr(cfg, k) != default}
    if Device(cfg.device) not in (Device.auto, Device.cpu):
        shown = {"device": cfg.device, **shown}
    # as typed on the command line: device=cuda, merge=false
    ignored = [f"{k}={str(v).lower() if isinstance(v, bool) else getattr(v, 'value', v)}"
               for k, v in shown.items()]  # fmt: skip
    if ignored:
        log.warning("backend=onnx: %s do%s not apply (onnxruntime runs the exported graphs on the "
                    "CPU; weights, merging and attention were fixed at export); ignored",
                    ", ".join(ignored), "es" if len(ignored) == 1 else "")  # fmt: skip
    read_manifest(cfg.onnx)  # not an export, or a manifest off its schema: one line, now


Step = Callable[[Path, np.ndarray], tuple[list[Path], list[float]]]


def _auto_step(cfg: PredictConfig, predictor: Predictor, out: Path, style: dict) -> Step:
    generator = mask_generator(predictor.model, cfg.auto, predictor)

    def step(path: Path, image: np.ndarray) -> tuple[list[Path], list[float]]:
        anns = generate(generator, image, cfg.auto.max_side)
        if not anns:
            log.warning("%s: no mask passed auto.pred_iou_thresh and auto.stability_score_thresh; "
                        "lower them to see more", path.name)  # fmt: skip
        return write_auto(out, path, image, anns, style), [a["predicted_iou"] for a in anns]

    return step


def _classes_step(predictor: Predictor, out: Path, style: dict) -> Step:
    classes = learned_classes(predictor).classes
    write_class_list(out, classes)

    def step(path: Path, image: np.ndarray) -> tuple[list[Path], list[float]]:
        ids, scores = predict_classes(predictor, image)
        files = write_classes(out, path, image, ids, scores, classes, style)
        return files, [float(scores[k - 1]) for k in np.unique(ids) if k]

    return step


def _prompt_step(cfg: PredictConfig, fitted: dict[Path, Prompts], predictor: Predictor,
                 meta: dict, out: Path, style: dict) -> Step:  # fmt: skip
    device = predictor.device
    zero_shot = Predictor(ready(build_base(meta, cfg.checkpoint).sam, cfg.attention, device)) if cfg.compare else None  # fmt: skip

    def step(path: Path, image: np.ndarray) -> tuple[list[Path], list[float]]:
        prompts = fitted.get(path)
        if prompts is None:  # said before the model was built (`_check_coverage`)
            return [], []
        pred = predict_prompts(predictor, image, prompts, cfg.multimask)
        base = predict_prompts(zero_shot, image, prompts, cfg.multimask) if zero_shot else None
        files, _ = write_prompted(out, path, image, prompts, pred, cfg.multimask, style, base)
        return files, pred.scores.ravel().tolist()

    return step


def _check_coverage(source: PromptFile, paths: list[Path]) -> None:
    """Say before predicting which images the file gives no prompt (they are skipped) and which
    entries name no image (a typo, another folder); refuse a file that names none of them."""
    missing = [p.name for p in paths if source.entry_for(p) is None]
    unused = source.unused(paths)
    if len(missing) == len(paths):
        raise SamexpError(
            f"prompts={source.path} names none of the {len(paths)} images (e.g. {paths[0].name}); "
            f"its entries are named like {unused[:3]}"
        )
    if missing:
        log.warning("%d of %d images have no prompt in %s and are skipped: %s", len(missing),
                    len(paths), source.path, ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))  # fmt: skip
    if unused:
        log.warning("%d entries of %s name no image given: %s", len(unused), source.path,
                    ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""))  # fmt: skip


def _fitted(
    source: PromptFile | Prompts | None, shapes: dict[Path, tuple[int, int]]
) -> dict[Path, Prompts] | None:
    """Every image's prompts fitted to its size, all problems (a whole prompts file's) refused in
    one message before the model is built: a bad entry never stops a folder halfway."""
    if isinstance(source, PromptFile):
        return source.fit(shapes)
    return None if source is None else fit_images(shapes, lambda _: source)


def predict(cfg: PredictConfig) -> dict[str, Any]:
    """Predict every image of `cfg`; returns the index also written to `<out>/predictions.json`."""
    if cfg.out is None:  # the command line fills it in (its run folder); a Python caller names it
        raise SamexpError("out= is needed: the folder to write the predictions to")
    source = _check(cfg)
    paths = list_images(cfg.image, cfg.images)
    if isinstance(source, PromptFile):
        _check_coverage(source, paths)
    shapes = {path: displayed_shape(*image_header(path)) for path in paths}  # headers only
    fitted = _fitted(source, shapes)
    torch_backend = Backend(cfg.backend) is Backend.torch  # onnxruntime runs on the CPU here
    device = resolve_device(Device(cfg.device), key="device") if torch_backend else torch.device("cpu")  # fmt: skip
    predictor, meta = load_predictor(cfg, device)
    geometry = predictor.geometry
    for path, shape in shapes.items():  # before anything is written: SAM's resize must leave
        geometry.check_fits(path.name, *shape)  # every side a pixel
    style = {"colors": [list(c) for c in cfg.overlay.colors], "alpha": cfg.overlay.alpha}
    out = Path(cfg.out)
    if PredictMode(cfg.mode) is PredictMode.classes:
        step = _classes_step(predictor, out, style)
    elif fitted is None:
        step = _auto_step(cfg, predictor, out, style)
    else:
        step = _prompt_step(cfg, fitted, predictor, meta, out, style)
    entries = []
    with logging_redirect_tqdm():
        for path in tqdm(paths, desc="predict", unit="image"):
            image = read_image_rgb(path, orient=True)
            files, scores = step(path, image)
            h, w = image.shape[:2]
            shown = " ".join(f"{s:.3f}" for s in scores[:8]) + (" ..." if len(scores) > 8 else "")
            log.info("%s (%d×%d): %d mask%s, scores %s -> %s", path.name, w, h, len(scores),
                     "" if len(scores) == 1 else "s",
                     shown or "-", out / f"{path.stem}*")  # fmt: skip
            entries.append({"image": str(path), "width": w, "height": h, "masks": len(scores),
                            "files": [str(f.relative_to(out)) for f in files]})  # fmt: skip
    source = {"run_id": cfg.run_id, "weights": cfg.weights, "onnx": cfg.onnx}
    if "exported_from" in meta:  # the run or weights file the graphs were exported from
        source["exported_from"] = meta["exported_from"]
    index = {"source": source, "backend": Backend(cfg.backend).value, "prompts": cfg.prompts,
             "adapter": meta["adapter"],
             "base": meta["base"], "mode": PredictMode(cfg.mode).value, "images": entries}  # fmt: skip
    write_json(out / "predictions.json", index)
    log.info("wrote predictions for %d images to %s (index: predictions.json)", len(entries), out)
    return index
