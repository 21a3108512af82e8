"""Interactive-segmentation training (SAM paper §A, micro-sam): start from a box or one point, then
add one corrective click per pass where the current prediction is wrong."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from samexp.config.checks import NON_NEGATIVE, because
from samexp.config.options import option
from samexp.models.seam import Prompts
from samexp.prompts.base import PromptStrategy, RefiningStrategy
from samexp.prompts.box import BoxPrompt
from samexp.prompts.points import PointsPrompt
from samexp.prompts.sampling import PADDING_LABEL, image_region, pixels_at, sample_points_in


@option("prompt", "iterative")
class IterativePrompt(RefiningStrategy):
    """`iterations` refinements; each adds ONE point per instance, drawn uniformly from the error
    region (positive in a miss, negative in a false alarm), so points grow M×1, M×2, ...; an
    initial box stays. With `mask_feedback` the previous logits also go back in as `mask_inputs`."""

    def __init__(
        self,
        start: Literal["box", "point"] = "box",
        iterations: Annotated[int, because(NON_NEGATIVE, "corrective clicks")] = 7,
        mask_feedback: bool = True,
        jitter: Annotated[float, because(NON_NEGATIVE, "fraction of the box side")] = 0.1,
        max_jitter_px: Annotated[float, NON_NEGATIVE] = 20.0,
    ) -> None:
        self.initial: PromptStrategy = (
            BoxPrompt(jitter=jitter, max_jitter_px=max_jitter_px)
            if start == "box"
            else PointsPrompt(positive=1)
        )
        self.refinements = iterations
        self.mask_feedback = mask_feedback

    def refine(
        self,
        prompts: Prompts,
        low_res_logits: torch.Tensor,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        point, label = corrective_point(low_res_logits, masks, input_sizes, generator)
        points, labels = point[:, None], label[:, None]
        if prompts.points is not None:
            points = torch.cat([prompts.points, points.to(prompts.points.device)], dim=1)
            labels = torch.cat([prompts.labels, labels.to(prompts.labels.device)], dim=1)
        return Prompts(
            boxes=prompts.boxes,
            points=points,
            labels=labels,
            mask_inputs=low_res_logits if self.mask_feedback else prompts.mask_inputs,
        )


def corrective_point(
    low_res_logits: torch.Tensor,
    masks: torch.Tensor,
    input_sizes: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per instance where the prediction (logits upscaled to the input frame, > 0) is
    wrong inside the unpadded image: points M×2, labels M (1 = missed foreground, 0 = false
    alarm, -1 = nothing wrong, a padding point that keeps the shapes M×P)."""
    upscaled = F.interpolate(
        low_res_logits, masks.shape[-2:], mode="bilinear", align_corners=False
    )  # as seam.upscale, without needing the model
    predicted = upscaled[:, 0].to(masks.device) > 0
    error = (predicted ^ masks) & image_region(input_sizes, masks.shape[-2:])
    points, found = sample_points_in(error, 1, generator)
    labels = pixels_at(masks, points).long().masked_fill(~found, PADDING_LABEL)
    return points[:, 0], labels[:, 0]
