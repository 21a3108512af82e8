"""Get a fine-tuned SAM back: adapter weights from an MLflow run (or a file), rebuilt on the base
model they were trained on. Prediction and export both start here."""

from __future__ import annotations

import logging
from pathlib import Path

from samexp.adapters.base import Adapter
from samexp.adapters.io import load_adapter, read_adapter_meta
from samexp.errors import SamexpError
from samexp.models.build import BaseModel, build_official, build_tiny
from samexp.models.checkpoints import default_cache_dir

log = logging.getLogger(__name__)

WEIGHTS_ARTIFACT = "weights/adapter.safetensors"


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
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException as e:
        raise SamexpError(
            f"run_id={run_id} is not a run in {tracking_uri} ({e.message.splitlines()[0]})"
        ) from None
    # run artifacts never change: one copy per run in the cache, not a temp folder per call
    folder = default_cache_dir() / "runs" / run_id
    if (folder / WEIGHTS_ARTIFACT).is_file():
        return folder / WEIGHTS_ARTIFACT
    folder.mkdir(parents=True, exist_ok=True)
    try:
        local = client.download_artifacts(run_id, WEIGHTS_ARTIFACT, str(folder))
    except (MlflowException, OSError) as e:
        raise SamexpError(
            f"run {run_id} has no {WEIGHTS_ARTIFACT} artifact (was it run with tracking.log_weights=false, "
            f"or did it fail before saving?): {e}"
        ) from None
    return Path(local)


def build_base(meta: dict, checkpoint: str | None = None, cache_dir: str | None = None,
               mirror: str | None = None, download: bool = True) -> BaseModel:  # fmt: skip
    """The base model the adapter's metadata names, at the encoder size it was trained at (tiny and
    random bases are rebuilt from their seed)."""
    base = meta["base"]
    kwargs = dict(base.get("build_kwargs") or {})
    if base["arch"] == "tiny":
        return build_tiny(**kwargs)
    encoder_size = kwargs.get("encoder_size")  # absent in files saved before it existed: native
    if base["weights_id"].startswith("random:"):
        return build_official(
            arch=base["arch"],
            pretrained=False,
            seed=kwargs.get("seed", 0),
            encoder_size=encoder_size,
        )
    return build_official(
        arch=base["arch"],
        checkpoint=checkpoint,
        cache_dir=cache_dir,
        mirror=mirror,
        download=download,
        encoder_size=encoder_size,
    )


def load_finetuned(
    run_id: str | None = None,
    weights: str | None = None,
    tracking_uri: str = "sqlite:///mlruns/mlflow.db",
    checkpoint: str | None = None,
    cache_dir: str | None = None,
    mirror: str | None = None,
    download: bool = True,
) -> tuple[BaseModel, Adapter, dict]:
    """(base model with the adapter applied and loaded, the adapter, the weights' metadata)."""
    path = resolve_weights(run_id, weights, tracking_uri)
    meta = read_adapter_meta(path)
    base = build_base(meta, checkpoint, cache_dir, mirror, download)
    adapter = load_adapter(path, base)
    log.info("loaded %s adapter onto %s from %s", adapter.label(), base.arch, path)
    return base, adapter, meta
