"""A finished run's model as an MLflow model (`model` under the run), optionally registered in the
Model Registry: exported to ONNX first (parity checked), so serving runs on onnxruntime for every
family and adapter that exports. `python -m samexp.export register=<name>` and a run's
`tracking.log_model` / `tracking.register` both come here."""

from __future__ import annotations

import base64
import logging
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samexp.export.onnx import write_onnx
from samexp.predict.serving import onnx_handler
from samexp.tracking.finetuned import load_finetuned
from samexp.tracking.names import MODEL_ERROR
from samexp.tracking.registry import register, serve_lines
from samexp.tracking.store import client

log = logging.getLogger("samexp.export")


def example_rows() -> list[dict[str, Any]]:
    """The logged input example: a small PNG (a bright disc on grey) with a box around the disc
    and a foreground point on it (every column filled: the signature learns their types), then
    the box alone (points, labels and multimask are optional)."""
    image = np.full((48, 64, 3), 90, np.uint8)
    cv2.circle(image, (32, 24), 12, (230, 200, 60), -1)
    png = base64.b64encode(cv2.imencode(".png", image[..., ::-1])[1].tobytes()).decode("ascii")
    return [{"image": png, "box": [18.0, 10.0, 46.0, 38.0], "points": [[32.0, 24.0]],
             "labels": [1], "multimask": False},
            {"image": png, "box": [18.0, 10.0, 46.0, 38.0], "points": None, "labels": None,
             "multimask": None}]  # fmt: skip


def requirements() -> list[str]:
    """What loading the model needs: samexp itself (the handler, by reference) and onnxruntime."""
    return [f"{name}=={metadata.version(name)}" for name in ("samexp", "onnxruntime")]


def ship(
    run_id: str,
    tracking_uri: str,
    name: str | None = None,
    weights: str | None = None,
    checkpoint: str | None = None,
    atol: float = 1e-3,
    keep: Path | None = None,
) -> int | None:
    """Export run `run_id` to ONNX (`weights`: its adapter file when it is on this machine, else
    the run's), log the MLflow model to the run, and register it under `name` when given
    (returns the version). `keep`: a folder to leave the ONNX export in too."""
    # imported here: importing MLflow's pyfunc prints its "add type hints" warning, which every
    # run and every format=pth export would show otherwise
    from samexp.tracking.pyfunc import log_model

    source = {"weights": weights} if weights else {"run_id": run_id}
    base, adapter, meta = load_finetuned(**source, tracking_uri=tracking_uri, checkpoint=checkpoint)
    with tempfile.TemporaryDirectory(prefix="samexp-model-") as tmp:
        folder = write_onnx(keep or Path(tmp) / "onnx", base, adapter, meta, run_id, None, atol,
                            run_id=run_id, tracking_uri=tracking_uri)  # fmt: skip
        example = example_rows()
        refused = {**example[1], "box": None}  # no prompt: the answer's `error` is text
        uri = log_model(run_id, folder, onnx_handler, example, refused, tracking_uri,
                        requirements())  # fmt: skip
    if name is None:
        log.info("load it with mlflow.pyfunc.load_model(%r) (tracking URI %s)", uri, tracking_uri)
        return None
    version = register(name, uri, run_id, tracking_uri)
    log.info("registered %s version %d (run %s); load it with mlflow.pyfunc.load_model("
             "'models:/%s/%d'), serve it with: %s", name, version, run_id, name, version,
             serve_lines(name, version, tracking_uri))  # fmt: skip
    return version


def ship_trained(weights: Path, run_id: str, tracking_uri: str, name: str | None) -> None:
    """At the end of a run: its model logged (and registered). A failure here is a warning and
    the run tag `samexp.model_error`, never a failed run: the weights are saved and logged
    already, and `python -m samexp.export register=<name> run_id=<id>` does it again later."""
    try:
        ship(run_id, tracking_uri, name, weights=str(weights))
    except Exception as e:  # noqa: BLE001 - training succeeded; its run must say so
        why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        log.warning("the run's MLflow model was not %s (%s); the weights are saved: run python "
                    "-m samexp.export register=%s run_id=%s to try again",
                    "registered" if name else "logged", why, name or "<name>", run_id)  # fmt: skip
        try:
            client(tracking_uri).set_tag(run_id, MODEL_ERROR, why[:5000])
        except Exception:  # noqa: BLE001 - the warning above said it
            log.debug("could not tag run %s", run_id, exc_info=True)
        return
