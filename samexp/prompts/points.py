"""Point prompts: positive points inside each target, negative ones outside it but inside the image.

Sampling uses only the given generator, so the evaluator's re-seeded generator gives the same
points on every evaluation; a centre point (deepest point of the mask) needs no randomness at all.
"""

from __future__ import annotations

from typing import Annotated

import torch
from segment_anything.utils.amg import build_point_grid

from samexp.config.checks import AT_LEAST_1, NON_NEGATIVE, because
from samexp.config.errors import SamexpError
from samexp.config.options import option
from samexp.models.seam import Prompts
from samexp.prompts.base import PromptStrategy
from samexp.prompts.sampling import (
    PADDING_LABEL,
    deepest_points,
    image_region,
    pixels_at,
    sample_points_in,
)


@option("prompt", "points")
class PointsPrompt(PromptStrategy):
    """`positive` points labelled 1 and `negative` points labelled 0 per instance (points M×P×2,
    P = positive + negative, positives first). With `center` the first positive point is the
    deepest point of the mask. With `grid_points_per_side` every point moves to the nearest point
    of the automatic mask generator's grid on the same side of the mask, so training sees the
    prompts AMG will give at inference (finestSAM)."""

    def __init__(
        self,
        positive: Annotated[int, because(NON_NEGATIVE, "points inside the target")] = 1,
        negative: Annotated[int, because(NON_NEGATIVE, "points outside it")] = 0,
        center: bool = False,
        # e.g. 32: snap to the automatic mask generator's grid
        grid_points_per_side: Annotated[int | None, AT_LEAST_1] = None,
    ) -> None:
        if positive + negative == 0:
            raise SamexpError("prompt.positive and prompt.negative cannot both be 0")
        if center and positive == 0:
            raise SamexpError("prompt.center needs prompt.positive >= 1 (the centre is a positive)")
        self.positive = positive
        self.negative = negative
        self.center = center
        self.grid_points_per_side = grid_points_per_side

    def __call__(
        self,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        outside = ~masks & image_region(input_sizes, masks.shape[-2:])
        pos, pos_found = sample_points_in(masks, self.positive - int(self.center), generator)
        if self.center:
            centre, centre_found = deepest_points(masks)
            pos = torch.cat([centre[:, None], pos], dim=1)
            pos_found = torch.cat([centre_found[:, None], pos_found], dim=1)
        neg, neg_found = sample_points_in(outside, self.negative, generator)
        if self.grid_points_per_side is not None:
            pos = self._snap(pos, masks, input_sizes)
            neg = self._snap(neg, outside, input_sizes)
        labels = torch.cat([torch.ones_like(pos_found), torch.zeros_like(neg_found)], 1).long()
        found = torch.cat([pos_found, neg_found], dim=1)
        return Prompts(
            points=torch.cat([pos, neg], dim=1), labels=labels.masked_fill(~found, PADDING_LABEL)
        )

    def _snap(
        self, points: torch.Tensor, region: torch.Tensor, input_sizes: torch.Tensor
    ) -> torch.Tensor:
        """Each point -> nearest grid point inside `region`; unchanged if no grid point is."""
        unit = torch.from_numpy(build_point_grid(self.grid_points_per_side)).float()
        # AMG scales its unit grid to the image it sees: here the unpadded image, (w, h) per instance
        grid = unit.to(points.device)[None] * input_sizes.flip(-1).to(points)[:, None]  # M×G×2
        qualifies = pixels_at(region, grid)  # M×G
        distance = torch.cdist(points, grid).masked_fill(~qualifies[:, None], float("inf"))
        nearest = distance.argmin(dim=2)  # M×P
        snapped = torch.gather(grid, 1, nearest[..., None].expand(-1, -1, 2))
        return torch.where(qualifies.any(1)[:, None, None], snapped, points)
