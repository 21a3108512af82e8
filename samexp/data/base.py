"""What every dataset format hands to training: SAM-framed samples, batches, and the resize/pad/read helpers.

SAM sees an image whose longest side is its input size S, zero-padded bottom/right to S×S
(`ResizeLongestSide` geometry). Targets are kept twice: in that frame for the loss, and at the
original resolution for metrics, so scores are comparable with any other tool. Images are used
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
from segment_anything.utils.transforms import ResizeLongestSide

from samexp.config.errors import DatasetError
from samexp.data.files import check_pixels, read_image_bytes, shown
from samexp.data.orientation import apply_orientation, exif_orientation

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass
class Sample:
    """One image and its K ≥ 1 target instances, ready for SAM."""

    name: str  # file stem, unique within the split
    image_path: str
    image: torch.Tensor  # uint8 3×S×S RGB, longest side S, zero-padded bottom/right
    masks: torch.Tensor  # bool K×S×S, same frame as `image`
    gt_masks: torch.Tensor  # bool K×H×W at the original resolution (metrics use these)
    input_size: tuple[int, int]  # (h, w) of the resized image before padding
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


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    """One resize for images and masks alike, so both land on exactly the same grid."""
    h, w = array.shape[:2]
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(h, w, size)
    # INTER_AREA averages when shrinking (no aliasing on 1920 px photos); LINEAR when enlarging.
    interpolation = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_LINEAR
    return cv2.resize(array, (new_w, new_h), interpolation=interpolation)


def check_fits(name: str, height: int, width: int, size: int) -> None:
    """Refuse an image whose shorter side SAM's resize to `size` px would round to 0 pixels
    (wider than 2·size : 1, e.g. 20000×1 at 1024): torchvision and OpenCV fail on it deep inside."""
    if min(ResizeLongestSide.get_preprocess_shape(height, width, size)) < 1:
        raise DatasetError(
            f"{name} is {width}×{height} pixels: at the model's {size} px input its shorter side "
            f"would be 0 pixels; crop or pad it to a side ratio of at most {2 * size}:1"
        )


def resize_longest_side(image: np.ndarray, size: int) -> np.ndarray:
    """H×W×3 uint8 -> h×w×3 uint8 with max(h, w) == size, aspect ratio kept (SAM's geometry)."""
    return _resize(image, size)


def resize_mask_longest_side(mask: np.ndarray, size: int) -> np.ndarray:
    """H×W bool -> h×w bool on the same grid as `resize_longest_side`.

    Resized as float and cut at 0.5 (pixel at least half covered), rather than nearest
    neighbour, which drops or shifts thin structures such as ring bands.
    """
    return _resize(mask.astype(np.float32), size) >= 0.5


def pad_to_square(t: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last two dims at the bottom/right to size×size (where SAM expects padding)."""
    h, w = t.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"cannot pad {h}×{w} to {size}×{size}: resize first")
    out = t.new_zeros(*t.shape[:-2], size, size)
    out[..., :h, :w] = t
    return out


def make_sample(
    name: str,
    image_path: str,
    image_rgb: np.ndarray,
    masks: np.ndarray,
    img_size: int,
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
    resized = resize_longest_side(image_rgb, img_size)
    resized_masks = np.stack([resize_mask_longest_side(m, img_size) for m in masks])
    image = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
    return Sample(
        name=name,
        image_path=image_path,
        image=pad_to_square(image, img_size),
        masks=pad_to_square(torch.from_numpy(resized_masks), img_size),
        gt_masks=torch.from_numpy(np.ascontiguousarray(masks)),
        input_size=(resized.shape[0], resized.shape[1]),
        original_size=(image_rgb.shape[0], image_rgb.shape[1]),
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
