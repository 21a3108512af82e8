"""Mask feedback: pass 1 = the initial strategy's prompts, pass 2 = the same prompts plus exactly
the logits of pass 1."""

from __future__ import annotations

import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.prompts.box import BoxPrompt
from samexp.prompts.iterative import IterativePrompt
from samexp.prompts.mask import MaskPrompt
from samexp.prompts.points import PointsPrompt
from tests.conftest import compose_config
from tests.prompts.conftest import check_through_seam, random_masks


def test_mask_prompt_asks_for_exactly_one_refinement():
    assert MaskPrompt(BoxPrompt()).refinements == 1


@pytest.mark.parametrize("train", [True, False])
def test_first_pass_uses_the_initial_strategys_prompts(train):
    masks, sizes = random_masks(0)
    first = MaskPrompt(BoxPrompt(jitter=0.3))(masks, sizes, torch.Generator().manual_seed(3), train)
    alone = BoxPrompt(jitter=0.3)(masks, sizes, torch.Generator().manual_seed(3), train)
    assert torch.equal(first.boxes, alone.boxes) and first.mask_inputs is None


def test_refine_feeds_back_exactly_the_given_logits_and_keeps_the_prompts():
    masks, sizes = random_masks(1)
    prompt = MaskPrompt(PointsPrompt(positive=2, negative=1))
    first = prompt(masks, sizes, torch.Generator().manual_seed(0), train=True)
    logits = torch.randn(len(masks), 1, 16, 16)
    second = prompt.refine(first, logits, masks, sizes, torch.Generator(), train=True)
    assert second.mask_inputs is logits
    assert torch.equal(second.points, first.points) and torch.equal(second.labels, first.labels)
    assert second.boxes is None


def test_initial_must_be_a_single_pass_prompt_strategy():
    with pytest.raises(SamexpError, match="prompt.initial"):
        MaskPrompt({"_target_": "samexp.prompts.box.BoxPrompt"})  # type: ignore[arg-type]
    with pytest.raises(SamexpError, match="prompt.initial"):
        MaskPrompt(IterativePrompt())


def test_config_builds_the_nested_initial_strategy_and_lets_it_be_swapped():
    from hydra.utils import instantiate

    default = instantiate(compose_config(["prompt=mask"]).prompt)
    assert isinstance(default, MaskPrompt) and isinstance(default.initial, BoxPrompt)
    swapped = instantiate(
        compose_config(
            [
                "prompt=mask",
                "prompt.initial._target_=samexp.prompts.points.PointsPrompt",
                "+prompt.initial.positive=2",
            ]
        ).prompt
    )
    assert isinstance(swapped.initial, PointsPrompt) and swapped.initial.positive == 2


def test_mask_prompt_runs_through_the_seam(tiny):
    passes = check_through_seam(tiny, MaskPrompt(BoxPrompt()))
    assert not torch.allclose(passes[0][0], passes[1][0])  # the fed-back mask changes the output
