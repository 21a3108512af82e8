"""`fit` as the tests call it: a Setup from keywords, and the parts a keyword asks for."""

from __future__ import annotations

import torch

from samexp.training.divergence import MAX_NONFINITE_STEPS, Divergence
from samexp.training.loop import FitResult, Setup, fit
from samexp.training.monitor import Validation
from samexp.training.reporting import LogEpochs


def fit_with(sam, loader, prompt, loss_fn, optimizer, *, evaluate_fn=None, monitor=None,
             log_fn=None, max_nonfinite_steps=MAX_NONFINITE_STEPS, eval_every=1,
             parts=(), **setup) -> FitResult:  # fmt: skip
    kept = [Divergence(max_nonfinite_steps, log_fn)]
    if evaluate_fn is not None:
        kept.append(Validation(evaluate_fn, monitor, eval_every))
    if log_fn is not None:
        kept.append(LogEpochs(log_fn))
    setup.setdefault("device", torch.device("cpu"))
    return fit(Setup(sam, loader, prompt, loss_fn, optimizer, **setup), [*kept, *parts])
