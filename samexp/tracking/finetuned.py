"""Get a fine-tuned SAM back: adapter weights from an MLflow run (or a file), rebuilt on the base
model they were trained on. Prediction and export both start here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

from samexp.adapters.base import Adapter
from samexp.adapters.io import load_adapter, read_adapter_meta
from samexp.adapters.meta import check_base
from samexp.config.errors import CheckpointError, SamexpError, UntrustedFileError
from samexp.config.options import by_target
from samexp.config.paths import default_tracking_uri
from samexp.models.build import BaseModel
from samexp.tracking.store import client, run_file

log = logging.getLogger(__name__)

WEIGHTS_ARTIFACT = "weights/adapter.safetensors"
T = TypeVar("T")


def resolve_weights(run_id: str | None, weights: str | None, tracking_uri: str) -> Path:
    """A local adapter file: `weights` as given, or the one logged by MLflow run `run_id`."""
    if (run_id is None) == (weights is None):
        raise SamexpError(
            "give exactly one of run_id=<mlflow run id> or weights=/path/to/adapter.safetensors"
        )
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SamexpError(f"weights={weights}: no such file")
        return path
    return run_file(
        run_id,
        WEIGHTS_ARTIFACT,
        tracking_uri,
        missing=("was it run with tracking.log_weights=false, or did it fail before saving?"),
    )


def build_base(meta: dict, checkpoint: str | None = None, cache_dir: str | None = None,
               mirror: str | None = None, download: bool = True,
               source: str | Path = "adapter metadata") -> BaseModel:  # fmt: skip
    """The base model the adapter's metadata names, rebuilt by its registered builder from the
    arguments recorded (a random base from its seed, at the encoder size it was trained at). The
    description is checked first (`source` names the file in errors): it comes from a file, so it
    picks neither code nor where the weights come from: that is these arguments."""
    base = check_base(meta.get("base") if isinstance(meta, dict) else None, source)
    builder = by_target("model", base["_target_"])
    reader = {"checkpoint": checkpoint, "cache_dir": cache_dir, "mirror": mirror,
              "download": download}  # fmt: skip
    accepted = {k: v for k, v in reader.items() if k in builder.arguments()}
    try:
        return builder.obj(**base["build_kwargs"], **accepted)
    except CheckpointError:
        raise  # about the reader's weights (offline, a wrong file), not the adapter file
    except SamexpError as e:  # a value the builder refuses (an encoder size, ...)
        raise UntrustedFileError(f"{source}: metadata key base.build_kwargs: {e}") from None
    except (ArithmeticError, ValueError, RuntimeError, TypeError, AssertionError) as e:
        # typed but impossible sizes (a patch larger than the image, ...): the file's fault
        first = (str(e).strip().splitlines() or [""])[0]
        raise UntrustedFileError(
            f"{source}: metadata key base.build_kwargs: {builder.name} cannot be built from "
            f"{base['build_kwargs']} ({type(e).__name__}: {first})"
        ) from None


def load_finetuned(
    run_id: str | None = None,
    weights: str | None = None,
    tracking_uri: str | None = None,  # default: the store under $SAMEXP_HOME (samexp.config.paths)
    checkpoint: str | None = None,
    cache_dir: str | None = None,
    mirror: str | None = None,
    download: bool = True,
) -> tuple[BaseModel, Adapter, dict]:
    """(base model with the adapter applied and loaded, the adapter, the weights' metadata)."""
    path = resolve_weights(run_id, weights, tracking_uri or default_tracking_uri())
    meta = read_adapter_meta(path)
    base = build_base(meta, checkpoint, cache_dir, mirror, download, source=path)
    adapter = load_adapter(path, base)
    log.info("loaded %s adapter onto %s from %s", adapter.label(), base.arch, path)
    return base, adapter, meta


def test_image(run_id: str, tracking_uri: str | None = None) -> Path | None:
    """The first of run `run_id`'s test images, when this machine has it where the run read it
    (its `dataset.root` param joined with the logged test list); None otherwise. The paths come
    from the store: only an existing image file is returned, and it is only read as an image."""
    from samexp.data.splits import TEST_FILES

    tracking_uri = tracking_uri or default_tracking_uri()
    try:
        root = client(tracking_uri).get_run(run_id).data.params.get("dataset.root")
        listed = run_file(run_id, TEST_FILES, tracking_uri)
    except SamexpError:
        return None
    if not root:
        return None
    for line in listed.read_text().splitlines()[:1]:
        path = Path(root) / line
        if line and path.is_file():
            return path
    return None
