"""Optimizers offered as `optim=<name>`: torch's own classes, their signatures the schema (so
torch's defaults apply unless conf/optim/<name>.yaml says otherwise), with the ranges samexp checks."""

from __future__ import annotations

import torch

from samexp.config.checks import NON_NEGATIVE, POSITIVE, because
from samexp.config.options import register

RANGES = {"lr": because(POSITIVE, "learning rate"), "weight_decay": NON_NEGATIVE}

register(torch.optim.AdamW, "optim", "adamw", provided=("params",), checks=RANGES)
register(torch.optim.SGD, "optim", "sgd", provided=("params",), checks=RANGES)
