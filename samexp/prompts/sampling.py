"""Point geometry shared by the point-based strategies: seeded uniform sampling in a region, the
unpadded-image region, pixel look-up, and the deepest point of a mask.

Points are xy pixel indices in the input frame, as `mask_to_box` gives them (SAM's prompt encoder
adds 0.5 to reach the pixel centre). A point that could not be placed is reported as not found,
so callers give it label -1 (SAM's "not a point") instead of crashing.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

PADDING_LABEL = -1  # SAM's prompt encoder embeds label -1 as "not a point"


def sample_points_in(
    region: torch.Tensor, k: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """k points drawn uniformly (with replacement) from the True pixels of each M×H×W region.

    Returns points M×k×2 (xy float) and found M×k bool (False where the region is empty; such
    points sit at (0, 0)). Exactly M×k numbers are drawn from the CPU generator whatever the
    regions hold, so one instance's content never shifts another's sample.
    """
    m, h, w = region.shape
    u = torch.rand(m, k, generator=generator, device="cpu").to(region.device)
    flat = region.reshape(m, h * w)
    # cumsum counts True pixels up to each position: the rank-th one is the first position where
    # the running count reaches rank + 1. Vectorised over instances, no host sync.
    running = flat.cumsum(1, dtype=torch.int32)
    counts = running[:, -1:]
    rank = (u * counts).to(torch.int32).clamp(max=(counts - 1).clamp(min=0))
    index = torch.searchsorted(running, rank + 1).clamp(max=h * w - 1)
    points = torch.stack([index % w, index // w], dim=-1).float()
    found = (counts > 0).expand(m, k)
    return points * found[..., None], found


def image_region(input_sizes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """M×H×W bool, True inside each instance's unpadded image (input_sizes M×2 (h, w))."""
    h, w = shape
    rows = torch.arange(h, device=input_sizes.device) < input_sizes[:, :1]
    cols = torch.arange(w, device=input_sizes.device) < input_sizes[:, 1:]
    return rows[:, :, None] & cols[:, None, :]


def pixels_at(region: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Value of M×H×W `region` at each of the M×P xy points (the pixel each point falls in)."""
    m, h, w = region.shape
    x = points[..., 0].floor().long().clamp(0, w - 1)
    y = points[..., 1].floor().long().clamp(0, h - 1)
    return region[torch.arange(m, device=region.device)[:, None], y, x]


def deepest_points(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel farthest from the background of each M×H×W mask -> points M×2 (xy), found M.

    Unlike the centroid it is inside concave shapes (rings, U shapes). Exact Euclidean distance
    (OpenCV, on CPU); the frame edge counts as background, and ties go to the first pixel in
    row-major order, so the point is deterministic.
    """
    points = []
    for mask in masks.cpu().numpy().astype(np.uint8):
        padded = np.pad(mask, 1)  # a mask touching the frame edge is not deep there
        distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        points.append((x, y))
    found = masks.flatten(1).any(1)
    xy = torch.tensor(points, dtype=torch.float32, device=masks.device).reshape(-1, 2)
    return xy * found[:, None], found
