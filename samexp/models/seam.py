"""The encode / decode seam: a model's forward pass split where the cost is, for every family.

The image encoder is >95% of SAM's compute, the prompt encoder + mask decoder are milliseconds.
Keeping them apart (instead of `Sam.forward`, which is `@torch.no_grad()` and re-encodes per call)
lets training back-propagate, lets every prompt of an image share one encoder pass, and gives
caching a place to plug in. Each function asks the model's family (`samexp.models.family`) for
the family-specific step, so callers never name a family.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from samexp.data.frame import Pipeline
from samexp.models.family import Features, family_of


@dataclass
class Prompts:
    """Prompts for M instances, in the model's input frame (resized + padded pixel coordinates)."""

    boxes: torch.Tensor | None = None  # M×4 float, xyxy
    points: torch.Tensor | None = None  # M×P×2 float, xy
    labels: torch.Tensor | None = None  # M×P long: 1 foreground, 0 background
    mask_inputs: torch.Tensor | None = None  # M×1×(4·h)×(4·w) low-res logits
    sparse: torch.Tensor | None = None  # M×T×C learned prompt tokens, used as they are

    def select(self, index: torch.Tensor) -> Prompts:
        return Prompts(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})

    def to(self, device: torch.device | str) -> Prompts:
        return Prompts(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})


def _take(t: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[index]


def _move(t: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def encoder_trains(model: nn.Module) -> bool:
    """Whether the image encoder has trainable parameters (else its output can be cached, and needs no grad)."""
    encoder = model.get_submodule(family_of(model).roles.image_encoder)
    return any(p.requires_grad for p in encoder.parameters())


def pipeline(model: nn.Module) -> Pipeline:
    """The input geometry of `model`: what datasets, evaluation, predict and the demo resize to."""
    return family_of(model).pipeline(model)


def mask_threshold(model: nn.Module) -> float:
    return family_of(model).mask_threshold(model)


def prompt_dim(model: nn.Module) -> int:
    """Width of a sparse prompt token: learned class prompts are made this wide."""
    return family_of(model).prompt_dim(model)


def preprocess(model: nn.Module, images: torch.Tensor,
               input_sizes: list[tuple[int, int]]) -> torch.Tensor:  # fmt: skip
    """uint8 model inputs -> what the image encoder takes (normalised, padding zeroed)."""
    return family_of(model).normalise(model, images, input_sizes)


def encode(model: nn.Module, images: torch.Tensor, input_sizes: list[tuple[int, int]]) -> Features:
    """Image features (each level B×…); gradients flow only if the encoder has trainable parameters."""
    family = family_of(model)
    return family.encode(model, family.normalise(model, images, input_sizes))


def image_features(features: Features, index: int | slice | list[int]) -> Features:
    """The features of some of the images (an int keeps a batch of one)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return {k: v[index] for k, v in features.items()}


def features_to(features: Features, device: torch.device | str) -> Features:
    return {k: v.to(device) for k, v in features.items()}


def decode(
    model: nn.Module,
    features: Features,
    instance_image: torch.Tensor,
    prompts: Prompts,
    multimask_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res mask logits (M×C×h×w) and predicted IoU (M×C) for M instances over B images.

    The decoders broadcast one image's features over many prompts, so instances are decoded
    image by image; the expensive features are computed once per image either way.
    """
    family = family_of(model)
    logits, ious = [], []
    order = []
    for i in range(len(next(iter(features.values())))):
        index = torch.nonzero(instance_image == i).flatten()
        if index.numel() == 0:
            continue
        low_res, iou = family.decode(model, image_features(features, i), prompts.select(index),
                                     multimask_output)  # fmt: skip
        logits.append(low_res)
        ious.append(iou)
        order.append(index)
    inverse = torch.argsort(torch.cat(order))
    return torch.cat(logits)[inverse], torch.cat(ious)[inverse]


def upscale(model: nn.Module, low_res: torch.Tensor) -> torch.Tensor:
    """Low-res logits to the model's S×S input frame, where training compares them to the masks."""
    size = pipeline(model).size
    return F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
