"""Mixed precision for the model's forward passes: autocast plus, for fp16, loss scaling.

Only the model runs under autocast; losses and metrics are computed in fp32 from the logits (Dice
sums over a megapixel lose digits in 16-bit). fp16 needs a loss scaler because small gradients
underflow; bf16 has fp32's range and does not.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from samexp.config.errors import SamexpError

log = logging.getLogger(__name__)

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class MixedPrecision:
    device: torch.device
    dtype: torch.dtype | None  # None: plain fp32
    scaler: torch.amp.GradScaler

    @property
    def name(self) -> str:
        """The `trainer.precision` value this was built from."""
        return next(k for k, v in DTYPES.items() if v == self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Before gradient clipping, so the clip threshold means the true gradient norm."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(), skipped by the scaler when fp16 gradients overflowed."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def skip(self, optimizer: torch.optim.Optimizer) -> None:
        """A step left out (non-finite gradients): fp16's scaler still lowers its scale, from the
        overflow its `unscale` saw; nothing to do otherwise."""
        if self.scaler.is_enabled():
            self.scaler.update()


def mixed_precision(precision: str, device: torch.device) -> MixedPrecision:
    """`trainer.precision` for `device`; refuses combinations that cannot work, in the user's words."""
    if precision not in DTYPES:
        raise SamexpError(f"trainer.precision={precision!r}: choose one of {tuple(DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        why = {"cpu": "CPU float16 matmuls are emulated and slower than fp32",
               "mps": "its loss scaling is CUDA's"}.get(device.type, "loss scaling is CUDA's")  # fmt: skip
        raise SamexpError(
            f"trainer.precision=fp16 needs a CUDA device ({why}); use trainer.precision=bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SamexpError(
            "trainer.precision=bf16: this GPU has no bfloat16 support (pre-Ampere); use fp16"
        )
    if precision == "bf16" and device.type == "cpu":
        log.warning(
            "bf16 autocast on CPU is only faster on CPUs with AVX512-BF16/AMX; "
            "elsewhere it is slower than fp32"
        )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    return MixedPrecision(device, DTYPES[precision], scaler)
