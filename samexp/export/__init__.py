"""`python -m samexp.export run_id=<id> [format=pth|onnx] out=...`: a fine-tuned model in the
form the tools users already have take, each format one module: `pth` (the family's own stock
checkpoint, `samexp.export.pth`) and `onnx` (SAM's encoder / decoder graph pair, checked against
PyTorch with onnxruntime, `samexp.export.onnx`). `register=<name>` logs the run's model as an
MLflow model and registers it (`samexp.export.mlflow_model`); `best_of=<study, sweep or
experiment>` picks the run by `metric`."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from samexp.config.checks import POSITIVE, because
from samexp.config.cli import hydra_main
from samexp.config.errors import SamexpError
from samexp.config.options import schema, settings
from samexp.config.paths import default_tracking_uri
from samexp.export.mlflow_model import ship
from samexp.export.onnx import check_export_folder, write_onnx
from samexp.export.pth import write_pth
from samexp.tracking.finetuned import load_finetuned
from samexp.tracking.registry import best_run

log = logging.getLogger("samexp.export")


class ExportFormat(str, Enum):
    pth = "pth"  # the family's stock checkpoint: sam_model_registry / build_sam2 load it
    onnx = "onnx"  # a folder: encoder.onnx, decoder.onnx, samexp_onnx.json, parity.json


DEFAULT_OUT = {ExportFormat.pth: "sam_finetuned.pth", ExportFormat.onnx: "sam_finetuned_onnx"}


@settings("")
def export(
    run_id: str | None = None,  # an MLflow run that logged weights/adapter.safetensors
    weights: str | None = None,  # or a local adapter.safetensors
    format: ExportFormat = ExportFormat.pth,  # noqa: A002 (the user's word for it)
    out: str | None = None,  # default: sam_finetuned.pth / sam_finetuned_onnx (a folder)
    tracking_uri: str | None = None,  # where runs go; default: the store under the paths root
    checkpoint: str | None = None,  # the base model's checkpoint, if not in the cache
    # onnx: the photo PyTorch and onnxruntime are compared on (default: one of the run's test
    # images when this machine has it, else a generated image)
    image: str | None = None,
    # onnx: the largest difference of logits or IoU accepted; above it nothing is written
    atol: Annotated[float, because(POSITIVE, "logit units")] = 1e-3,
    # log the run's model as an MLflow model (ONNX inside) and register it under this name in
    # the Model Registry; `out` (a folder), if given, keeps the ONNX export too
    register: str | None = None,
    # or instead of run_id: the best finished run of a study, a sweep's parent run (name or id)
    # or an experiment, by `metric` (higher is better)
    best_of: str | None = None,
    metric: str = "final/test/iou",  # what a run logs after training (its objective)
) -> Path | int:
    """Write the fine-tuned model to `out`, or register it (returns the version) (the command's
    arguments: its signature is the schema `python -m samexp.export` composes)."""
    if best_of is not None:
        if run_id is not None or weights is not None:
            raise SamexpError(f"best_of={best_of} chooses the run: give it without run_id= or "
                              "weights=")  # fmt: skip
        run_id = best_run(tracking_uri or default_tracking_uri(), best_of, metric).run_id
    if register is not None:
        if run_id is None:
            raise SamexpError(f"register={register} logs the model to a run: give run_id=<id> or "
                              "best_of=<study, sweep or experiment>, not weights=")  # fmt: skip
        if image is not None:
            raise SamexpError("image= is for format=onnx without register=: the registered "
                              "model's parity is checked on one of the run's test images")  # fmt: skip
        if out is not None:  # the copy of the export kept beside the registered model
            _check_out(Path(out), ExportFormat.onnx)
        return ship(run_id, tracking_uri or default_tracking_uri(), register,
                    checkpoint=checkpoint, atol=atol, keep=Path(out) if out else None)  # fmt: skip
    kind = ExportFormat(format)
    path = Path(out or DEFAULT_OUT[kind])
    _check_out(path, kind)
    if image is not None and not Path(image).is_file():
        raise SamexpError(f"image={image}: no such file")
    base, adapter, meta = load_finetuned(run_id, weights, tracking_uri, checkpoint)
    if kind is ExportFormat.onnx:
        return write_onnx(path, base, adapter, meta, run_id or weights, image, atol,
                          run_id=run_id, tracking_uri=tracking_uri)  # fmt: skip
    return write_pth(path, base, adapter, meta, run_id or weights)


def _check_out(path: Path, kind: ExportFormat) -> None:
    """Before the model is built: `out` names a file (pth) or a folder (onnx), where one can be
    made."""
    if kind is ExportFormat.pth and path.is_dir():
        raise SamexpError(f"out={path} is a folder: give the file to write, e.g. "
                          f"out={path / 'sam_finetuned.pth'}")  # fmt: skip
    if kind is ExportFormat.onnx:
        check_export_folder(path)
    nearest = next(p for p in path.parents if p.exists())  # "." or "/" at worst
    if not nearest.is_dir():
        raise SamexpError(f"out={path}: {nearest} is a file, not a folder")


ExportConfig = schema(export)
ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@hydra_main(config_path=None, config_name="export_schema")
def main(cfg: DictConfig) -> None:
    try:
        export(**OmegaConf.to_container(cfg))
    except SamexpError as e:
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    main()
