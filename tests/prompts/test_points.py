"""Point prompts: positives inside, negatives outside but in the image, centre = deepest point,
grid snapping onto the AMG grid, padding points instead of crashes, reproducible per seed.

`random_masks` and `check_through_seam` also serve the other prompt strategies' tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils.amg import build_point_grid

from samexp.config.errors import SamexpError
from samexp.prompts.points import PointsPrompt
from tests.prompts.conftest import check_through_seam, random_masks


def _values_at(t: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """t (M×H×W) at integer xy points (M×P×2)."""
    x, y = points[..., 0].long(), points[..., 1].long()
    return t[torch.arange(len(t))[:, None], y, x]


def _distance_to_background(mask: torch.Tensor) -> torch.Tensor:
    """Brute-force Euclidean distance of every pixel to the nearest background pixel, the frame's
    outside counting as background (independent of the OpenCV transform under test)."""
    padded = F.pad(mask, (1, 1, 1, 1))
    fg = torch.nonzero(padded).float()
    bg = torch.nonzero(~padded).float()
    out = torch.zeros(padded.shape)
    out[padded] = torch.cdist(fg, bg).amin(1)
    return out[1:-1, 1:-1]


def test_positives_lie_inside_the_mask_and_negatives_outside_it_but_inside_the_image():
    prompt = PointsPrompt(positive=3, negative=4)
    for seed in range(40):
        masks, sizes = random_masks(seed)
        p = prompt(masks, sizes, torch.Generator().manual_seed(seed), train=True)
        assert torch.equal(p.points, p.points.round())  # pixel indices
        inside = _values_at(masks, p.points)
        x, y = p.points[..., 0], p.points[..., 1]
        in_image = (x < sizes[:, 1:]) & (y < sizes[:, :1])
        pos, neg = p.labels[:, :3], p.labels[:, 3:]
        assert torch.all(inside[:, :3][pos == 1]) and torch.all(neg != 1)
        assert not torch.any(inside[:, 3:][neg == 0]) and torch.all(in_image[:, 3:][neg == 0])
        # padding only where there was nothing to sample
        empty = ~masks.flatten(1).any(1)
        assert torch.equal(pos == -1, empty[:, None].expand(-1, 3))


def test_positive_points_are_spread_uniformly_over_the_mask():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 2:12, 2:12] = True  # two regions of 100 pixels each
    masks[0, 20:30, 20:30] = True
    p = PointsPrompt(positive=4000)(masks, torch.tensor([[32, 32]]), torch.Generator(), train=True)
    share = (p.points[0, :, 0] < 16).float().mean()
    assert abs(share - 0.5) < 0.04
    assert len(torch.unique(p.points[0], dim=0)) > 150  # not stuck on a few pixels


def test_center_point_is_the_deepest_point_of_the_mask():
    for seed in range(10):
        masks, sizes = random_masks(seed, m=4, size=32)
        p = PointsPrompt(center=True)(masks, sizes, torch.Generator(), train=True)
        for mask, (x, y), label in zip(masks, p.points[:, 0].long(), p.labels[:, 0], strict=True):
            if mask.any():
                depth = _distance_to_background(mask)
                assert label == 1 and torch.isclose(depth[y, x], depth.max())


@pytest.mark.parametrize("shape", ["ring", "u"])
def test_center_point_lies_inside_concave_shapes_whose_centroid_is_outside(shape):
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    if shape == "ring":
        r = ((yy - 30.0) ** 2 + (xx - 34.0) ** 2).sqrt()
        mask = (r >= 14) & (r <= 24)
    else:
        mask = torch.zeros(64, 64, dtype=torch.bool)
        mask[8:56, 8:20] = mask[8:56, 44:56] = mask[44:56, 8:56] = True
    centroid = torch.nonzero(mask).float().mean(0).round().long()
    assert not mask[centroid[0], centroid[1]]  # the premise: the centroid misses the shape
    p = PointsPrompt(center=True)(mask[None], torch.tensor([[64, 64]]), torch.Generator(), False)
    x, y = p.points[0, 0].long()
    depth = _distance_to_background(mask)
    assert mask[y, x] and torch.isclose(depth[y, x], depth.max())


def test_center_point_does_not_depend_on_the_generator():
    masks, sizes = random_masks(3)
    prompt = PointsPrompt(positive=1, center=True)
    a = prompt(masks, sizes, torch.Generator().manual_seed(0), train=True).points
    b = prompt(masks, sizes, torch.Generator().manual_seed(1), train=False).points
    assert torch.equal(a, b)


def _grid(n: int, sizes: torch.Tensor) -> torch.Tensor:
    """AMG's unit grid scaled to each unpadded image (M×G×2), as the generator would use it."""
    return torch.from_numpy(build_point_grid(n)).float()[None] * sizes.flip(-1)[:, None].float()


