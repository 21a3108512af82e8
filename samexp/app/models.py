"""The two models the demo compares, zero-shot SAM and the fine-tuned one, behind predict's
`Predictor`s (samexp's one image pipeline) whose image embeddings are kept per image: the encoder (>95% of SAM's compute) runs
once per image and model, so every further box, point or tab answers in decoder time.

When the adapter left the image encoder untouched (a decoder fine-tune), both models share one
encoder module and one embedding: one encoder pass per image for the pair.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from samexp.config.devices import resolve_device
from samexp.models.embedding_cache import EmbeddingCache
from samexp.models.family import family_of
from samexp.predict.predictor import Predictor
from samexp.predict.run import ready
from samexp.prompts.class_tokens import class_prompts_of
from samexp.tracking.finetuned import build_base, load_finetuned

log = logging.getLogger(__name__)


def digest(image: np.ndarray) -> str:
    """Identity of an image's pixels: the same photo uploaded twice is encoded once."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class CachedPredictor(Predictor):
    """predict's `Predictor` whose `set_image` restores a kept embedding instead of encoding again.

    Everything built on SamPredictor (prompts, SamAutomaticMaskGenerator, the class prompts)
    goes through `set_image`, so all of them share the cache: samexp's in-memory embedding cache,
    whose `misses` are the encoder passes. `last_encode_s` is 0 on a hit.
    """

    def __init__(self, sam: nn.Module, embeddings: EmbeddingCache) -> None:
        super().__init__(sam)
        self.embeddings = embeddings
        self.last_encode_s = 0.0

    def set_image(
        self, image: np.ndarray, image_format: str = "RGB", key: str | None = None
    ) -> None:
        """`key`: the image's `digest`, when the caller has it (hashing a photo takes milliseconds)."""
        h, w = image.shape[:2]
        self.geometry.check_fits("the image", h, w)  # every tab encodes here
        key = f"{key or digest(image)}:{image_format}"
        features = self.embeddings.get(key, device=self.device)
        if features is not None:
            self.hold(self.geometry.frame(h, w), features)  # the frame follows from its size
            self.last_encode_s = 0.0
            return
        start = time.perf_counter()
        super().set_image(image, image_format)
        synchronize(self.device)
        self.last_encode_s = time.perf_counter() - start
        self.embeddings.put(key, self.features)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a measured time is the work's and not its launch's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Pair:
    """What the page needs of one picked run or weights file."""

    source: str  # what was loaded, as the page shows it
    meta: dict  # the adapter file's description
    zero_shot: CachedPredictor
    finetuned: CachedPredictor
    shared_encoder: bool
    classes: list[str] | None  # the learned classes of a prompt=class_tokens run
    lock: threading.Lock  # SamPredictor holds one image at a time: one request at a time

    @property
    def device(self) -> torch.device:
        return self.finetuned.device


def same_encoder(a: nn.Module, b: nn.Module) -> bool:
    """Whether two SAMs' image encoders hold the same weights (the adapter did not touch it)."""
    encoder = family_of(a).roles.image_encoder
    ours = a.get_submodule(encoder).state_dict()
    theirs = b.get_submodule(encoder).state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def load_pair(run_id: str | None = None, weights: str | None = None,
              tracking_uri: str | None = None, checkpoint: str | None = None,
              device: str = "auto", attention: str = "auto", cache_images: int = 8) -> Pair:  # fmt: skip
    """The fine-tuned model of a run (or weights file) and its base as it was before training,
    both ready for inference on `device` (LoRA merged: no extra latency)."""
    target = resolve_device(device, key="device")
    base, adapter, meta = load_finetuned(run_id, weights, tracking_uri, checkpoint)
    adapter.merge(base.sam)
    finetuned = ready(base.sam, attention, target)
    zero_shot = ready(build_base(meta, checkpoint).sam, attention, target)
    shared = same_encoder(zero_shot, finetuned)
    if shared:
        encoder = family_of(finetuned).roles.image_encoder  # one module in memory, one pass
        setattr(zero_shot, encoder, finetuned.get_submodule(encoder))
    tuned_cache = EmbeddingCache(None, max_memory_items=cache_images)
    module = class_prompts_of(finetuned)
    pair = Pair(
        source=f"run {run_id}" if run_id else str(weights),
        meta=meta,
        zero_shot=CachedPredictor(
            zero_shot,
            tuned_cache if shared else EmbeddingCache(None, max_memory_items=cache_images),
        ),
        finetuned=CachedPredictor(finetuned, tuned_cache),
        shared_encoder=shared,
        classes=list(module.classes) if module is not None else None,
        lock=threading.Lock(),
    )
    log.info("loaded %s (%s adapter on %s) on %s; image encoder %s", pair.source,
             meta["adapter"].get("kind", "?"), meta["base"].get("arch", "?"), target,
             "shared by both models" if shared else "fine-tuned")  # fmt: skip
    return pair
