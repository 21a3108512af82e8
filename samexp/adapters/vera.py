"""VeRA (Kopiczko et al. 2024): one pair of frozen random projections shared by every target, each
target training only two scaling vectors; peft's VeRA layer.

The shared projections are drawn at the largest target's size and each target uses its top-left
slice, so targets of different shapes (Hiera's qkv grows stage by stage, SAM's decoder mixes 256
and 128 wide layers) share them with no conflict. They are never saved: reloading draws them again
from `projection_seed` (torch's CPU generator), so only the vectors travel in the adapter file.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated

from torch import nn

from samexp.adapters.peft_engine import ADAPTER_NAME, PeftAdapter
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Range

if TYPE_CHECKING:
    from peft import VeraConfig

    from samexp.models.roles import Roles


@register_adapter
class VeraAdapter(PeftAdapter):
    kind = "vera"

    def __init__(
        self,
        # the shared projections' rank: large (peft's default), they cost no trained parameters
        rank: Annotated[int, AT_LEAST_1] = 256,
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # the initial value of the trained input-side scaling vector (the output side starts at 0)
        d_initial: Annotated[float, POSITIVE] = 0.1,
        projection_seed: Annotated[int, NON_NEGATIVE] = 0,
        # regex over full module names; unset: each image-encoder attention's qkv Linear, whole
        target_modules: str | None = None,
    ) -> None:
        super().__init__(target_modules)
        self.rank, self.dropout, self.d_initial = rank, dropout, d_initial
        self.projection_seed = projection_seed

    def peft_config(self, targets: list[str], found: Roles) -> VeraConfig:
        from peft import VeraConfig

        with warnings.catch_warnings():  # "not saving the projections": by design, see above
            warnings.simplefilter("ignore", UserWarning)
            return VeraConfig(
                r=self.rank,
                vera_dropout=self.dropout,
                d_initial=self.d_initial,
                projection_prng_key=self.projection_seed,
                save_projection=False,
                target_modules=targets,
            )

    def inject(self, config: VeraConfig, model: nn.Module) -> None:
        """Through VeRA's tuner: peft's `inject_adapter_in_model` refuses methods with shared state,
        which it keeps on the tuner; every layer also holds the shared projections itself, so the
        injected model needs no tuner afterwards."""
        from peft.tuners.vera import VeraModel

        VeraModel(model, config, ADAPTER_NAME)
