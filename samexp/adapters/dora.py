"""DoRA (Liu et al. 2024, weight-decomposed low-rank adaptation): LoRA's low-rank delta on each
weight's direction plus a trained magnitude per output row; peft's LoRA layer with `use_dora`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from samexp.adapters.peft_engine import PeftAdapter
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range

if TYPE_CHECKING:
    from peft import LoraConfig

    from samexp.models.roles import Roles


@register_adapter
class DoraAdapter(PeftAdapter):
    kind = "dora"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        alpha: Annotated[float, POSITIVE] = 8.0,
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # regex over full module names; unset: each image-encoder attention's qkv Linear, whole
        target_modules: str | None = None,
    ) -> None:
        super().__init__(target_modules)
        self.rank, self.alpha, self.dropout = rank, alpha, dropout

    def peft_config(self, targets: list[str], found: Roles) -> LoraConfig:
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            use_dora=True,
            target_modules=targets,
        )
