"""Mask feedback: a second decoder pass that adds the first pass's logits as a dense mask prompt,
the way SAM refines its own output (the SAM paper's last training iteration)."""

from __future__ import annotations

import dataclasses

import torch

from samexp.config.errors import SamexpError
from samexp.config.options import option
from samexp.models.seam import Prompts
from samexp.prompts.base import PromptStrategy, RefiningStrategy


@option("prompt", "mask")
class MaskPrompt(RefiningStrategy):
    """Pass 1: `initial`'s prompts. Pass 2: the same prompts plus pass 1's low-res logits as
    `mask_inputs`, so training teaches the decoder to improve a mask it was given."""

    refinements = 1

    def __init__(self, initial: PromptStrategy) -> None:
        if not isinstance(initial, PromptStrategy):
            raise SamexpError(
                f"prompt.initial must be a prompt strategy (a node with _target_), got {initial!r}"
            )
        if initial.refinements:
            raise SamexpError(
                f"prompt.initial must be a single-pass strategy; {type(initial).__name__} "
                f"refines its prompts itself (use it directly instead of inside prompt=mask)"
            )
        self.initial = initial

    def refine(
        self,
        prompts: Prompts,
        low_res_logits: torch.Tensor,
        masks: torch.Tensor,
        input_sizes: torch.Tensor,
        generator: torch.Generator,
        train: bool,
    ) -> Prompts:
        # unthresholded logits, as SAM feeds back its own previous prediction
        return dataclasses.replace(prompts, mask_inputs=low_res_logits)
