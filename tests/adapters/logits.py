"""What the adapter tests read of a full-size model (vit_t): one image's box-prompted logits."""

from __future__ import annotations

import torch

from samexp.models.seam import Prompts, decode, encode


def logits_1024(sam) -> torch.Tensor:
    """A random 1024 px image, one box, in eval mode and without gradient."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (1, 3, 1024, 1024), generator=generator, dtype=torch.uint8)
    with torch.no_grad():
        embedding = encode(sam.eval(), images, [(1024, 1024)])
        boxes = torch.tensor([[100.0, 80, 700, 900]])
        return decode(sam, embedding, torch.tensor([0]), Prompts(boxes=boxes))[0]
