"""SAM 2.1 image models (`model=sam2.1_hiera_t|s|b+|l`, and `sam2_tiny` for tests) on the seam
(`samexp.models.family`), built from the `sam2` package's own modules and packaged yaml files.

This is the only samexp module that imports `sam2`, and it does so through `import_sam2`:
`sam2/__init__.py` initialises Hydra's global state when nothing else has, which would make
samexp's own `@hydra.main` (and every `initialize_config_dir`) refuse to start. For the same reason
models are built with OmegaConf + `hydra.utils.instantiate` from the yaml file, never with
`sam2.build_sam.build_sam2`, which composes through that global state.

The cached encoder output is the neck's raw feature levels: `sam_mask_decoder.conv_s0/conv_s1`
and `no_mem_embed`, which stock SAM 2 applies at `set_image` time, belong to the decoder side
(they train under adapter=decoder/full), so `decode` applies them.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from samexp.config.checks import Seed
from samexp.config.errors import SamexpError
from samexp.config.options import option, target_of
from samexp.data.frame import Pipeline
from samexp.models.build import BaseModel, EncoderSize, load_or_init, local_rng, weights_source
from samexp.models.family import Features, ModelFamily, register
from samexp.models.roles import Family, stacked_qkv

if TYPE_CHECKING:  # the seam imports the families' registry
    from samexp.models.seam import Prompts

log = logging.getLogger(__name__)

Sam2Arch = Literal["sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"]
CONFIG_DIR = "configs/sam2.1"  # inside the sam2 package; what stock build_sam2 is given
TINY_ARCH = "sam2_tiny"
# SAM2Transforms' Normalize (on 0..1 input), in the 0..255 units samexp's inputs come in
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# what stock build_sam2(apply_postprocessing=True) adds: a single mask falls back to the most
# stable of the three when it is unstable (adds no parameters)
POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
_HIERA = "sam2.modeling.backbones.hieradet"
_UTILS = "sam2.modeling.sam2_utils"


def import_sam2() -> None:
    """Import sam2 leaving Hydra's global state as it was: `sam2/__init__.py` initialises it when
    nothing has (then samexp's own Hydra app and config tests would refuse to start). Only the
    first import runs that code, so every use of sam2 in samexp goes through here first."""
    hydra = GlobalHydra.instance()
    was = hydra.is_initialized()
    import sam2  # noqa: F401

    if not was and hydra.is_initialized():
        hydra.clear()


def tiny_overrides(image_size: int) -> list[str]:
    """Overrides of `sam2.1_hiera_t.yaml` giving a ~0.65 M-parameter SAM 2.1 (a stock
    `build_sam2(..., hydra_overrides_extra=tiny_overrides(S))` builds the same). The SAM heads
    are not configurable (2048-wide MLPs, 8 heads: the neck's width must be a multiple of 16);
    Hiera's q-pool blocks cannot be global-attention blocks, hence stages [1,1,2,1]."""
    fs = image_size // 16
    return [
        f"model.image_size={image_size}",
        "model.image_encoder.trunk.embed_dim=8",
        "model.image_encoder.trunk.num_heads=1",
        "model.image_encoder.trunk.stages=[1,1,2,1]",
        "model.image_encoder.trunk.global_att_blocks=[3]",
        "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
        "++model.image_encoder.trunk.window_spec=[8,4,4,2]",
        "model.image_encoder.neck.d_model=32",
        "model.image_encoder.neck.position_encoding.num_pos_feats=32",
        "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
        "model.memory_attention.d_model=32",
        "model.memory_attention.num_layers=1",
        "model.memory_attention.layer.d_model=32",
        "model.memory_attention.layer.dim_feedforward=64",
        "model.memory_attention.layer.self_attention.embedding_dim=32",
        f"model.memory_attention.layer.self_attention.feat_sizes=[{fs},{fs}]",
        "model.memory_attention.layer.cross_attention.embedding_dim=32",
        "model.memory_attention.layer.cross_attention.kv_in_dim=16",
        f"model.memory_attention.layer.cross_attention.feat_sizes=[{fs},{fs}]",
        "model.memory_encoder.out_dim=16",
        "++model.memory_encoder.in_dim=32",
        "model.memory_encoder.position_encoding.num_pos_feats=16",
        "++model.memory_encoder.mask_downsampler.embed_dim=32",
        "model.memory_encoder.fuser.layer.dim=32",
        "model.memory_encoder.fuser.num_layers=1",
        "model.num_maskmem=2",
    ]


def sam2_model(arch: str, overrides: list[str] | tuple[str, ...] = ()) -> nn.Module:
    """A SAM2Base with random weights from the packaged `configs/sam2.1/<arch>.yaml` (what stock
    `build_sam2` instantiates, with the same postprocessing), composed without global Hydra."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import_sam2()
    package = importlib.util.find_spec("sam2").submodule_search_locations[0]
    cfg = OmegaConf.load(Path(package) / CONFIG_DIR / f"{arch}.yaml")
    given = [o.lstrip("+") for o in (*overrides, *POSTPROCESSING)]
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(given))
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True).eval()


class Sam2(ModelFamily):
    """SAM 2.1's image path: input stretched to S×S (`SAM2Transforms`), three feature levels."""

    name = "sam2"
    pads_boxed_prompts = True  # a box is two points to its prompt encoder, which pads points

    def __init__(self, roles: Family) -> None:
        self.roles = roles

    def pipeline(self, model: nn.Module) -> Pipeline:
        return Pipeline(model.image_size, stretch=True)

    def normalise(self, model: nn.Module, images: torch.Tensor,
                  input_sizes: list[tuple[int, int]]) -> torch.Tensor:  # fmt: skip
        """`SAM2Transforms`' Normalize, in 0..255 units; a stretched image has no padding."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255
        return (images.float() - mean) / std

    def encode(self, model: nn.Module, x: torch.Tensor) -> Features:
        """The neck's levels as they leave the image encoder (stride 4, 8, 16), before the
        decoder-side conv_s0/conv_s1 and no_mem_embed. Contiguous, as the embedding cache hands
        them back: the neck leaves two levels channels-last, and the decoder's convolutions would
        round those differently, so a cached run would drift from an uncached one."""
        fpn0, fpn1, embed = (f.contiguous() for f in model.image_encoder(x)["backbone_fpn"])
        return {"fpn0": fpn0, "fpn1": fpn1, "image_embed": embed}

    def decode(self, model: nn.Module, features: Features, prompts: Prompts,
               multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """What `SAM2ImagePredictor.set_image` adds to the features, then its `_predict`."""
        embed, high_res = self._image_inputs(model, features)
        sparse, dense = self._prompt_embeddings(model, prompts)
        low_res, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=len(sparse) > 1,
            high_res_features=high_res,
        )
        return low_res, iou

    @staticmethod
    def _image_inputs(model: nn.Module, features: Features) -> tuple[torch.Tensor, list | None]:
        """What `SAM2ImagePredictor.set_image` adds to the encoder's levels: the "no memory"
        embedding, and the decoder's own convolutions of the two high-resolution levels."""
        embed, high_res = features["image_embed"], None
        if model.directly_add_no_mem_embed:
            embed = embed + model.no_mem_embed.view(1, -1, 1, 1)
        if model.use_high_res_features_in_sam:
            decoder = model.sam_mask_decoder
            high_res = [decoder.conv_s0(features["fpn0"]), decoder.conv_s1(features["fpn1"])]
        return embed, high_res

    def decode_points(self, model: nn.Module, features: Features, coords: torch.Tensor,
                      labels: torch.Tensor, mask_input: torch.Tensor,
                      has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """SAM 2's prompt encoder reads the same labels (its `_embed_points` selects with
        `torch.where`); the mask input is blended in by `has_mask_input` as SAM's ONNX model does;
        token 0 becomes what the decoder answers for one mask, which on SAM 2.1 falls back to
        the best candidate when token 0 is unstable (`dynamic_multimask_via_stability`)."""
        embed, high_res = self._image_inputs(model, features)
        encoder, decoder = model.sam_prompt_encoder, model.sam_mask_decoder
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = (
            has_mask_input * encoder.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        )
        masks, iou, _, _ = decoder.predict_masks(
            image_embeddings=embed,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=encoder._embed_points(coords, labels, pad=False),
            dense_prompt_embeddings=dense,
            repeat_image=True,
            high_res_features=high_res,
        )
        single, single_iou = masks[:, :1], iou[:, :1]
        if decoder.dynamic_multimask_via_stability:
            single, single_iou = decoder._dynamic_multimask_via_stability(masks, iou)
        return torch.cat([single, masks[:, 1:]], 1), torch.cat([single_iou, iou[:, 1:]], 1)

    @staticmethod
    def _prompt_embeddings(model: nn.Module, p: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """As `_predict`: a box is two points labelled 2 and 3, put before the clicks; learned
        tokens go in as they are, beside the 'no mask' dense embedding."""
        encoder = model.sam_prompt_encoder
        if p.sparse is not None:
            h, w = encoder.image_embedding_size
            dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            return p.sparse, dense.expand(len(p.sparse), -1, h, w)
        points = None if p.points is None else (p.points, p.labels)
        if p.boxes is not None:
            corners = p.boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=p.boxes.device)
            corner_labels = corner_labels.repeat(len(corners), 1)
            if points is None:
                points = (corners, corner_labels)
            else:
                points = (
                    torch.cat([corners, points[0]], 1),
                    torch.cat([corner_labels, points[1]], 1),
                )
        return encoder(points=points, boxes=None, masks=p.mask_inputs)

    def prompt_dim(self, model: nn.Module) -> int:
        return model.sam_prompt_encoder.embed_dim

    def stock_checkpoint(self, state: dict[str, torch.Tensor]) -> Any:
        return {"model": state}  # sam2.build_sam._load_checkpoint reads ["model"]

    def how_to_load(self, arch: str, build_kwargs: dict, path: Path) -> str:
        config = (
            f"{CONFIG_DIR}/sam2.1_hiera_t.yaml"
            if arch == TINY_ARCH
            else f"{CONFIG_DIR}/{arch}.yaml"
        )
        extra = ""
        if arch == TINY_ARCH:
            size = build_kwargs.get("image_size", 256)
            extra = f", hydra_overrides_extra=samexp.models.sam2.tiny_overrides({size})"
        return f'sam2.build_sam.build_sam2("{config}", {str(path)!r}, device="cpu"{extra})'

    def mask_generator(self, predictor: Any, settings: dict[str, Any]) -> Any:
        """Stock `SAM2AutomaticMaskGenerator`, its own predictor swapped for samexp's."""
        import_sam2()
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        with warnings.catch_warnings():  # its SAM2Transforms calls torch.jit.script (deprecated)
            warnings.simplefilter("ignore", FutureWarning)
            generator = SAM2AutomaticMaskGenerator(predictor.model, **settings)
        generator.predictor = _StockView(predictor)
        return generator


class _StockView:
    """samexp's `Predictor` under the names `SAM2AutomaticMaskGenerator` calls on stock
    `SAM2ImagePredictor` (images in and masks out through the one pipeline)."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self._transforms = self  # the generator maps its points with _transforms.transform_coords

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def set_image(self, image: Any) -> None:
        self.predictor.set_image(image)

    def reset_predictor(self) -> None:
        self.predictor.reset_image()

    def transform_coords(self, coords: torch.Tensor, normalize: bool = False,
                         orig_hw: tuple[int, int] | None = None) -> torch.Tensor:  # fmt: skip
        return self.predictor.frame.points(coords)  # image pixels -> the stretched S×S frame

    def _predict(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                 boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                 multimask_output: bool = True, return_logits: bool = False,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        masks, iou, low_res = self.predictor.predict_torch(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
        )
        return masks, iou, torch.clamp(low_res, -32.0, 32.0)  # as stock _predict


# Hiera's fused qkv stacks [q | k | v], each a third (its forward reshapes to (B, HW, 3, heads,
# C)); classes named as strings, so registering never imports sam2
register(
    ["sam2.modeling.sam2_base.SAM2Base"],
    Sam2(
        Family(
            image_encoder="image_encoder",
            prompt_encoder="sam_prompt_encoder",
            mask_decoder="sam_mask_decoder",
            attention={f"{_HIERA}.MultiScaleAttention": stacked_qkv},
            mlps=(f"{_UTILS}.MLP",),
            norms=(f"{_UTILS}.LayerNorm2d",),
            blocks=(f"{_HIERA}.MultiScaleBlock",),
        )
    ),
)


@option("model", "sam2")
def build_sam2(
    arch: Sam2Arch,
    checkpoint: str
    | None = None,  # a local sam2.1_hiera_*.pt: used instead of the cache / download
    pretrained: bool = True,  # False: random init, no download (benchmarks)
    cache_dir: str | None = None,  # default: $SAMEXP_CACHE or ~/.cache/samexp
    mirror: str
    | None = None,  # folder or URL holding the official files; $SAMEXP_CHECKPOINT_MIRROR
    download: bool = True,
    seed: Seed = 0,  # of a random init (pretrained=false)
    encoder_size: EncoderSize = None,  # SAM 2.1 runs at its native 1024 px only
) -> BaseModel:
    """One of Meta's SAM 2.1 image models; `pretrained=False` keeps the seeded random init."""
    if encoder_size is not None:  # before a download, not after
        raise SamexpError(
            f"model.encoder_size={encoder_size}: SAM 2.1 runs at its native size only (Hiera's "
            "window and position-embedding tiling are built for it); leave model.encoder_size unset"
        )
    return load_or_init(
        arch,
        lambda: sam2_model(arch),
        target_of(build_sam2),
        **weights_source(locals()),
        unwrap="model",
        archs="sam2.1_hiera_t/sam2.1_hiera_s/sam2.1_hiera_b+/sam2.1_hiera_l",
    )


@option("model", "sam2_tiny")
def build_sam2_tiny(
    seed: Seed = 0,
    arch: Literal["sam2_tiny"] = TINY_ARCH,  # fixed: lets configs name the model uniformly
    image_size: Literal[256, 512, 1024] = 256,
    encoder_size: EncoderSize = None,  # the tiny model is built at image_size: set that instead
) -> BaseModel:
    """A tiny random SAM 2.1 from sam2's own modules (~0.65 M parameters), seeded."""
    if encoder_size is not None:
        raise SamexpError(
            f"model.encoder_size={encoder_size}: the tiny SAM 2.1 is built at its size; "
            "set model.image_size instead"
        )
    with local_rng(seed):
        sam = sam2_model("sam2.1_hiera_t", tiny_overrides(image_size))
    described = {"seed": seed, "image_size": image_size}
    return BaseModel(
        sam, TINY_ARCH, f"random:{TINY_ARCH}:seed{seed}", described, target_of(build_sam2_tiny)
    )
