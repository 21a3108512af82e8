"""Where a run goes: auto prefers CUDA, then Apple's GPU (MPS), then the CPU; a device the machine
lacks, or an option the device cannot do, is refused in one line naming the key."""

from __future__ import annotations

import pytest
import torch

from samexp.config import devices
from samexp.config.distributed import World, start
from samexp.config.errors import SamexpError
from samexp.models.attention import resolve_kernel
from samexp.training.precision import mixed_precision

MPS = torch.device("mps")


@pytest.fixture
def a_mac(monkeypatch):
    """This machine as a Mac with Apple silicon would look to samexp (no CUDA, MPS available)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: True)


def test_auto_picks_apples_gpu_on_a_mac(a_mac):
    assert devices.resolve_device("auto") == MPS
    assert devices.resolve_device("mps") == MPS


def test_mps_without_an_apple_gpu_is_refused_naming_the_key(monkeypatch):
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    with pytest.raises(
        SamexpError, match=r"^trainer.device=mps but .*use trainer.device=auto or cpu"
    ):
        devices.resolve_device("mps")


def test_on_mps_fp16_is_refused_as_off_cuda_and_bf16_fp32_are_accepted():
    with pytest.raises(SamexpError, match="fp16 needs a CUDA device .*bf16 or fp32"):
        mixed_precision("fp16", MPS)
    assert mixed_precision("bf16", MPS).dtype == torch.bfloat16
    assert mixed_precision("fp32", MPS).dtype is None  # plain fp32, no autocast


def test_on_mps_the_automatic_attention_kernel_is_sdpa():
    assert resolve_kernel("auto", MPS) == "sdpa"


def test_torchrun_on_mps_is_refused_before_joining_a_process_group():
    with pytest.raises(SamexpError, match="one process uses"):
        start(World(rank=0, size=2), MPS)
