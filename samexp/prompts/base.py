"""What a prompt strategy is: target masks in, SAM prompts out, randomness only from the given generator.

Training may randomise (jitter, sampling); evaluation must not, so baseline and fine-tuned models
are compared on identical prompts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

from samexp.models.seam import Prompts

if TYPE_CHECKING:
    from torch import nn

    from samexp.data.base import Batch
    from samexp.data.splits import DatasetSplits


class PromptStrategy(ABC):
    """`refinements` > 0 asks for that many extra decoder passes; before each, `refine` turns the
    previous prediction into the next prompts (corrective points, mask feedback). The image
    embedding is computed once and reused by every pass."""

    refinements: int = 0
    # True when the strategy needs no prompt from the user (it learns one per class): every
    # image is then a target for every class, and metrics come per class (mIoU)
    promptless: bool = False

    def prepare(self, sam: nn.Module, splits: DatasetSplits) -> DatasetSplits:
        """Before training: add what the strategy learns to `sam`, shape the data it needs."""
        return splits

    def bind(self, sam: nn.Module) -> None:
        """On a reloaded model: find what `prepare` added (prediction, export)."""

    def prompts_for(
        self, batch: Batch, input_sizes: torch.Tensor, generator: torch.Generator, train: bool
    ) -> Prompts:
        """The prompts of every instance of `batch` (`input_sizes`: M×2, per instance)."""
        return self(batch.masks, input_sizes, generator, train=train)

    @abstractmethod
    def __call__(
        self,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        """masks: M×S×S bool in the input frame; input_sizes: M×2 (h, w) of the unpadded image."""

    def refine(
        self,
        prompts: Prompts,
        low_res_logits: torch.Tensor,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        """Next prompts from the previous pass's M×1×h×w logits (detached). Only called when
        `refinements` > 0."""
        raise NotImplementedError(f"{type(self).__name__} does not refine its prompts")


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes (pixel indices of the extreme foreground pixels) of M×H×W masks -> M×4.

    An empty mask gets the whole frame, so a caller never crashes on it (loaders skip empties).
    """
    m, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ys = torch.arange(h, device=masks.device).expand(m, h)
    xs = torch.arange(w, device=masks.device).expand(m, w)
    y0 = torch.where(rows, ys, h).amin(1)
    y1 = torch.where(rows, ys, -1).amax(1)
    x0 = torch.where(cols, xs, w).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    empty = ~rows.any(1)
    boxes[empty] = torch.tensor([0.0, 0.0, w - 1.0, h - 1.0], device=masks.device)
    return boxes


class RefiningStrategy(PromptStrategy):
    """Starts from another strategy's prompts (`self.initial`) and refines them pass by pass."""

    initial: PromptStrategy

    def __call__(
        self,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        return self.initial(masks, input_sizes, generator, train)
