"""Everything training needs to go on exactly where it stopped, in one file written atomically.

A checkpoint holds the trainable tensors, the optimizer, LR-schedule and grad-scaler states, every
RNG (torch, CUDA, numpy, python, the prompt generator, the data order), the running sums of a
half-done epoch, and the state of every training part that keeps one (the monitor's best value and
weights, the non-finite guard, ...), each checked against the type its part declares. It is saved with
`torch.save` and read back with `torch.load(weights_only=True)`: tensors, numbers, strings, lists
and dicts only, so a hostile file can carry values but never code.
"""

from __future__ import annotations

import random
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np
import torch

from samexp.config.atomic import atomic_path
from samexp.config.errors import SamexpError, UntrustedFileError

if TYPE_CHECKING:
    from samexp.training.parts import Part

FORMAT = 2  # bumped when the layout changes; an older file is refused, not misread


class RngStates(TypedDict):
    """See capture_rng: numpy's and python's states as lists (torch.load gives lists back)."""

    torch: torch.Tensor
    numpy: tuple[str, torch.Tensor, int, int, float]
    python: tuple[int, list[int], float | None]
    prompt: torch.Tensor
    cuda: NotRequired[list[torch.Tensor]]


class OptimizerState(TypedDict):
    state: dict[int, dict[str, Any]]
    param_groups: list[dict[str, Any]]


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
    optimizer: OptimizerState
    scheduler: dict[str, Any] | None
    scaler: dict[str, Any]
    rng: RngStates
    # the data order's generator: at the start of `epoch` when it is half done (its batches are
    # drawn again and skipped), else as it is now
    loader_rng: torch.Tensor | None
    progress: EpochProgress = field(default_factory=EpochProgress)
    # what each training part keeps (samexp.training.parts), by its key: the monitor's best
    # value and weights, the non-finite guard's counters, ...
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """What a user reads: `epoch 5 step 37`."""
        return f"epoch {self.epoch} step {self.step}"


def capture_rng(prompt_generator: torch.Generator) -> RngStates:
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


def restore_rng(state: RngStates, prompt_generator: torch.Generator) -> None:
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


def load_state(path: Path, trainable: dict[str, torch.Tensor],
               kept: Mapping[str, Part] | None = None) -> TrainState:  # fmt: skip
    """The state in `path`, refused unless its tensors fit `trainable` (the model built now) and
    it holds, for each part in `kept` (by key), the state that part declares."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, or one carrying objects weights_only refuses
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UntrustedFileError(f"{path} is not a readable samexp checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UntrustedFileError(f"{path}: checkpoint format {found!r}, this samexp reads {FORMAT}")
    payload.pop("format")
    wanted = {f.name for f in fields(TrainState)}
    if set(payload) != wanted:
        odd = sorted(set(payload) ^ wanted)
        raise UntrustedFileError(f"{path}: not a samexp checkpoint (fields {odd} missing or unknown)")  # fmt: skip
    for name, hint in typing.get_type_hints(TrainState).items():
        problem = _misfit(payload[name], hint, name)
        if problem is not None:
            raise UntrustedFileError(f"{path}: checkpoint field {problem}; the file is damaged "
                                     "or was not written by samexp")  # fmt: skip
    kept = dict(kept or {})
    if set(payload["parts"]) != set(kept):
        raise SamexpError(
            f"{path} was written by a run whose training parts were {sorted(payload['parts'])}, "
            f"this one has {sorted(kept)}; resume with the config of the interrupted run"
        )
    for key, part in kept.items():
        problem = _misfit(payload["parts"][key], part.State or dict[str, Any], f"parts.{key}")
        if problem is not None:
            raise UntrustedFileError(f"{path}: checkpoint field {problem}; the file is damaged "
                                     "or was not written by samexp")  # fmt: skip
    payload["progress"] = EpochProgress(**payload["progress"])
    state = TrainState(**payload)
    _check_fits(path, "params", state.params, trainable, partial=False)
    weights = {"params": state.params}
    for key, part in kept.items():
        held = part.weights_in(state.parts[key])
        _check_fits(path, f"parts.{key}", held, trainable, partial=True)
        weights[f"parts.{key}"] = held
    _check_finite(path, state, weights)
    return state


def _misfit(value: Any, hint: Any, where: str) -> str | None:
    """None when `value` is what the annotation `hint` says, else `<where> is <found>, expected
    <hint>`: the fields of a checkpoint read back are checked against TrainState's own types,
    so a forged or damaged file is refused at load, naming the field, rather than failing later
    inside training with a TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        misfits = [_misfit(value, arg, where) for arg in args]
        return None if None in misfits else _found(value, hint, where)
    if typing.is_typeddict(hint) or is_dataclass(hint):
        if not isinstance(value, dict):
            return _found(value, hint, where)
        hints = typing.get_type_hints(hint)
        # NotRequired read from the annotations (string ones hide it from __required_keys__)
        extras = typing.get_type_hints(hint, include_extras=True)
        optional = getattr(hint, "__total__", True) is False
        required = {k for k, h in extras.items()
                    if not optional and typing.get_origin(h) is not NotRequired}  # fmt: skip
        missing, unknown = sorted(required - set(value)), sorted(set(value) - set(hints))
        if missing or unknown:
            return f"{where} lacks keys {missing} or has unknown {unknown}, expected {sorted(hints)}"  # fmt: skip
        inner = (_misfit(v, hints[k], f"{where}.{k}") for k, v in value.items())
        return next((p for p in inner if p is not None), None)
    if origin is dict:
        if not isinstance(value, dict):
            return _found(value, hint, where)
        inner = (_misfit(k, args[0], f"{where} key") or _misfit(v, args[1], f"{where}[{k!r}]")
                 for k, v in value.items())  # fmt: skip
        return next((p for p in inner if p is not None), None)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _found(value, hint, where)
        if origin is tuple and len(value) != len(args):
            return f"{where} has {len(value)} items, expected {len(args)}"
        each = args if origin is tuple else args * len(value)
        inner = (
            _misfit(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, each, strict=True))
        )
        return next((p for p in inner if p is not None), None)
    if hint is type(None):
        return None if value is None else _found(value, hint, where)
    if hint is float:  # an int is a number too; a bool is not
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, hint)
    return None if fits else _found(value, hint, where)


def _found(value: Any, hint: Any, where: str) -> str:
    expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
    return f"{where} is {type(value).__name__}, expected {expected}"


def _check_finite(path: Path, state: TrainState, weights: dict[str, dict[str, torch.Tensor]]) -> None:  # fmt: skip
    """No NaN or inf in the weights or the optimizer's moments: training skips non-finite steps,
    so a checkpoint it wrote never holds one; a file that does is damaged, and resuming from it
    would diverge at once and be blamed on the learning rate."""
    tensors = {**{f"{where}.{k}": v for where, held in weights.items() for k, v in held.items()},
               **{f"optimizer.state[{i}].{k}": v for i, s in state.optimizer["state"].items()
                  for k, v in s.items() if isinstance(v, torch.Tensor)}}  # fmt: skip
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UntrustedFileError(
                f"{path}: checkpoint tensor {name} holds NaN or inf values; samexp never "
                "writes one (non-finite steps are skipped), so the file is damaged: resume an "
                "earlier copy or start the run again"
            )


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
