"""The encode / decode seam: SAM's forward pass split where the cost is.

The image encoder is >95% of SAM's compute, the prompt encoder + mask decoder are milliseconds.
Keeping them apart (instead of `Sam.forward`, which is `@torch.no_grad()` and re-encodes per call)
lets training back-propagate, lets every prompt of an image share one encoder pass, and gives
caching a place to plug in.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam


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


def encoder_trains(sam: Sam) -> bool:
    """Whether the image encoder has trainable parameters (else its output can be cached, and needs no grad)."""
    return any(p.requires_grad for p in sam.image_encoder.parameters())


def preprocess(sam: Sam, images: torch.Tensor, input_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Normalise uint8 images and zero the padding, exactly as `Sam.preprocess` (which pads after normalising)."""
    x = (images.float() - sam.pixel_mean) / sam.pixel_std
    valid = torch.zeros_like(x[:, :1])
    for i, (h, w) in enumerate(input_sizes):
        valid[i, :, :h, :w] = 1
    return x * valid


def encode(sam: Sam, images: torch.Tensor, input_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Image embeddings B×C×h×w; gradients flow only if the encoder has trainable parameters."""
    return sam.image_encoder(preprocess(sam, images, input_sizes))


def decode(
    sam: Sam,
    embeddings: torch.Tensor,
    instance_image: torch.Tensor,
    prompts: Prompts,
    multimask_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res mask logits (M×C×4h×4w) and predicted IoU (M×C) for M instances over B embeddings.

    SAM's decoder broadcasts one image embedding over many prompts, so instances are decoded
    image by image; the expensive embeddings are computed once per image either way.
    """
    image_pe = sam.prompt_encoder.get_dense_pe()
    logits, ious = [], []
    order = []
    for i in range(embeddings.shape[0]):
        index = torch.nonzero(instance_image == i).flatten()
        if index.numel() == 0:
            continue
        p = prompts.select(index)
        sparse, dense = _encode_prompts(sam, p)
        low_res, iou = sam.mask_decoder(
            image_embeddings=embeddings[i : i + 1],
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        logits.append(low_res)
        ious.append(iou)
        order.append(index)
    inverse = torch.argsort(torch.cat(order))
    return torch.cat(logits)[inverse], torch.cat(ious)[inverse]


def _encode_prompts(sam: Sam, p: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse and dense embeddings of the prompts; learned tokens go in as they are, beside the
    'no mask' dense embedding SAM uses when it is given no mask."""
    if p.sparse is None:
        return sam.prompt_encoder(
            points=None if p.points is None else (p.points, p.labels),
            boxes=p.boxes,
            masks=p.mask_inputs,
        )
    encoder = sam.prompt_encoder
    h, w = encoder.image_embedding_size
    dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(len(p.sparse), -1, h, w)
    return p.sparse, dense


def upscale(sam: Sam, low_res: torch.Tensor) -> torch.Tensor:
    """Low-res logits to the padded input frame (S×S), where training compares them to the masks."""
    size = sam.image_encoder.img_size
    return F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
