"""Where models run: `auto` picks CUDA, else Apple's GPU (MPS), else the CPU; asking for a device
the machine lacks is a user error."""

from __future__ import annotations

from enum import Enum

import torch

from samexp.config.errors import SamexpError


def resolve_device(name: str | Enum, key: str = "trainer.device") -> torch.device:
    """`key` is the config key the user set, so the message tells them what to change. Takes the
    config's Device enum as OmegaConf gives it, or its string value."""
    name = name.value if isinstance(name, Enum) else name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SamexpError(f"{key}=cuda but no CUDA device is available; use {key}=auto or cpu")
    if name == "mps" and not mps_available():
        raise SamexpError(
            f"{key}=mps but this machine has no Apple GPU available to PyTorch (MPS needs Apple "
            f"silicon and macOS 12.3+); use {key}=auto or cpu"
        )
    return torch.device(name)


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
