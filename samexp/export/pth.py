"""`python -m samexp.export format=pth` (the default): the fine-tuned model as a plain
checkpoint of its family, which the family's own package loads unchanged (the family says how:
`ModelFamily.stock_checkpoint`, `how_to_load`): `segment_anything.sam_model_registry[<arch>]
(checkpoint=out)`, so `SamPredictor` and `SamAutomaticMaskGenerator` work on it directly; a
MobileSAM (`vit_t`) in stock `mobile_sam.sam_model_registry["vit_t"](checkpoint=out)`, followed by
`.eval()` as MobileSAM's README does (its builder computes TinyViT's attention-bias table before it
loads the weights, and entering eval mode again rebuilds it from them); a SAM 2.1 in stock
`sam2.build_sam.build_sam2(<its config>, out)`, so `SAM2ImagePredictor` works on it.

A model trained with `model.encoder_size` (its encoder at, say, 512 px) is written as trained, not
refused and not stretched back to 1024 px (that would be a model nobody evaluated): its position
tensors have the smaller shapes, which the registry's 1024 px SAM refuses with a size mismatch.
The JSON records the size, and the log gives the lines that load it: build the stock model, then
`samexp.models.resolution.resize_encoder(sam, size)`, then `sam.load_state_dict(...)`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from samexp.adapters.base import Adapter
from samexp.config.atomic import atomic_path
from samexp.config.errors import WeightsWriteError
from samexp.models.build import BaseModel
from samexp.models.family import family_of
from samexp.prompts.class_tokens import MODULE as CLASS_PROMPTS

log = logging.getLogger("samexp.export")


def write_pth(
    path: Path, base: BaseModel, adapter: Adapter, meta: dict, source: str | None
) -> Path:
    """The adapted model at `path` as its family's stock checkpoint, its description beside it
    (`path` with .json), learned class prompts in their own file."""
    state = adapter.plain_state_dict(base.sam)
    # learned class prompts are no part of a stock SAM: they go beside it, with their classes
    learned = {k: state.pop(k) for k in [k for k in state if k.startswith(f"{CLASS_PROMPTS}.")]}
    stock = family_of(base.sam).stock_checkpoint(state)
    _write(path, state, lambda tmp: _torch_save(stock, tmp))
    if learned:
        classes = meta["class_prompts"]["classes"]
        tokens = {"tokens": learned[f"{CLASS_PROMPTS}.tokens"].contiguous()}
        _write(class_prompts_file(path), tokens, lambda tmp: save_file(
            tokens, str(tmp), metadata={"classes": json.dumps(classes)}))  # fmt: skip
        log.info("wrote %s: the %d classes' learned prompt tokens (%s); decode them as "
                 "samexp.predict.classes.predict_classes does", class_prompts_file(path),
                 len(classes), ", ".join(classes))  # fmt: skip
    # how to rebuild it: the registry name for official SAMs, constructor arguments for `tiny`, and
    # the encoder input size when it is not native
    info = {"arch": base.arch, "build_kwargs": base.build_kwargs, "adapter": meta["adapter"],
            "base_weights_id": base.weights_id, "source": source,
            "img_size": base.img_size,
            **({"class_prompts": meta["class_prompts"]} if learned else {})}  # fmt: skip
    _write(path.with_suffix(".json"), {}, lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
    size = base.build_kwargs.get("encoder_size")
    if size is not None:
        log.warning(
            "%s is SAM %s with its image encoder at %d px (model.encoder_size=%d): a SAM built at "
            "the native size refuses it (position embedding shapes); load it as shown next",
            path, base.arch, size, size,
        )  # fmt: skip
    log.info("wrote %s (%s, %s merged, %.1f MB); load it with %s", path, base.arch,
             adapter.label(), path.stat().st_size / 1e6, how_to_load(base, path))  # fmt: skip
    return path


def _torch_save(state: object, path: Path) -> None:
    with open(path, "wb") as f:  # opened here: a path torch cannot open is OSError, not its C++
        torch.save(state, f)


def _write(dest: Path, tensors: dict[str, torch.Tensor], write: Callable[[Path], object]) -> None:
    """`write` into a temporary file renamed onto `dest`: no partial file is left, and a path that
    cannot be written (under a file, read-only, a full disk) is one line naming it."""
    try:
        with atomic_path(dest) as tmp:
            write(tmp)
    except (OSError, RuntimeError, SafetensorError) as e:  # torch.save: RuntimeError mid-write
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        raise WeightsWriteError(dest, needed, e) from None


def class_prompts_file(path: Path) -> Path:
    return path.with_name(f"{path.stem}.class_prompts.safetensors")


def how_to_load(base: BaseModel, path: Path) -> str:
    """The Python that rebuilds the exported model: the family's stock package wherever it can."""
    return family_of(base.sam).how_to_load(base.arch, base.build_kwargs, path)
