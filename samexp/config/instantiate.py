"""Objects from their config nodes, with a user's mistake reaching them as a samexp error."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from samexp.config.errors import SamexpError


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, but a samexp error raised inside a constructor reaches the user as itself,
    not wrapped in Hydra's InstantiationException (which would print as a traceback)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, SamexpError):
            raise cause from None
        raise SamexpError(f"{e}") from e