def test_grid_snapped_points_are_the_nearest_amg_grid_points_on_the_right_side_of_the_mask():
    for seed in range(10):
        masks, _ = random_masks(seed)
        sizes = torch.full((len(masks), 2), 64)  # 8 per side on 64 px: grid at 4, 12, ..., 60
        args = dict(positive=2, negative=2)
        free = PointsPrompt(**args)(masks, sizes, torch.Generator().manual_seed(seed), True)
        snap = PointsPrompt(**args, grid_points_per_side=8)(
            masks, sizes, torch.Generator().manual_seed(seed), True
        )
        grid = _grid(8, sizes)
        sides = [masks, ~masks]  # what a positive / negative grid point must be in
        for i in range(len(masks)):
            for j in range(4):
                region = sides[j // 2][i]
                candidates = grid[i][region[grid[i][:, 1].long(), grid[i][:, 0].long()]]
                if len(candidates) == 0:
                    assert torch.equal(snap.points[i, j], free.points[i, j])  # fallback
                    continue
                nearest = (candidates - free.points[i, j]).norm(dim=1).min()
                assert (candidates == snap.points[i, j]).all(1).any()  # on the grid, right side
                assert torch.isclose((snap.points[i, j] - free.points[i, j]).norm(), nearest)


def test_grid_is_scaled_to_the_unpadded_image_not_the_padded_frame():
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, :32, :48] = True  # the whole unpadded image
    p = PointsPrompt(grid_points_per_side=4)(masks, torch.tensor([[32, 48]]), torch.Generator(), 1)
    assert (_grid(4, torch.tensor([[32, 48]]))[0] == p.points[0, 0]).all(1).any()


def test_grid_snapping_falls_back_to_the_sampled_point_when_no_grid_point_qualifies():
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 0, 0] = True  # between grid points
    p = PointsPrompt(grid_points_per_side=8)(masks, torch.tensor([[64, 64]]), torch.Generator(), 1)
    assert p.points.tolist() == [[[0.0, 0.0]]] and p.labels.tolist() == [[1]]


def test_mask_covering_the_whole_image_gets_padding_points_instead_of_negatives():
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, :40, :64] = True  # everything but the padding
    p = PointsPrompt(positive=1, negative=2)(masks, torch.tensor([[40, 64]]), torch.Generator(), 1)
    assert p.labels.tolist() == [[1, -1, -1]] and p.points.shape == (1, 3, 2)


def test_one_pixel_mask_gets_that_pixel_for_every_positive_and_the_centre():
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 5, 9] = True
    p = PointsPrompt(positive=3, center=True)(masks, torch.tensor([[16, 16]]), torch.Generator(), 1)
    assert p.points.tolist() == [[[9.0, 5.0]] * 3] and p.labels.tolist() == [[1, 1, 1]]


def test_shapes_and_labels_are_positives_then_negatives():
    masks, sizes = random_masks(1)
    masks[:, 30:34, 30:34] = True  # no empty mask
    p = PointsPrompt(positive=2, negative=3)(masks, sizes, torch.Generator(), train=False)
    assert p.points.shape == (8, 5, 2) and p.points.dtype == torch.float32
    assert p.labels.shape == (8, 5) and p.labels.dtype == torch.long
    assert torch.all(p.labels[:, :2] == 1) and torch.all(p.labels[:, 2:] != 1)
    assert p.boxes is None and p.mask_inputs is None


def test_same_seed_gives_the_same_points_and_another_seed_other_points():
    masks, sizes = random_masks(5)
    prompt = PointsPrompt(positive=2, negative=1)
    for train in (True, False):
        a = prompt(masks, sizes, torch.Generator().manual_seed(11), train=train)
        b = prompt(masks, sizes, torch.Generator().manual_seed(11), train=train)
        c = prompt(masks, sizes, torch.Generator().manual_seed(12), train=train)
        assert torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels)
        assert not torch.equal(a.points, c.points)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"positive": -1}, "prompt.positive"),
        ({"positive": 0, "negative": 0}, "prompt.positive"),
        ({"positive": 0, "negative": 1, "center": True}, "prompt.center"),
        ({"grid_points_per_side": 0}, "prompt.grid_points_per_side"),
    ],
)
def test_bad_arguments_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(SamexpError, match=key):
        PointsPrompt(**kwargs)


def test_points_prompt_runs_through_the_seam(tiny):
    check_through_seam(tiny, PointsPrompt(positive=2, negative=1, center=True))
