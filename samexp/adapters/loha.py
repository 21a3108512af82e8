"""LoHa (Hyeon-Woo et al. 2022, FedPara): the delta is the Hadamard product of two low-rank
products, a higher effective rank for the same parameters as LoRA; peft's LoHa layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from samexp.adapters.peft_engine import PeftAdapter
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range

if TYPE_CHECKING:
    from peft import LoHaConfig

    from samexp.models.roles import Roles


@register_adapter
class LohaAdapter(PeftAdapter):
    kind = "loha"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        alpha: Annotated[float, POSITIVE] = 8.0,
        # while training: a rank's share of the delta dropped, and the whole delta skipped
        rank_dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        module_dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # regex over full module names; unset: each image-encoder attention's qkv Linear, whole
        target_modules: str | None = None,
    ) -> None:
        super().__init__(target_modules)
        self.rank, self.alpha = rank, alpha
        self.rank_dropout, self.module_dropout = rank_dropout, module_dropout

    def peft_config(self, targets: list[str], found: Roles) -> LoHaConfig:
        from peft import LoHaConfig

        return LoHaConfig(
            r=self.rank,
            alpha=self.alpha,
            rank_dropout=self.rank_dropout,
            module_dropout=self.module_dropout,
            target_modules=targets,
        )
