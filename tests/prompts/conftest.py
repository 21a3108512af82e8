"""Helpers shared by the prompt-strategy tests: random masks and a run through the real seam."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samexp.data.base import collate, make_sample
from samexp.data.frame import Pipeline
from samexp.models.build import BaseModel
from samexp.prompts.base import PromptStrategy
from samexp.training.evaluation import predict


def random_masks(seed: int, m: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """M blobby masks of random shape (some empty, some fragmented) inside random unpadded sizes."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(size // 4, size + 1, (m, 2), generator=g)
    noise = F.interpolate(torch.rand(m, 1, 8, 8, generator=g), (size, size), mode="bilinear")[:, 0]
    masks = noise > torch.rand(m, 1, 1, generator=g) * 0.6 + 0.3
    rows, cols = torch.arange(size), torch.arange(size)
    inside = (rows < sizes[:, :1])[:, :, None] & (cols < sizes[:, 1:])[:, None, :]
    return masks & inside, sizes


def _seam_batch(pipeline: Pipeline):
    """Two images of different aspect ratios (so both are padded), 2 + 1 elliptic targets."""
    samples = []
    for name, (h, w), centres in [
        ("a", (100, 128), [(40, 50), (90, 60)]),
        ("b", (128, 96), [(48, 64)]),
    ]:
        yy, xx = np.mgrid[:h, :w]
        masks = np.stack([((xx - cx) / 20) ** 2 + ((yy - cy) / 14) ** 2 <= 1 for cx, cy in centres])
        image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
        samples.append(make_sample(name, f"{name}.png", image, masks, pipeline))
    return collate(samples)


def check_through_seam(tiny: BaseModel, strategy: PromptStrategy) -> list:
    """The strategy on the real encode/decode seam: 1 + refinements passes of the right shapes,
    the encoder once per image however many passes, and gradients reaching the mask decoder
    from every pass."""
    tiny.sam.image_encoder.requires_grad_(False)  # as decoder-only tuning; keeps the test fast
    batch = _seam_batch(tiny.pipeline)
    encoded = []
    hook = tiny.sam.image_encoder.register_forward_hook(lambda m, i, o: encoded.append(len(i[0])))
    try:
        passes = predict(tiny.sam, batch, strategy, torch.Generator().manual_seed(0), train=True)
    finally:
        hook.remove()
    assert len(passes) == 1 + strategy.refinements
    assert encoded == [2]
    decoder = [p for p in tiny.sam.mask_decoder.parameters() if p.requires_grad]
    for low_res, iou in passes:
        assert low_res.shape == (3, 1, 64, 64) and iou.shape == (3, 1)
        grads = torch.autograd.grad(low_res.sum(), decoder, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    return passes
