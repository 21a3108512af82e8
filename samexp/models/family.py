"""The model-family seam: what samexp needs of a family of Segment Anything models, as one small
protocol every family implements once, in its own module.

Training, evaluation, the embedding cache, predict, automatic masks, the demo and export call
these methods (through `samexp.models.seam`), never a family's classes, so a new family is one
module (its builder, its roles, this protocol), one yaml per size and its checkpoint entries:
no edit to the runner, the loop, the adapters, predict, the demo or export.

A family is registered by the class names of the models its builders return (the way parameter
roles are, `samexp.models.roles`), so naming a class never imports its package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from samexp.config.errors import SamexpError
from samexp.data.frame import Pipeline
from samexp.models.roles import Family as Roles
from samexp.models.roles import class_name, register_family

if TYPE_CHECKING:
    from samexp.models.seam import Prompts

# an image's features, batch first, one entry per level: a family's encoder output, what its
# decoder reads, and what the embedding cache keeps (SAM: image_embed; SAM 2: three levels)
Features = dict[str, torch.Tensor]


class ModelFamily(ABC):
    """One family's answers. Methods take the built model (an `nn.Module`), so a family holds
    no state and one instance serves every model of the family."""

    name: str  # e.g. "segment_anything", shown in messages
    roles: Roles  # where its image encoder, prompt encoder and mask decoder and their parts are
    # whether its prompt encoder appends a "not a point" to prompts that hold a box too: SAM pads
    # only box-less clicks; SAM 2 passes a box as two points, so it always pads. The ONNX decoder
    # takes the points as written, and a runtime writes them as the family's own predictor would
    pads_boxed_prompts: bool = False

    # ---- the image pipeline -----------------------------------------------------------------
    @abstractmethod
    def pipeline(self, model: nn.Module) -> Pipeline:
        """The input geometry every image takes into `model` (side, stretched or padded)."""

    def mask_threshold(self, model: nn.Module) -> float:
        """Logits above it are foreground."""
        return 0.0

    # ---- encode once, decode many -------------------------------------------------------------
    @abstractmethod
    def normalise(self, model: nn.Module, images: torch.Tensor,
                  input_sizes: list[tuple[int, int]]) -> torch.Tensor:  # fmt: skip
        """uint8 B×3×S×S model inputs (from `pipeline`) -> the float tensor the encoder takes."""

    @abstractmethod
    def encode(self, model: nn.Module, x: torch.Tensor) -> Features:
        """The image encoder on normalised inputs: every feature level the decoder reads, batch
        first. Only modules of the image-encoder role may run here (the cache keeps the result
        while the rest trains)."""

    @abstractmethod
    def decode(self, model: nn.Module, features: Features, prompts: Prompts,
               multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Prompts of M instances on ONE image (`features` batch 1) -> low-res logits M×C×h×w
        (h, w = S/4) and predicted IoU M×C. Learned tokens (`prompts.sparse`) go in as sparse
        embeddings beside the family's "no mask" dense embedding."""

    @abstractmethod
    def decode_points(self, model: nn.Module, features: Features, coords: torch.Tensor,
                      labels: torch.Tensor, mask_input: torch.Tensor,
                      has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """`decode` in the prompt convention of SAM's ONNX model (`segment_anything/utils/onnx.py`),
        which the ONNX decoder graph (`samexp.models.onnx`) exports: every prompt as B×N points in
        the input frame, labelled 1 foreground, 0 background, 2 / 3 a box's top-left / bottom-right
        corner, -1 padding; `mask_input` (B×1×4h×4w) counts where `has_mask_input` (1) is 1.
        Returns every mask token, B×4×h×w logits and B×4 IoU: token 0 is the family's single-mask
        answer (what `decode(multimask_output=False)` gives), tokens 1..3 its three candidates.
        Traced for export: no control flow on tensor values."""

    @abstractmethod
    def prompt_dim(self, model: nn.Module) -> int:
        """Width of a sparse prompt token (learned class prompts are made this wide)."""

    # ---- export and the stock API -------------------------------------------------------------
    @abstractmethod
    def stock_checkpoint(self, state: dict[str, torch.Tensor]) -> Any:
        """What `torch.save` writes so the family's own loader reads `state` unchanged."""

    @abstractmethod
    def how_to_load(self, arch: str, build_kwargs: dict, path: Path) -> str:
        """The Python line that rebuilds an exported model with the family's own package."""

    @abstractmethod
    def mask_generator(self, predictor: Any, settings: dict[str, Any]) -> Any:
        """The family's stock automatic mask generator (`.generate(image)`) running over
        samexp's `Predictor` (so its images take the one pipeline). `settings` are the
        arguments SAM's and SAM 2's generators share (`predict.config.AutoConfig`)."""


_FAMILIES: dict[str, ModelFamily] = {}


def register(model_classes: Iterable[str], family: ModelFamily) -> ModelFamily:
    """Make `family` the answer for models of `model_classes` (the family module calls it on
    import); its roles are registered with it."""
    names = list(model_classes)
    register_family(names, family.roles)
    for name in names:
        _FAMILIES[name] = family
    return family


def family_of(model: nn.Module) -> ModelFamily:
    """The family of a built model; a class no family registered is refused in one line."""
    family = _FAMILIES.get(class_name(type(model)))
    if family is None:
        raise SamexpError(
            f"samexp knows no model family of {type(model).__name__} "
            f"({class_name(type(model))}): a family module registers it with "
            "samexp.models.family.register"
        )
    return family
