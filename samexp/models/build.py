"""Build a SAM: the official vit_b/l/h (weights resolved through the checkpoint cache) or a tiny random one.

Every builder returns a `BaseModel`: the `Sam` plus a description of where its weights came from, so
adapter weights saved later can refuse to load onto a different base. `encoder_size` runs the
image encoder at a lower input size (see `resolution.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from samexp.errors import CheckpointError, SamexpError
from samexp.models.resolution import check_encoder_size, resize_encoder

log = logging.getLogger(__name__)

OFFICIAL_ARCHS = ("vit_b", "vit_l", "vit_h")
OFFICIAL_IMG_SIZE, OFFICIAL_PATCH_SIZE = 1024, 16  # what segment_anything's `_build_sam` hard-codes


@dataclass
class BaseModel:
    """A SAM and the identity of its base weights (checked when adapter weights are loaded back)."""

    sam: Sam
    arch: str
    weights_id: str  # sha256 of the checkpoint file, or "random:<arch>:seed<N>"
    build_kwargs: dict = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """What decides the embeddings this base computes: its weights and how it was built (a tiny
        model's depth, an encoder size). Caches key by it, so two architectures that share a seed
        never share an entry."""
        return f"{self.weights_id}:{json.dumps(self.build_kwargs, sort_keys=True)}"

    @property
    def img_size(self) -> int:
        return self.sam.image_encoder.img_size


def build_official(
    arch: str = "vit_b",
    checkpoint: str | None = None,
    pretrained: bool = True,
    cache_dir: str | None = None,
    mirror: str | None = None,
    download: bool = True,
    seed: int = 0,
    encoder_size: int | None = None,
) -> BaseModel:
    """One of Meta's SAMs; `pretrained=False` keeps the random init (benchmarks: same FLOPs, no download)."""
    if arch not in OFFICIAL_ARCHS:
        raise SamexpError(
            f"model.arch={arch!r} is not a SAM architecture; choose one of {OFFICIAL_ARCHS}"
        )
    if encoder_size is not None:  # before a download, not after
        check_encoder_size(encoder_size, OFFICIAL_IMG_SIZE, OFFICIAL_PATCH_SIZE)
    if not pretrained:
        with local_rng(seed):
            sam = sam_model_registry[arch](checkpoint=None)
        base = BaseModel(
            sam.eval(), arch, f"random:{arch}:seed{seed}", {"arch": arch, "seed": seed}
        )
        return _at_encoder_size(base, encoder_size)

    from samexp.models.checkpoints import load_state_dict, resolve_checkpoint

    resolved = resolve_checkpoint(
        arch, checkpoint=checkpoint, cache_dir=cache_dir, mirror=mirror, download=download
    )
    with local_rng():  # the random init is overwritten, but drawing it would move the run's RNG
        sam = sam_model_registry[arch](checkpoint=None)
    state = load_state_dict(resolved.path)
    hint = "Is it a checkpoint of another architecture? Set model=vit_b/vit_l/vit_h to match it."
    try:
        missing, unexpected = sam.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).splitlines()[1:2]
        raise CheckpointError(f"{resolved.path} does not fit SAM {arch}: {first}. {hint}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{resolved.path} does not fit SAM {arch}: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). {hint}"
        )
    log.info("loaded SAM %s from %s", arch, resolved.path)
    return _at_encoder_size(
        BaseModel(sam.eval(), arch, resolved.sha256, {"arch": arch}), encoder_size
    )


@contextmanager
def local_rng(seed: int | None = None) -> Iterator[None]:
    """Module constructors draw their init from torch's global RNG: run them on a fork of it
    (seeded with `seed`, if given), so a build never moves the run's RNG (seeded only by
    `runner.seed_everything`) and the adapter's init that follows still depends on the run's seed."""
    with torch.random.fork_rng(devices=[]):  # CPU only: modules are built on the CPU
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _at_encoder_size(base: BaseModel, encoder_size: int | None) -> BaseModel:
    """`base` with its encoder at `encoder_size` (None: native), recorded so it is rebuilt the same.

    Applied after the weights are loaded: the checkpoint's tensors have the native shapes.
    """
    native = base.img_size
    if encoder_size is None or encoder_size == native:
        return base
    resize_encoder(base.sam, encoder_size)
    base.build_kwargs["encoder_size"] = encoder_size
    log.info(
        "image encoder at %d px (native %d): ~%gx less encoder work",
        encoder_size,
        native,
        round((native / encoder_size) ** 2, 1),
    )
    return base


def tiny_sam(
    img_size: int = 256,
    patch_size: int = 16,
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    window_size: int = 4,
    global_attn_indexes: tuple[int, ...] = (1,),
    prompt_embed_dim: int = 32,
    decoder_depth: int = 2,
    decoder_mlp_dim: int = 64,
    decoder_heads: int = 2,
) -> Sam:
    """A small SAM from segment_anything's own modules (`_build_sam` hard-codes 1024 px and 256 channels)."""
    embedding_size = img_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=4,
            out_chans=prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=window_size,
            global_attn_indexes=tuple(global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(img_size, img_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_heads,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_embed_dim,
        ),
    ).eval()


def build_tiny(
    seed: int = 0, arch: str = "tiny", encoder_size: int | None = None, **kwargs
) -> BaseModel:
    """The tiny SAM, seeded so the same seed always gives the same base weights."""
    if arch != "tiny":
        raise SamexpError(
            f"model.arch of the tiny model is 'tiny', got {arch!r}; use model={arch} instead"
        )
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    with local_rng(seed):
        sam = tiny_sam(**kwargs)
    base = BaseModel(sam, "tiny", f"random:tiny:seed{seed}", {"seed": seed, **kwargs})
    return _at_encoder_size(base, encoder_size)
