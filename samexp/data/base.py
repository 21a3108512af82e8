"""What every dataset format hands to training: SAM-framed samples, batches, and the read helpers.

SAM sees an image whose longest side is its input size S, zero-padded bottom/right to S×S; SAM 2
sees it stretched to S×S. The model's `samexp.data.frame.Pipeline` says which, and datasets are
given it (the one image pipeline, which predict and the demo use too). Targets are
kept twice: in that frame for the loss, and at the original resolution for metrics, so scores
are comparable with any other tool. Images are used
as displayed, i.e. with their EXIF orientation applied (phone photos store pixels sideways;
see `samexp.data.orientation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike

import cv2
import numpy as np
import torch

from samexp.config.errors import DatasetError
from samexp.data.files import check_pixels, read_image_bytes, shown
from samexp.data.frame import Pipeline
from samexp.data.orientation import apply_orientation, exif_orientation

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass
class Sample:
    """One image and its K ≥ 1 target instances, ready for SAM."""

    name: str  # file stem, unique within the split
    image_path: str
    image: torch.Tensor  # uint8 3×S×S RGB, longest side S, zero-padded (or stretched to S×S)
    masks: torch.Tensor  # bool K×S×S, same frame as `image`
    gt_masks: torch.Tensor  # bool K×H×W at the original resolution (metrics use these)
    input_size: tuple[int, int]  # (h, w) of the resized image before padding; (S, S) stretched
    original_size: tuple[int, int]  # (H, W)
    categories: list[str] = dataclasses.field(
        default_factory=list
    )  # K names; metrics group by them


@dataclass
class Batch:
    """Several samples; instances are flattened so a decoder can run once per instance."""

    names: list[str]
    image_paths: list[str]
    images: torch.Tensor  # uint8 B×3×S×S
    masks: torch.Tensor  # bool M×S×S, all instances of all images, image order
    instance_image: torch.Tensor  # long M: index into `images` for each instance
    gt_masks: list[torch.Tensor]  # M tensors, bool H_i×W_i
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    categories: list[str] = dataclasses.field(default_factory=list)  # M names

    def pin_memory(self) -> Batch:
        """DataLoader(pin_memory=True) calls this, so host->GPU copies can overlap compute."""
        return dataclasses.replace(
            self,
            images=self.images.pin_memory(),
            masks=self.masks.pin_memory(),
            instance_image=self.instance_image.pin_memory(),
        )

    def to(self, device: torch.device | str) -> Batch:
        """Move the model-facing tensors; `gt_masks` stay on CPU where metrics read them."""
        return dataclasses.replace(
            self,
            images=self.images.to(device, non_blocking=True),
            masks=self.masks.to(device, non_blocking=True),
            instance_image=self.instance_image.to(device, non_blocking=True),
        )


def collate(samples: list[Sample]) -> Batch:
    """Stack images and concatenate instances (images may differ in K and original size)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    counts = torch.tensor([len(s.masks) for s in samples])
    return Batch(
        names=[s.name for s in samples],
        image_paths=[s.image_path for s in samples],
        images=torch.stack([s.image for s in samples]),
        masks=torch.cat([s.masks for s in samples]),
        instance_image=torch.repeat_interleave(torch.arange(len(samples)), counts),
        gt_masks=[m for s in samples for m in s.gt_masks],
        input_sizes=[s.input_size for s in samples],
        original_sizes=[s.original_size for s in samples],
        categories=[c for s in samples for c in s.categories],
    )


def model_pipeline(pipeline: object) -> Pipeline:
    """`pipeline`, checked to be the model's input geometry rather than a bare side: a dataset
    built by hand with `img_size=64` (the argument before SAM 2) is told what it takes now, and
    one built through Hydra without `_convert_="object"` (which turns the dataclass into a
    config node) fails here rather than deep inside a resize."""
    if not isinstance(pipeline, Pipeline):
        raise DatasetError(
            f"a dataset takes the model's input geometry, samexp.data.frame.Pipeline(size) "
            f"(the model's `.pipeline`), got {pipeline!r}"
        )
    return pipeline


