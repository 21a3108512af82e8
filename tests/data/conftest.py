"""Fixtures for the data layer: the real rings dataset (read in place) and tiny synthetic folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from tests.conftest import IMG_SIZE


@pytest.fixture(scope="session")
def rings_train(rings_root: Path) -> FolderDataset:
    return FolderDataset(str(rings_root), "train", pipeline=Pipeline(IMG_SIZE))


@pytest.fixture(scope="session")
def rings_test(rings_root: Path) -> FolderDataset:
    return FolderDataset(str(rings_root), "test", pipeline=Pipeline(IMG_SIZE))


@pytest.fixture
def write_pair(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Write `<tmp>/train/images/<name><image_ext>` and its mask (a filled rectangle) with cv2.

    `image=False` / `mask=False` leaves that side out; `mask_shape` makes a mismatched mask;
    `empty_mask=True` writes an all-black mask.
    """

    def write(
        name: str,
        image_ext: str = ".png",
        mask_ext: str = ".png",
        shape: tuple[int, int] = (30, 40),
        mask_shape: tuple[int, int] | None = None,
        image: bool = True,
        mask: bool = True,
        empty_mask: bool = False,
    ) -> tuple[Path, Path]:
        images, masks = tmp_path / "train" / "images", tmp_path / "train" / "masks"
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        image_path, mask_path = images / f"{name}{image_ext}", masks / f"{name}{mask_ext}"
        if image:
            pixels = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
            assert cv2.imwrite(str(image_path), pixels)
        if mask:
            m = np.zeros(mask_shape or shape, dtype=np.uint8)
            if not empty_mask:
                m[5:20, 10:30] = 255
            assert cv2.imwrite(str(mask_path), m)
        return image_path, mask_path

    return write
