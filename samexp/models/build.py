"""Build a SAM: the official vit_b/l/h (weights resolved through the checkpoint cache) or a tiny random one
(MobileSAM, `vit_t`, is `mobile.py`, on the same loading path).

Every builder returns a `BaseModel`: the `Sam` plus a description of where its weights came from, so
adapter weights saved later can refuse to load onto a different base. `encoder_size` runs the
image encoder at a lower input size (see `resolution.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Literal, get_args

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from segment_anything.modeling.image_encoder import Attention, Block

from samexp.config.checks import AT_LEAST_1, NON_NEGATIVE, Seed
from samexp.config.errors import CheckpointError
from samexp.config.options import option, target_of
from samexp.data.frame import Pipeline
from samexp.models.family import register
from samexp.models.resolution import check_encoder_size, resize_encoder
from samexp.models.roles import Family, class_name, stacked_qkv
from samexp.models.sam import SegmentAnything

log = logging.getLogger(__name__)

OfficialArch = Literal["vit_b", "vit_l", "vit_h"]
OFFICIAL_ARCHS: tuple[str, ...] = get_args(OfficialArch)
# run the image encoder at this input size (e.g. 512: ~4x less encoder work); None: native.
# check_encoder_size says which sizes fit the model
EncoderSize = int | None
OFFICIAL_IMG_SIZE, OFFICIAL_PATCH_SIZE = 1024, 16  # what segment_anything's `_build_sam` hard-codes

# the family on the seam, and the roles adapters target (samexp.models.roles): the ViT's attention
# stacks q, k and v in its fused qkv (its forward reshapes the output to (..., 3, heads, -1))
register(
    [class_name(Sam)],
    SegmentAnything(
        "segment_anything",
        "segment_anything",
        Family(
            image_encoder="image_encoder",
            prompt_encoder="prompt_encoder",
            mask_decoder="mask_decoder",
            attention={class_name(Attention): stacked_qkv},
            mlps=(class_name(MLPBlock),),
            norms=(class_name(LayerNorm2d),),
            blocks=(class_name(Block),),
        ),
    ),
)


@dataclass
class BaseModel:
    """A SAM and the identity of its base weights (checked when adapter weights are loaded back)."""

    sam: Sam
    arch: str
    weights_id: str  # sha256 of the checkpoint file, or "random:<arch>:seed<N>"
    # the arguments that rebuild it with `target` (a registered model option); where the weights
    # file comes from is never among them: that is the reader's choice
    build_kwargs: dict = field(default_factory=dict)
    target: str = ""

    @property
    def identity(self) -> str:
        """What decides the embeddings this base computes: its weights and how it was built (a tiny
        model's depth, an encoder size). Caches key by it, so two architectures that share a seed
        never share an entry."""
        return f"{self.target}:{self.weights_id}:{json.dumps(self.build_kwargs, sort_keys=True)}"

    @property
    def pipeline(self) -> Pipeline:
        """The input geometry its family gives every image (datasets are built with it)."""
        from samexp.models.seam import pipeline

        return pipeline(self.sam)

    @property
    def img_size(self) -> int:
        return self.pipeline.size

    def caveat(self) -> str | None:
        """What a run on this base can show, when that is less than a pretrained SAM's: said at
        the end of a smoke run, whose zero-shot masks are noise by design."""
        if not self.weights_id.startswith("random:"):
            return None
        return (f"model {self.arch} has random weights: its zero-shot masks are noise, and the "
                "delta shows the pipeline learning these images, not what SAM gains from "
                "adapting to them (pretrained SAM shows that: model=vit_b)")  # fmt: skip


@option("model", "official")
def build_official(
    arch: OfficialArch,
    checkpoint: str | None = None,  # a local .pth: used instead of the cache / download
    pretrained: bool = True,  # False: random init, no download (benchmarks)
    cache_dir: str | None = None,  # default: $SAMEXP_CACHE or ~/.cache/samexp
    mirror: str
    | None = None,  # folder or URL holding the official files; $SAMEXP_CHECKPOINT_MIRROR
    download: bool = True,
    seed: Seed = 0,  # of a random init (pretrained=false)
    encoder_size: EncoderSize = None,
) -> BaseModel:
    """One of Meta's SAMs; `pretrained=False` keeps the random init (benchmarks: same FLOPs, no download)."""
    if encoder_size is not None:  # before a download, not after
        check_encoder_size(encoder_size, OFFICIAL_IMG_SIZE, OFFICIAL_PATCH_SIZE)
    construct = lambda: sam_model_registry[arch](checkpoint=None)  # noqa: E731
    base = load_or_init(arch, construct, target_of(build_official), **weights_source(locals()))
    return _at_encoder_size(base, encoder_size)


# the builder arguments that say where a family's weights come from; every family's builder
# offers these six, and hands them to `load_or_init` by name
WEIGHTS_SOURCE = ("checkpoint", "pretrained", "cache_dir", "mirror", "download", "seed")


def weights_source(arguments: dict) -> dict:
    """`WEIGHTS_SOURCE` of a builder's arguments (it passes its `locals()`)."""
    return {k: arguments[k] for k in WEIGHTS_SOURCE}


def load_or_init(
    arch: str,
    construct: Callable[[], Sam],
    target: str,
    *,
    checkpoint: str | None,
    pretrained: bool,
    cache_dir: str | None,
    mirror: str | None,
    download: bool,
    seed: int,
    unwrap: str | None = None,
    archs: str = "vit_b/vit_l/vit_h/vit_t",
) -> BaseModel:
    """`construct()`'s model (built with no weights) with the checkpoint of `arch` resolved and
    loaded strictly, or with its random init seeded by `seed` (`pretrained=False`). `target` is
    the registered builder that rebuilds it. `unwrap` names the key a family's file keeps its
    state dict under (SAM 2: "model"); `archs` are the models a misfit file is pointed to."""
    if not pretrained:
        with local_rng(seed):
            sam = construct()
        described = {"arch": arch, "pretrained": False, "seed": seed}
        return BaseModel(sam.eval(), arch, f"random:{arch}:seed{seed}", described, target)

    from samexp.models.checkpoints import load_state_dict, resolve_checkpoint

    resolved = resolve_checkpoint(
        arch, checkpoint=checkpoint, cache_dir=cache_dir, mirror=mirror, download=download
    )
    with local_rng():  # the random init is overwritten, but drawing it would move the run's RNG
        sam = construct()
    state = load_state_dict(resolved.path, unwrap)
    hint = f"Is it a checkpoint of another architecture? Set model={archs} to match it."
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
    # eval() after loading, not only before: a module that caches a tensor derived from its
    # weights when it enters eval mode (MobileSAM's attention-bias table) rebuilds it from these
    return BaseModel(sam.eval(), arch, resolved.sha256, {"arch": arch}, target)


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
    *,
    img_size: int,
    patch_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    window_size: int,
    global_attn_indexes: tuple[int, ...] | list[int],
    prompt_embed_dim: int,
    decoder_depth: int,
    decoder_mlp_dim: int,
    decoder_heads: int,
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


Size = Annotated[int, AT_LEAST_1]


@option("model", "tiny")
def build_tiny(
    seed: Seed = 0,
    arch: Literal["tiny"] = "tiny",  # fixed: lets configs name the model uniformly (${model.arch})
    encoder_size: EncoderSize = None,
    img_size: Size = 256,
    patch_size: Size = 16,
    embed_dim: Size = 32,
    depth: Size = 2,
    num_heads: Size = 2,
    window_size: Annotated[int, NON_NEGATIVE] = 4,
    global_attn_indexes: tuple[int, ...] | list[int] = (1,),
    prompt_embed_dim: Size = 32,
    decoder_depth: Size = 2,
    decoder_mlp_dim: Size = 64,
    decoder_heads: Size = 2,
) -> BaseModel:
    """The tiny SAM, seeded so the same seed always gives the same base weights; every size is
    recorded, so the model is rebuilt the same even if a default changes."""
    dims = {k: v for k, v in locals().items() if k not in ("seed", "arch", "encoder_size")}
    dims["global_attn_indexes"] = list(global_attn_indexes)
    with local_rng(seed):
        sam = tiny_sam(**dims)
    described = {"seed": seed, **dims}
    base = BaseModel(sam, "tiny", f"random:tiny:seed{seed}", described, target_of(build_tiny))
    return _at_encoder_size(base, encoder_size)
