"""Training augmentation with torchvision.transforms.v2: one random draw moves image and masks together.

Prompts are computed from the augmented masks afterwards, so boxes and points follow the
geometry for free. Photometric jitter touches the image only.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from samexp.config.checks import NON_NEGATIVE, Range
from samexp.config.errors import SamexpError
from samexp.config.options import option

PROBABILITY = Range(0, 1)


@option("augment", "default")
class Augment:
    """Training-only augmentation (image and masks together; prompts are derived from the
    augmented masks, so they follow)."""

    def __init__(
        self,
        hflip: Annotated[float, PROBABILITY] = 0.5,
        vflip: Annotated[float, PROBABILITY] = 0.0,
        crop: Annotated[float, PROBABILITY] = 0.5,  # probability of a random scale/crop
        crop_scale: tuple[float, float] | list[float] = (0.5, 1.0),  # area fraction kept
        brightness: Annotated[float, NON_NEGATIVE] = 0.2,
        contrast: Annotated[float, NON_NEGATIVE] = 0.2,
        saturation: Annotated[float, NON_NEGATIVE] = 0.2,
        hue: Annotated[float, Range(0, 0.5)] = 0.0,
    ) -> None:
        lo, hi = crop_scale
        if not 0 < lo <= hi <= 1:
            raise SamexpError(
                f"augment.crop_scale must satisfy 0 < min <= max <= 1, got {list(crop_scale)}"
            )
        self.geometric = hflip > 0 or vflip > 0 or crop > 0
        self.transform = v2.Compose(
            [
                v2.RandomHorizontalFlip(hflip),
                v2.RandomVerticalFlip(vflip),
                # crop a random part, keeping the original size so SAM's resize sees the same geometry
                _RandomCropKeepSize(crop, lo, hi),
                v2.ColorJitter(
                    brightness=brightness, contrast=contrast, saturation=saturation, hue=hue
                ),
            ]
        )

    def __call__(self, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """H×W×3 uint8 image, K×H×W bool masks -> the same, augmented with one random draw."""
        img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        msk = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(masks)))
        img, msk = self.transform(img, msk)
        return img.permute(1, 2, 0).numpy(), msk.numpy().astype(bool)


class _RandomCropKeepSize:
    """With probability `p`, RandomResizedCrop back to the input's own size (v2's needs a fixed
    output size, and the sizes of our images differ); masks are resampled with nearest."""

    def __init__(self, p: float, min_scale: float, max_scale: float) -> None:
        self.p = p
        self.scale = [min_scale, max_scale]

    def __call__(self, image: tv_tensors.Image, masks: tv_tensors.Mask):
        if self.p == 0 or torch.rand(()) >= self.p:
            return image, masks
        size = list(image.shape[-2:])
        top, left, h, w = v2.RandomResizedCrop.get_params(image, self.scale, [3 / 4, 4 / 3])
        return (
            v2.functional.resized_crop(image, top, left, h, w, size, antialias=True),
            v2.functional.resized_crop(masks, top, left, h, w, size),
        )
