"""What adapters that wrap Linear layers share (samexp's LoRA and FacT, the peft-backed methods): the
layers a user's `adapter.target_modules` regex names, and the stock state dict of a model whose
wrappers hold their base Linear under one attribute."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from samexp.config.errors import SamexpError
from samexp.models.roles import Roles, Rows


def checked_regex(target_modules: str | None) -> str | None:
    """`adapter.target_modules` as given, refused in one line if it is not a regular expression."""
    try:
        if target_modules is not None:
            re.compile(target_modules)
    except re.error as e:
        raise SamexpError(
            f"adapter.target_modules={target_modules!r} is not a regular expression ({e})"
        ) from None
    return target_modules


def linears_matching(model: nn.Module, target_modules: str) -> list[str]:
    """The full names of the Linear layers `target_modules` matches whole (peft's
    check_target_module_exists); matching none is refused with examples of names."""
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and re.fullmatch(target_modules, n)
    ]
    if not names:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise SamexpError(
            f"adapter.target_modules={target_modules!r} matches no Linear layer. "
            f"Examples of names: {linears[:3] + linears[-2:]}"
        )
    return names


def unwrapped_state_dict(
    model: nn.Module, wrappers: Iterable[str], base: str
) -> dict[str, torch.Tensor]:
    """`model`'s state dict as the stock model names it: each wrapper's base Linear (attribute
    `base` of the module named in `wrappers`) back under the wrapper's own name, everything else the
    wrapper holds (the adapter's tensors) dropped. Call it with the deltas merged."""
    wrappers = list(wrappers)
    state = {}
    for key, value in model.state_dict().items():
        owner = next((n for n in wrappers if key.startswith(f"{n}.")), None)
        if owner is None:
            state[key] = value.detach().clone()
        elif key.startswith(f"{owner}.{base}."):
            state[owner + key[len(owner) + len(base) + 1 :]] = value.detach().clone()
    return state


def output_parts(
    base: nn.Linear, out_slices: list[Rows] | None
) -> tuple[list[torch.Tensor], torch.Tensor, bool]:
    """The output rows of each part a wrapper adds a delta to (a slice, or the rows of a part
    interleaved with others; None: one part, every row), their concatenation, and whether that
    is every output in order (then the delta is a plain add, no scatter)."""
    rows = [
        torch.arange(p.start, p.stop) if isinstance(p, slice)
        else torch.as_tensor(p, dtype=torch.long).flatten()
        for p in (out_slices or [slice(0, base.out_features)])
    ]  # fmt: skip
    index = torch.cat(rows)
    return rows, index, torch.equal(index, torch.arange(base.out_features))


class PartsDelta(nn.Module):
    """A Linear wrapped so a learned delta is added to some of its output rows (the q and v of a
    fused qkv, or all of them): what LoRA's and FacT's wrappers share. A subclass computes the
    delta (`forward` hands it to `add`) and its weight form (`delta_weight`), which `merge` folds
    into `base.weight` and `unmerge` takes out again."""

    def __init__(self, base: nn.Linear, out_slices: list[Rows] | None) -> None:
        super().__init__()
        self.base = base
        rows, index, self.covers_all = output_parts(base, out_slices)
        self.part_sizes = [len(r) for r in rows]
        self.register_buffer("out_index", index, persistent=False)
        self.merged = False

    def add(self, out: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """`out` with `delta` (…×Σ part sizes, parts in order) added to the parts' rows."""
        if self.covers_all:  # a plain add: no scatter forward, no gather backward
            return out + delta
        return out.index_add(-1, self.out_index, delta)

    def delta_weight(self, part: int) -> torch.Tensor:
        """ΔW of one part, as rows of `base.weight`."""
        raise NotImplementedError

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            for i, rows in enumerate(self.out_index.split(self.part_sizes)):
                self.base.weight.index_add_(0, rows, self.delta_weight(i))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            for i, rows in enumerate(self.out_index.split(self.part_sizes)):
                self.base.weight.index_add_(0, rows, self.delta_weight(i), alpha=-1)
            self.merged = False


TARGETS_HINT = "; to adapt other layers, name them with adapter.target_modules=<regex>"


def refuse_unknown_attention(method: str, found: Roles, hint: str = "") -> None:
    """An encoder attention of a class no family describes is never adapted by guess: refused in
    one line naming it (where its q, k and v sit is unknown)."""
    if found.unknown_attention:
        more = len(found.unknown_attention) - 1
        raise SamexpError(
            f"{method} cannot adapt {found.unknown_attention[0]}"
            f"{f' and {more} more' if more else ''}: no model family describes how this "
            "attention's projections split into q, k and v; describe its class in its family "
            f"module (samexp.models.roles.register_family){hint}"
        )


def encoder_attention(model: nn.Module, found: Roles, method: str, hint: str = "") -> None:
    """Refuse, in one line naming the module, an image encoder whose attention `method` cannot
    adapt as configured: one of a class no family describes (where q, k and v sit is unknown, so
    nothing is adapted by guess), or none at all. `hint` says what the user can do instead."""
    refuse_unknown_attention(method, found, hint)
    if not found.attention:
        encoder = model.get_submodule(found.image_encoder)
        raise SamexpError(
            f"{method} adapts the image encoder's attention projections, and "
            f"{found.image_encoder} ({type(encoder).__name__}) has none{hint}"
        )
