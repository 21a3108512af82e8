"""Save only the trained tensors, with what is needed to put them back on the same base model.

The safetensors file carries its description in its metadata (and a JSON twin beside it for
humans): adapter spec, base architecture and base-weights id. Reloading = build base, inject, load;
the file is untrusted input, so its metadata is checked first (`meta.py`) and every tensor must fit
the parameter it loads into.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from samexp import __version__
from samexp.adapters.base import Adapter, trainable_parameters
from samexp.adapters.meta import META_KEY, adapter_from_spec, parse_meta
from samexp.config.atomic import atomic_path
from samexp.config.errors import SamexpError, UntrustedFileError, WeightsWriteError
from samexp.models.build import BaseModel
from samexp.models.seam import prompt_dim
from samexp.prompts.class_tokens import MODULE as CLASS_PROMPTS
from samexp.prompts.class_tokens import attach_class_prompts, class_prompts_of

__all__ = ["META_KEY", "load_adapter", "read_adapter_meta", "save_adapter"]


def save_adapter(path: str | Path, base: BaseModel, adapter: Adapter) -> Path:
    """Write the trained tensors and their description; each file appears whole or not at all.

    Non-finite weights are refused (a NaN result must never look like one), and a write that
    fails (disk full, file-size limit) leaves no partial file and raises WeightsWriteError with
    the size that was needed, so the caller can keep the weights elsewhere.
    """
    path = Path(path)
    tensors = {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(base.sam).items()}
    broken = [n for n, t in tensors.items() if not torch.isfinite(t).all()]
    if broken:
        raise SamexpError(
            f"refusing to save non-finite weights to {path}: {len(broken)} tensors hold NaN or "
            f"inf (e.g. {broken[0]})"
        )
    meta = {
        "samexp_version": __version__,
        "adapter": adapter.spec(),
        "base": {
            "_target_": base.target,  # the registered builder that rebuilds it (samexp.config.options)
            "arch": base.arch,
            "weights_id": base.weights_id,
            "build_kwargs": base.build_kwargs,
            "img_size": base.img_size,  # the encoder input size the tensors were trained at
        },
        "tensors": len(tensors),
    }
    learned = class_prompts_of(base.sam)
    if learned is not None:  # the class list travels with the tokens, or they mean nothing
        meta["class_prompts"] = learned.spec()
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
    except (OSError, SafetensorError) as e:
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        raise WeightsWriteError(path, needed, e) from None
    return path


def read_adapter_meta(path: str | Path) -> dict[str, Any]:
    """The file's metadata, checked against its schema (see `meta.py`) and normalised."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SamexpError(f"adapter weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as e:
        raise SamexpError(f"{path} is not a readable safetensors file: {e}") from e
    if meta is None:
        raise SamexpError(f"{path} has no samexp metadata: was it saved by samexp?")
    return parse_meta(meta, path)


def load_adapter(path: str | Path, base: BaseModel) -> Adapter:
    """Rebuild the saved adapter on `base` and load its tensors; refuses a different base model or
    encoder input size."""
    meta = read_adapter_meta(path)
    saved = meta["base"]
    if (saved["arch"], saved["weights_id"]) != (base.arch, base.weights_id):
        raise SamexpError(
            f"{path} was trained on base model {saved['arch']} ({saved['weights_id']}), "
            f"but the model built now is {base.arch} ({base.weights_id}). Build the same base model "
            f"(model={saved['arch']}, same checkpoint/seed) to load these weights."
        )
    # Same weights at another encoder size would load without a shape error for LoRA and decoder
    # adapters, and silently predict worse; absent in files saved before the size could change.
    trained_at = saved.get("img_size")
    if trained_at is not None and trained_at != base.img_size:
        raise SamexpError(
            f"{path} was trained with the image encoder at {trained_at} px, but the model built now "
            f"runs it at {base.img_size} px. Build the base with model.encoder_size={trained_at} "
            "to load these weights (load_finetuned, predict and export do so from the file)."
        )
    adapter = adapter_from_spec(meta["adapter"], path)
    try:
        adapter.apply(base.sam)
    except SamexpError as e:  # e.g. a target_modules regex that matches nothing in this model
        raise UntrustedFileError(f"{path}: metadata {e}") from None
    tensors = _read_tensors(path)  # as large as the file, no more: read before building from it
    if "class_prompts" in meta:
        spec = meta["class_prompts"]
        # the prompts are built from the metadata's counts: held to the tensor the file really
        # carries first, so a forged count (10**9 tokens) is refused, never allocated
        held = tensors.get(f"{CLASS_PROMPTS}.tokens")
        wanted = (len(spec["classes"]), spec["tokens"], prompt_dim(base.sam))
        if held is None or tuple(held.shape) != wanted:
            found = "no such tensor" if held is None else _described(held)
            raise UntrustedFileError(
                f"{path}: metadata key class_prompts says {wanted[0]} classes x {wanted[1]} "
                f"tokens x {wanted[2]}, the file's {CLASS_PROMPTS}.tokens is {found}"
            )
        attach_class_prompts(base.sam, spec["classes"], spec["tokens"])
    if meta["tensors"] is not None and meta["tensors"] != len(tensors):
        raise UntrustedFileError(
            f"{path}: metadata key tensors: says {meta['tensors']}, the file holds {len(tensors)}"
        )
    expected = trainable_parameters(base.sam)
    if set(tensors) != set(expected):
        missing, extra = set(expected) - set(tensors), set(tensors) - set(expected)
        raise SamexpError(
            f"{path} does not match adapter {adapter.label()}: "
            f"missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]}"
        )
    for name, value in sorted(tensors.items()):
        want = expected[name]
        if value.shape != want.shape or value.dtype != want.dtype:
            raise UntrustedFileError(
                f"{path}: tensor {name}: {_described(value)} does not fit the model's "
                f"{_described(want)} parameter"
            )
    with torch.no_grad():
        for name, value in tensors.items():
            expected[name].copy_(value)
    # enter the mode again: a module that caches a tensor derived from its weights per mode
    # (MobileSAM's attention-bias table, under adapter=full) rebuilds it from the loaded ones
    base.sam.train(base.sam.training)
    return adapter


def _read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UntrustedFileError(f"{path} is not a readable safetensors file: {e}") from None


def _described(t: torch.Tensor) -> str:
    return f"{list(t.shape)} {str(t.dtype).removeprefix('torch.')}"
