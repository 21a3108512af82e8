"""The segment_anything family on the seam (`samexp.models.family`): Meta's SAM (vit_b/l/h), the
tiny test SAM built from its modules, and MobileSAM, whose `mobile_sam` package is a copy of
segment_anything's with a TinyViT encoder (same `Sam` interface; its module registers its own
roles with this protocol).

SAM's input is the image resized by its longest side and zero-padded bottom/right to S×S,
normalised with ImageNet's mean and std in 0..255 units (`Sam.preprocess`); one feature level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from samexp.data.frame import Pipeline
from samexp.models.family import Features, ModelFamily
from samexp.models.roles import Family as Roles

if TYPE_CHECKING:  # the seam imports the families' registry
    from samexp.models.seam import Prompts


class SegmentAnything(ModelFamily):
    """`package` is the module whose `sam_model_registry` loads an exported file unchanged."""

    def __init__(self, name: str, package: str, roles: Roles, then: str = "") -> None:
        self.name, self.package, self.roles, self.then = name, package, roles, then

    def pipeline(self, model: nn.Module) -> Pipeline:
        return Pipeline(model.image_encoder.img_size)

    def mask_threshold(self, model: nn.Module) -> float:
        return float(model.mask_threshold)

    def normalise(self, model: nn.Module, images: torch.Tensor,
                  input_sizes: list[tuple[int, int]]) -> torch.Tensor:  # fmt: skip
        """As `Sam.preprocess`, which pads after normalising: the padding is zeroed again. The
        sizes may be a B×2 tensor (the ONNX encoder graph's input): comparisons, no slicing."""
        x = (images.float() - model.pixel_mean) / model.pixel_std
        sizes = torch.as_tensor(input_sizes, device=x.device).reshape(-1, 2, 1, 1)
        rows = torch.arange(x.shape[-2], device=x.device).view(1, 1, -1, 1)
        cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, 1, -1)
        valid = (rows < sizes[:, :1]) & (cols < sizes[:, 1:])
        return x * valid

    def encode(self, model: nn.Module, x: torch.Tensor) -> Features:
        return {"image_embed": model.image_encoder(x)}

    def decode(self, model: nn.Module, features: Features, prompts: Prompts,
               multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        sparse, dense = self._prompt_embeddings(model, prompts)
        return model.mask_decoder(
            image_embeddings=features["image_embed"],
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    @staticmethod
    def _prompt_embeddings(model: nn.Module, p: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse and dense embeddings of the prompts; learned tokens go in as they are, beside the
        'no mask' dense embedding SAM uses when it is given no mask."""
        encoder = model.prompt_encoder
        if p.sparse is None:
            return encoder(
                points=None if p.points is None else (p.points, p.labels),
                boxes=p.boxes,
                masks=p.mask_inputs,
            )
        h, w = encoder.image_embedding_size
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(len(p.sparse), -1, h, w)
        return p.sparse, dense

    def decode_points(self, model: nn.Module, features: Features, coords: torch.Tensor,
                      labels: torch.Tensor, mask_input: torch.Tensor,
                      has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Stock `SamOnnxModel`'s prompt embedding (the convention is its own), then the decoder
        with every mask token; SAM's single-mask answer is token 0 as it is."""
        from segment_anything.utils.onnx import SamOnnxModel  # MobileSAM's copy is the same

        stock = SamOnnxModel(model, return_single_mask=False)
        return model.mask_decoder.predict_masks(
            image_embeddings=features["image_embed"],
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=stock._embed_points(coords, labels),
            dense_prompt_embeddings=stock._embed_masks(mask_input, has_mask_input),
        )

    def prompt_dim(self, model: nn.Module) -> int:
        return model.prompt_encoder.embed_dim

    def stock_checkpoint(self, state: dict[str, torch.Tensor]) -> Any:
        return state  # sam_model_registry[arch](checkpoint=...) reads a bare state dict

    def how_to_load(self, arch: str, build_kwargs: dict, path: Path) -> str:
        """Stock `sam_model_registry` wherever it can; a tiny SAM or one whose encoder runs at
        another size is rebuilt first, then given the state dict."""
        size = build_kwargs.get("encoder_size")
        registry = f"{self.package}.sam_model_registry[{arch!r}]"
        if arch != "tiny" and size is None:
            return f"{registry}(checkpoint={str(path)!r}){self.then}"
        if arch == "tiny":
            minus = "seed and encoder_size" if size is not None else "seed"
            json_name = path.with_suffix(".json").name
            sam = f"samexp.models.build.tiny_sam(**build_kwargs minus {minus} from {json_name})"
        else:
            sam = f"{registry}()"
        if size is not None:
            sam = f"samexp.models.resolution.resize_encoder({sam}, {size})"
        return f"sam = {sam}; sam.load_state_dict(torch.load({str(path)!r}, weights_only=True))"

    def mask_generator(self, predictor: Any, settings: dict[str, Any]) -> Any:
        from segment_anything import SamAutomaticMaskGenerator

        generator = SamAutomaticMaskGenerator(predictor.model, **settings)
        generator.predictor = predictor
        return generator
