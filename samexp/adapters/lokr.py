"""LoKr (LyCORIS, Yeh et al. 2024): the delta is a Kronecker product of a small matrix and a
low-rank one, fewer parameters than LoRA at the same rank; peft's LoKr layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from samexp.adapters.peft_engine import PeftAdapter
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range

if TYPE_CHECKING:
    from peft import LoKrConfig

    from samexp.models.roles import Roles


@register_adapter
class LokrAdapter(PeftAdapter):
    kind = "lokr"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        alpha: Annotated[float, POSITIVE] = 8.0,
        # while training: a rank's share of the delta dropped, and the whole delta skipped
        rank_dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        module_dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # the small Kronecker factor low-rank too (fewer parameters still)
        decompose_both: bool = False,
        # regex over full module names; unset: each image-encoder attention's qkv Linear, whole
        target_modules: str | None = None,
    ) -> None:
        super().__init__(target_modules)
        self.rank, self.alpha = rank, alpha
        self.rank_dropout, self.module_dropout = rank_dropout, module_dropout
        self.decompose_both = decompose_both

    def peft_config(self, targets: list[str], found: Roles) -> LoKrConfig:
        from peft import LoKrConfig

        return LoKrConfig(
            r=self.rank,
            alpha=self.alpha,
            rank_dropout=self.rank_dropout,
            module_dropout=self.module_dropout,
            decompose_both=self.decompose_both,
            target_modules=targets,
        )
