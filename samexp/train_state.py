"""Everything training needs to go on exactly where it stopped, in one file written atomically.

A checkpoint holds the trainable tensors, the optimizer, LR-schedule and grad-scaler states, every
RNG (torch, CUDA, numpy, python, the prompt generator, the data order), the monitor's best value
and weights, the non-finite guard and the running sums of a half-done epoch. It is saved with
`torch.save` and read back with `torch.load(weights_only=True)`: tensors, numbers, strings, lists
and dicts only, so a hostile file can carry values but never code.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samexp.atomic import atomic_path
from samexp.errors import SamexpError, UntrustedFileError

FORMAT = 1  # bumped when the layout changes; an older file is refused, not misread


@dataclass
class EpochProgress:
    """The running figures of the epoch in progress, so its logged means come out the same."""

    batches_done: int = 0
    seen: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    norms: list[float] = field(default_factory=list)


@dataclass
class TrainState:
    """Where `fit` is: after `step` optimizer steps, in (or at the end of) `epoch`."""

    epoch: int  # the epoch in progress, or the last one finished when `epoch_complete`
    epoch_complete: bool
    step: int
    params: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scaler: dict[str, Any]
    rng: dict[str, Any]  # see capture_rng
    # the data order's generator: at the start of `epoch` when it is half done (its batches are
    # drawn again and skipped), else as it is now
    loader_rng: torch.Tensor | None
    monitor: dict[str, Any]  # best, best_epoch, stale
    best_params: dict[str, torch.Tensor]
    guard: dict[str, Any]
    progress: EpochProgress = field(default_factory=EpochProgress)

    @property
    def where(self) -> str:
        """What a user reads: `epoch 5 step 37`."""
        return f"epoch {self.epoch} step {self.step}"


def capture_rng(prompt_generator: torch.Generator) -> dict[str, Any]:
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [
            numpy_state[0],
            torch.from_numpy(numpy_state[1].astype(np.int64)),
            *numpy_state[2:],
        ],  # fmt: skip
        "python": list(random.getstate()),
        "prompt": prompt_generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], prompt_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    prompt_generator.set_state(state["prompt"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(state: TrainState, path: Path) -> Path:
    """Write `state` to `path` whole or not at all: a crash mid-write keeps the previous file."""
    payload = {"format": FORMAT, **asdict(state)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_state(path: Path, trainable: dict[str, torch.Tensor]) -> TrainState:
    """The state in `path`, refused unless its tensors fit `trainable` (the model built now)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, or one carrying objects weights_only refuses
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UntrustedFileError(f"{path} is not a readable samexp checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UntrustedFileError(f"{path}: checkpoint format {found!r}, this samexp reads {FORMAT}")
    payload.pop("format")
    try:
        payload["progress"] = EpochProgress(**payload["progress"])
        state = TrainState(**payload)
    except TypeError as e:
        raise UntrustedFileError(f"{path}: not a samexp checkpoint ({e})") from None
    for name, tensors in (("params", state.params), ("best_params", state.best_params)):
        _check_fits(path, name, tensors, trainable, partial=name == "best_params")
    return state


def _check_fits(path: Path, key: str, tensors: dict[str, torch.Tensor],
                trainable: dict[str, torch.Tensor], partial: bool) -> None:  # fmt: skip
    """Same names, shapes and dtypes as the trainable parameters of the model built now."""
    if not isinstance(tensors, dict):
        raise UntrustedFileError(f"{path}: checkpoint key {key} is not a mapping of tensors")
    missing = [] if partial and not tensors else sorted(set(trainable) - set(tensors))
    extra = sorted(set(tensors) - set(trainable))
    if missing or extra:
        raise SamexpError(
            f"{path} does not fit the model built now: {len(missing)} trainable tensors missing "
            f"(e.g. {missing[:2]}), {len(extra)} unknown (e.g. {extra[:2]}); resume with the "
            "adapter and model of the interrupted run"
        )
    for name, value in tensors.items():
        want = trainable[name]
        if (
            not isinstance(value, torch.Tensor)
            or value.shape != want.shape
            or value.dtype != want.dtype
        ):
            got = f"{list(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__  # fmt: skip
            raise UntrustedFileError(
                f"{path}: checkpoint tensor {key}.{name}: {got} does not fit the model's "
                f"{list(want.shape)} {want.dtype}"
            )
