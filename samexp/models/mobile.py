"""MobileSAM (`model=vit_t`): SAM's prompt encoder and mask decoder behind a TinyViT image encoder
(~10M parameters in all), built by the `mobile_sam` package, its weights resolved like Meta's.

Two stock behaviours are pinned on the built instances (mobile_sam itself stays untouched):
- BatchNorm (TinyViT's convolution stages) keeps the checkpoint's statistics in training too. In
  train mode it would normalise with the statistics of a batch of one or two images and overwrite
  the running ones, so a frozen encoder would compute other embeddings in training than in
  evaluation (and in the embedding cache), and "only the adapter's parameters change" would not
  hold. The affine weights still train under `adapter=full` (mmdetection's `norm_eval`).
- TinyViT's attention caches its bias table when it enters eval mode; mobile_sam's builder enters
  it before loading weights. Every samexp path that changes weights in place re-enters the mode
  afterwards (`load_or_init`, `load_adapter`, evaluation), so the table is always the loaded one.

`mobile_sam` (and timm, ~0.5 s to import) loads only when a vit_t is built; `tiny_vit()` lets
other code recognise TinyViT parts without importing it.
"""

from __future__ import annotations

import sys
import types
import warnings
from typing import Literal

import torch
from torch import nn

from samexp.config.errors import SamexpError
from samexp.config.options import option, target_of
from samexp.models.build import (
    OFFICIAL_IMG_SIZE,
    BaseModel,
    EncoderSize,
    Seed,
    load_or_init,
    weights_source,
)
from samexp.models.family import register
from samexp.models.roles import Family, Rows
from samexp.models.sam import SegmentAnything

TINY_VIT_MODULE = "mobile_sam.modeling.tiny_vit_sam"


def _interleaved_qkv(attention: nn.Module) -> dict[str, tuple[str, Rows]]:
    """TinyViT's fused qkv interleaves q, k and v head by head, [q0 k0 v0 | q1 k1 v1 | ...], each
    head key_dim, key_dim and d wide (its forward views (..., heads, -1) and splits [kd, kd, d])."""
    kd, d = attention.key_dim, attention.d
    heads = torch.arange(attention.num_heads)[:, None] * (2 * kd + d)
    spans = {"q": (0, kd), "k": (kd, kd), "v": (2 * kd, d)}
    return {p: ("qkv", (heads + s + torch.arange(n)).flatten()) for p, (s, n) in spans.items()}


# segment_anything's protocol (mobile_sam's Sam is a copy of it) with TinyViT's roles, named
# without importing mobile_sam; its builder computes TinyViT's attention-bias table before it
# loads weights, so an exported file is loaded followed by .eval() (MobileSAM's README does)
register(
    ["mobile_sam.modeling.sam.Sam"],
    SegmentAnything(
        "mobile_sam",
        "mobile_sam",
        Family(
            image_encoder="image_encoder",
            prompt_encoder="prompt_encoder",
            mask_decoder="mask_decoder",
            attention={f"{TINY_VIT_MODULE}.Attention": _interleaved_qkv},
            mlps=(f"{TINY_VIT_MODULE}.Mlp",),
            norms=(f"{TINY_VIT_MODULE}.LayerNorm2d", "mobile_sam.modeling.common.LayerNorm2d"),
            blocks=(f"{TINY_VIT_MODULE}.MBConv", f"{TINY_VIT_MODULE}.TinyViTBlock"),
        ),
        then=".eval()",
    ),
)


def tiny_vit() -> types.ModuleType | None:
    """mobile_sam's TinyViT module once something imported it, else None: no TinyViT part can exist
    before that, so asking "is this module a TinyViT part?" never needs the import."""
    return sys.modules.get(TINY_VIT_MODULE)


def _registry() -> dict:
    with warnings.catch_warnings():
        # mobile_sam imports timm's deprecated paths and re-registers timm's own tiny_vit models:
        # warnings about mobile_sam's code that a user can do nothing about
        warnings.simplefilter("ignore")
        from mobile_sam import sam_model_registry
    return sam_model_registry


@option("model", "mobile_sam")
def build_mobile(
    arch: Literal[
        "vit_t"
    ] = "vit_t",  # fixed: lets configs name the model uniformly (${model.arch})
    checkpoint: str | None = None,  # a local mobile_sam.pt: used instead of the cache / download
    pretrained: bool = True,  # False: random init, no download (tests, benchmarks)
    cache_dir: str | None = None,  # default: $SAMEXP_CACHE or ~/.cache/samexp
    mirror: str | None = None,  # folder or URL holding mobile_sam.pt; $SAMEXP_CHECKPOINT_MIRROR
    download: bool = True,
    seed: Seed = 0,  # of a random init (pretrained=false)
    encoder_size: EncoderSize = None,  # TinyViT runs at 1024 px only: any other size is refused
) -> BaseModel:
    """MobileSAM; `pretrained=False` keeps the seeded random init (same FLOPs, no download)."""
    if encoder_size not in (None, OFFICIAL_IMG_SIZE):  # before a download, not after
        raise SamexpError(
            f"model.encoder_size={encoder_size}: MobileSAM's TinyViT encoder runs at "
            f"{OFFICIAL_IMG_SIZE} px only (its stages are built for a 64x64 output grid); "
            "leave model.encoder_size unset with model=vit_t"
        )
    construct = lambda: _registry()[arch](checkpoint=None)  # noqa: E731
    base = load_or_init(arch, construct, target_of(build_mobile), **weights_source(locals()))
    for module in base.sam.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train = types.MethodType(_statistics_frozen_train, module)
    return base


def _statistics_frozen_train(self: nn.BatchNorm2d, mode: bool = True) -> nn.BatchNorm2d:
    """`train()` of a BatchNorm that keeps its running statistics: eval mode whatever is asked."""
    return nn.Module.train(self, False)
