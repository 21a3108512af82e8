"""Box plus points: the (training-jittered) box of `BoxPrompt` and the points of `PointsPrompt`
together, as SAM was trained to accept them."""

from __future__ import annotations

from typing import Annotated

import torch

from samexp.config.checks import NON_NEGATIVE, because
from samexp.config.options import option
from samexp.models.seam import Prompts
from samexp.prompts.base import PromptStrategy
from samexp.prompts.box import BoxPrompt
from samexp.prompts.points import PointsPrompt


@option("prompt", "box_points")
class BoxPointsPrompt(PromptStrategy):
    """A box narrows where the object is, points say which of the box's contents it is (e.g. the
    ring, not the hole); each part is the existing strategy, so both keep their guarantees."""

    def __init__(
        self,
        jitter: Annotated[float, because(NON_NEGATIVE, "fraction of the box side")] = 0.1,
        max_jitter_px: Annotated[float, NON_NEGATIVE] = 20.0,
        positive: Annotated[int, NON_NEGATIVE] = 1,
        negative: Annotated[int, NON_NEGATIVE] = 0,
        center: bool = True,
    ) -> None:
        self.box = BoxPrompt(jitter=jitter, max_jitter_px=max_jitter_px)
        self.points = PointsPrompt(positive=positive, negative=negative, center=center)

    def __call__(
        self,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        box = self.box(masks, input_sizes, generator, train)
        points = self.points(masks, input_sizes, generator, train)
        return Prompts(boxes=box.boxes, points=points.points, labels=points.labels)
