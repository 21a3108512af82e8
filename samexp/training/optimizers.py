"""Optimizers offered as `optim=<name>`: torch's own classes, their signatures the schema (so
torch's defaults apply unless conf/optim/<name>.yaml says otherwise), with the ranges samexp checks."""

from __future__ import annotations

from typing import Annotated

import torch

from samexp.config.checks import NON_NEGATIVE, POSITIVE, because
from samexp.config.options import register

# torch's signatures cannot carry samexp's ranges: these are the annotations they would have
RANGES = {"lr": Annotated[float, because(POSITIVE, "learning rate")],
          "weight_decay": Annotated[float, NON_NEGATIVE]}  # fmt: skip

register(torch.optim.AdamW, "optim", "adamw", provided=("params",), hints=RANGES)
register(torch.optim.SGD, "optim", "sgd", provided=("params",), hints=RANGES)
