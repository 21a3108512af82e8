"""Promptless per-class segmentation: each class owns learned prompt tokens, fed to SAM's mask
decoder in place of a box or points, so a trained model segments every class with no user prompt.

The tokens are parameters of the model (`sam.class_prompts`), trained with the adapter, saved in
the same safetensors file with the class list (`adapters/io.py`) and restored wherever that file
is loaded: a prompt that is drawn at random and never saved cannot be used again.

Every image is trained and evaluated against every class (`EveryClass`): a class absent from an
image is a target with an empty mask, so the model learns to answer "nothing" for it, and the
per-class figures count what it paints where the class is not.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated

import torch
from torch import nn

from samexp.config.checks import AT_LEAST_1, because
from samexp.config.errors import SamexpError
from samexp.config.options import option
from samexp.data.base import Batch, Sample
from samexp.data.splits import DatasetSplits
from samexp.data.views import DatasetView, SampleDataset
from samexp.models.seam import Prompts, prompt_dim
from samexp.prompts.base import PromptStrategy

log = logging.getLogger(__name__)

MODULE = "class_prompts"  # the attribute of the model that holds them; their tensors' name prefix
# declared once: the option's argument and an adapter file's class_prompts.tokens (adapters/meta.py)
TokensPerClass = Annotated[int, because(AT_LEAST_1, "sparse tokens per class")]


class ClassPrompts(nn.Module):
    """`tokens` K×T×C: T learned sparse prompt embeddings for each of the K classes."""

    def __init__(self, classes: list[str], tokens: int, dim: int) -> None:
        super().__init__()
        self.classes = list(classes)
        # N(0, 1), as SAM's own point embeddings start: distinct per class from the first step.
        # Drawn from torch's RNG, which the runner seeds: the same seed gives the same tokens.
        self.tokens = nn.Parameter(torch.randn(len(classes), tokens, dim))

    def spec(self) -> dict:
        """What rebuilds them before their tensor is loaded (saved in the adapter file)."""
        return {"classes": list(self.classes), "tokens": self.tokens.shape[1]}


def attach_class_prompts(sam: nn.Module, classes: list[str], tokens: int) -> ClassPrompts:
    """Give `sam` trainable class prompts (replacing any it had)."""
    module = ClassPrompts(classes, tokens, prompt_dim(sam))
    module.to(next(sam.parameters()).device)
    setattr(sam, MODULE, module)
    return module


def class_prompts_of(sam: nn.Module) -> ClassPrompts | None:
    return getattr(sam, MODULE, None)


@option("prompt", "class_tokens")
class ClassTokenPrompt(PromptStrategy):
    """No prompt from the user: every class of the dataset is one learned prompt. For label-map
    and COCO data (COCO instances of a class are merged into one mask per class)."""

    promptless = True

    def __init__(
        self,
        tokens_per_class: TokensPerClass = 4,
    ) -> None:
        self.tokens_per_class = tokens_per_class
        self.module: ClassPrompts | None = None

    def prepare(self, sam: nn.Module, splits: DatasetSplits) -> DatasetSplits:
        classes = dataset_classes(splits)
        self.module = attach_class_prompts(sam, classes, self.tokens_per_class)
        log.info(
            "class prompts: %d classes x %d tokens (%s)",
            len(classes),
            self.tokens_per_class,
            ", ".join(classes),
        )
        val = EveryClass(splits.val, classes) if splits.val is not None else None
        return DatasetSplits(splits.name, EveryClass(splits.train, classes),
                             EveryClass(splits.test, classes), val)  # fmt: skip

    def bind(self, sam: nn.Module) -> None:
        """Use the class prompts `sam` already holds (a reloaded model)."""
        module = class_prompts_of(sam)
        if module is None:
            raise SamexpError(
                "prompt=class_tokens needs a model trained with it: these weights hold no class "
                "prompts"
            )
        self.module = module

    def prompts_for(
        self, batch: Batch, input_sizes: torch.Tensor, generator: torch.Generator, train: bool
    ) -> Prompts:
        if self.module is None:
            raise SamexpError("prompt=class_tokens is not prepared: no class prompts on the model")
        index = {name: i for i, name in enumerate(self.module.classes)}
        try:
            ids = [index[c] for c in batch.categories]
        except KeyError as e:
            raise SamexpError(
                f"class {e.args[0]!r} has no learned prompt; the model knows "
                f"{', '.join(self.module.classes)}"
            ) from None
        return Prompts(
            sparse=self.module.tokens[torch.tensor(ids, device=self.module.tokens.device)]
        )

    def __call__(self, masks, input_sizes, generator, train) -> Prompts:
        raise SamexpError("prompt=class_tokens prompts by class, not by mask (see prompts_for)")


def dataset_classes(splits: DatasetSplits) -> list[str]:
    """The classes to learn a prompt for: those the dataset declares (label-map class list, COCO
    categories), in its order. A format that declares none cannot be segmented by class."""
    declared = getattr(splits.train, "class_names", None)
    if not declared:
        raise SamexpError(
            f"prompt=class_tokens needs a dataset that declares its classes (dataset=labelmap or "
            f"coco); {splits.name} does not"
        )
    return list(declared)


class EveryClass(DatasetView):
    """Each image with one target per class, in class order: the union of the class's instances,
    or an empty mask where the class is absent. Instances of a class the list lacks are left out,
    with a warning."""

    def __init__(self, dataset: SampleDataset, classes: list[str]) -> None:
        super().__init__(dataset)
        self.classes = list(classes)
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._unknown: set[str] = set()

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        k = len(self.classes)
        masks = torch.zeros((k, *sample.masks.shape[1:]), dtype=torch.bool)
        gt = torch.zeros((k, *sample.gt_masks.shape[1:]), dtype=torch.bool)
        for mask, full, category in zip(sample.masks, sample.gt_masks, sample.categories,
                                        strict=True):  # fmt: skip
            i = self._index.get(category)
            if i is None:  # a test-only COCO category: no prompt was learned for it
                if category not in self._unknown:
                    self._unknown.add(category)
                    log.warning("%s: class %r has no learned prompt (not in the train split's "
                                "classes); its instances are not evaluated", sample.name, category)  # fmt: skip
                continue
            masks[i] |= mask
            gt[i] |= full
        return dataclasses.replace(sample, masks=masks, gt_masks=gt, categories=list(self.classes))