def make_sample(
    name: str,
    image_path: str,
    image_rgb: np.ndarray,
    masks: np.ndarray,
    pipeline: Pipeline,
    categories: list[str] | None = None,
    transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Sample:
    """Build a `Sample` from an H×W×3 uint8 image and K×H×W masks; every format ends here.

    `transform` (training augmentation) maps (image, masks) to (image, masks) before SAM's resize;
    instances it removes entirely (cropped out) are dropped, and if none survive the sample is
    used un-augmented, so augmentation never yields an image without targets.
    """
    masks = np.asarray(masks, dtype=bool)
    categories = list(categories) if categories is not None else ["object"] * len(masks)
    if masks.ndim != 3 or len(masks) == 0:
        raise DatasetError(
            f"{image_path}: expected K×H×W masks with K ≥ 1, got shape {masks.shape}"
        )
    if masks.shape[1:] != image_rgb.shape[:2]:
        raise DatasetError(
            f"{image_path}: image is {image_rgb.shape[0]}×{image_rgb.shape[1]} (H×W) but its "
            f"masks are {masks.shape[1]}×{masks.shape[2]}; masks must match the image size"
        )
    if transform is not None:
        aug_image, aug_masks = transform(image_rgb, masks)
        keep = aug_masks.reshape(len(aug_masks), -1).any(1)
        if keep.any():
            image_rgb, masks = aug_image, aug_masks[keep]
            categories = [c for c, k in zip(categories, keep, strict=True) if k]
    pipeline.check_fits(image_path, *image_rgb.shape[:2])  # a pixel left on every side
    image, frame = pipeline.image(image_rgb)  # the pipeline predict and the demo use
    return Sample(
        name=name,
        image_path=image_path,
        image=image,
        masks=pipeline.masks(masks),  # the same geometry as the image: targets on its grid
        gt_masks=torch.from_numpy(np.ascontiguousarray(masks)),
        input_size=frame.input_size,
        original_size=frame.original_size,
        categories=categories,
    )


def to_uint8(array: np.ndarray, path: str | PathLike[str]) -> np.ndarray:
    """8-bit stays, 16-bit is scaled (65535 -> 255); anything else is refused, naming the file."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    raise DatasetError(
        f"{shown(path)}: unsupported pixel type {array.dtype}; save it as 8- or 16-bit"
    )


def decode_unchanged(data: bytes, path: str | PathLike[str]) -> np.ndarray:
    """Decode bytes as stored (bit depth, channels); undecodable -> DatasetError naming `path`.

    IMREAD_UNCHANGED also ignores EXIF orientation, as PIL's header size does, so image and
    mask sizes are compared in the same (stored) orientation.
    """
    check_pixels(data, path)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # an empty buffer fails an assertion instead of returning None
        array = None
    if array is None:
        raise DatasetError(f"{shown(path)}: cannot be read as an image (corrupt or unsupported)")
    return array


def imread_unchanged(path: str | PathLike[str]) -> np.ndarray:
    """A file decoded as stored; missing, truncated or undecodable -> DatasetError naming it."""
    return decode_unchanged(read_image_bytes(path), path)


def read_image_rgb(path: str | PathLike[str], orient: bool = False) -> np.ndarray:
    """H×W×3 uint8 RGB from grayscale, RGB(A), 8- or 16-bit files; alpha is dropped.

    `orient=True` returns the image as viewers display it (its EXIF orientation applied).
    """
    array = to_uint8(imread_unchanged(path), path)
    if array.ndim == 2 or array.shape[2] == 1:
        rgb = np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=2)
    elif array.shape[2] == 4:
        rgb = cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    return apply_orientation(rgb, exif_orientation(path)) if orient else rgb
