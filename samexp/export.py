"""`python -m samexp.export run_id=<id> out=ring_sam_vit_b.pth`: the fine-tuned model as a plain SAM
checkpoint that `segment_anything.sam_model_registry[<arch>](checkpoint=out)` loads unchanged, so
`SamPredictor` and `SamAutomaticMaskGenerator` work on it directly."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from samexp.errors import SamexpError
from samexp.finetuned import load_finetuned

log = logging.getLogger("samexp.export")


@dataclass
class ExportConfig:
    run_id: str | None = None
    weights: str | None = None  # a local adapter.safetensors instead of a run
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    checkpoint: str | None = None  # the base model's checkpoint, if not in the cache
    out: str = "sam_finetuned.pth"


ConfigStore.instance().store(name="export_schema", node=ExportConfig)


def export(run_id: str | None = None, weights: str | None = None, out: str = "sam_finetuned.pth",
           tracking_uri: str = "sqlite:///mlruns/mlflow.db", checkpoint: str | None = None) -> Path:  # fmt: skip
    base, adapter, meta = load_finetuned(run_id, weights, tracking_uri, checkpoint)
    state = adapter.plain_state_dict(base.sam)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    # how to rebuild it: the registry name for official SAMs; constructor arguments for `tiny`
    info = {"arch": base.arch, "build_kwargs": base.build_kwargs, "adapter": meta["adapter"],
            "base_weights_id": base.weights_id, "source": run_id or weights}  # fmt: skip
    path.with_suffix(".json").write_text(json.dumps(info, indent=2))
    how = (
        f"segment_anything.sam_model_registry[{base.arch!r}](checkpoint={str(path)!r})"
        if base.arch != "tiny"
        else f"samexp.models.build.tiny_sam(**build_kwargs minus seed from {path.with_suffix('.json').name}).load_state_dict(torch.load(...))"
    )
    log.info("wrote %s (%s, %s merged, %.1f MB); load it with %s",
             path, base.arch, adapter.label(), path.stat().st_size / 1e6, how)  # fmt: skip
    return path


@hydra.main(version_base="1.3", config_path=None, config_name="export_schema")
def main(cfg: DictConfig) -> None:
    try:
        export(cfg.run_id, cfg.weights, cfg.out, cfg.tracking_uri, cfg.checkpoint)
    except SamexpError as e:
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    main()
