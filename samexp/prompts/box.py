"""Box prompts: the tight box around each target, jittered during training as in the SAM paper."""

from __future__ import annotations

from typing import Annotated

import torch

from samexp.config.checks import NON_NEGATIVE, because
from samexp.config.options import option
from samexp.models.seam import Prompts
from samexp.prompts.base import PromptStrategy, mask_to_box


@option("prompt", "box")
class BoxPrompt(PromptStrategy):
    """The tight box around each target; in training each side moves up to `jitter` × the box
    side, and never more than `max_jitter_px` input-frame pixels (eval never moves it)."""

    def __init__(
        self,
        jitter: Annotated[float, because(NON_NEGATIVE, "fraction of the box side")] = 0.1,
        max_jitter_px: Annotated[float, NON_NEGATIVE] = 20.0,
    ) -> None:
        self.jitter = jitter
        self.max_jitter_px = max_jitter_px

    def __call__(
        self,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        boxes = mask_to_box(masks)
        if train and self.jitter > 0:
            boxes = self._jitter(boxes, input_sizes, generator)
        return Prompts(boxes=boxes)

    def _jitter(
        self, boxes: torch.Tensor, input_sizes: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Move each side independently by up to `jitter` × the box side, capped at `max_jitter_px`,
        then clip to the image (not its padding)."""
        side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1).repeat(
            1, 2
        )
        limit = (side * self.jitter).clamp(max=self.max_jitter_px)
        noise = torch.rand(boxes.shape, generator=generator, device="cpu").to(boxes.device) * 2 - 1
        jittered = boxes + noise * limit
        h = input_sizes[:, 0].to(boxes) - 1
        w = input_sizes[:, 1].to(boxes) - 1
        upper = torch.stack([w, h, w, h], dim=1)
        jittered = torch.minimum(jittered.clamp(min=0), upper)
        # jitter above 0.5 could cross the sides over; keep the box well-formed
        x0, x1 = (
            torch.minimum(jittered[:, 0], jittered[:, 2]),
            torch.maximum(jittered[:, 0], jittered[:, 2]),
        )
        y0, y1 = (
            torch.minimum(jittered[:, 1], jittered[:, 3]),
            torch.maximum(jittered[:, 1], jittered[:, 3]),
        )
        return torch.stack([x0, y0, x1, y1], dim=1)
