"""Where models run: `auto` picks CUDA when there is one; asking for CUDA without one is a user error."""

from __future__ import annotations

from enum import Enum

import torch

from samexp.errors import SamexpError


def resolve_device(name: str | Enum, key: str = "trainer.device") -> torch.device:
    """`key` is the config key the user set, so the message tells them what to change. Takes the
    config's Device enum as OmegaConf gives it, or its string value."""
    name = name.value if isinstance(name, Enum) else name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SamexpError(f"{key}=cuda but no CUDA device is available; use {key}=auto or cpu")
    return torch.device(name)
