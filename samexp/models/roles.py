"""Parameter roles: a built model's modules named by what they do (the image encoder's attention
projections, its MLPs and norms, the prompt encoder, the mask decoder), so adapters target roles and
never a family's classes.

Each model family describes its own classes once, in its own module, with `register_family`; a
class no family described is never guessed at: an image-encoder attention of an unknown class is
reported as such (`Roles.unknown_attention`), and whoever wanted to adapt it refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from samexp.config.errors import SamexpError

QKV_PARTS = ("q", "k", "v")

# where one of q, k, v sits: (the attention's child Linear that computes it, that Linear's output
# rows holding it: a slice, an index tensor for a part interleaved with others, None for all rows)
Rows = slice | torch.Tensor
Split = Callable[[nn.Module], dict[str, tuple[str, Rows | None]]]

# torch's own norms, known in every family
TORCH_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True)
class Family:
    """What `roles` needs to know about one family's classes (all named `module.QualName`, so
    naming a class never imports its package)."""

    image_encoder: str  # attribute names of the model's parts
    prompt_encoder: str
    mask_decoder: str
    attention: dict[str, Split]  # encoder attention class -> where its q, k and v sit
    mlps: tuple[str, ...] = ()  # encoder MLP classes
    norms: tuple[str, ...] = ()  # the family's own norm classes (torch's are always known)
    blocks: tuple[str, ...] = ()  # encoder block classes (activation checkpointing wraps them)


_FAMILIES: dict[str, Family] = {}


def register_family(model_classes: Iterable[str], family: Family) -> None:
    """Describe the roles of models of `model_classes` (the family module calls it on import, so
    every model its builder returns is described)."""
    for name in model_classes:
        _FAMILIES[name] = family


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class Attention:
    """One image-encoder attention: for each of q, k and v, the Linear computing it and its rows."""

    name: str  # e.g. image_encoder.blocks.0.attn
    parts: dict[str, tuple[str, Rows | None]]  # part -> (full Linear name, rows; None: all)


@dataclass(frozen=True)
class Roles:
    """A built model's modules by role, as full module names (`model.get_submodule(name)`)."""

    image_encoder: str
    prompt_encoder: str
    mask_decoder: str
    attention: tuple[Attention, ...] = ()
    # image-encoder modules that are attentions (by class name, or by holding a fused `qkv` Linear)
    # of a class no family described, as "name (Class)": nothing is known of how they split
    unknown_attention: tuple[str, ...] = ()
    mlps: tuple[str, ...] = ()
    norms: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    _by_linear: dict[str, dict[str, Rows | None]] = field(default_factory=dict, repr=False)

    @property
    def qkv_linears(self) -> tuple[str, ...]:
        """The Linear layers computing q, k or v, in encoder order, each once (a fused qkv
        computes all three)."""
        return tuple(self._by_linear)

    def parts_on(self, linear: str) -> dict[str, Rows | None] | None:
        """The q/k/v parts a Linear computes (part -> its rows), if it is an attention projection."""
        return self._by_linear.get(linear)

    def unknown_attention_holding(self, name: str) -> str | None:
        """The unknown attention (as "name (Class)") that module `name` sits in, if any."""
        return next((u for u in self.unknown_attention if name.startswith(_name_of(u) + ".")), None)


def _name_of(described: str) -> str:
    return described.partition(" (")[0]


def roles(model: nn.Module) -> Roles:
    """`model`'s modules by role; a model of a class no family registered is refused in one line."""
    family = _FAMILIES.get(class_name(type(model)))
    if family is None:
        raise SamexpError(
            f"samexp knows no parameter roles of {type(model).__name__} ({class_name(type(model))}): "
            "its family module describes them with samexp.models.roles.register_family"
        )
    encoder = family.image_encoder
    attention, unknown, mlps, norms, blocks = [], [], [], [], []
    for local, module in model.get_submodule(encoder).named_modules():
        name = f"{encoder}.{local}" if local else encoder
        kind = class_name(type(module))
        if kind in family.blocks:
            blocks.append(name)
        elif kind in family.attention:
            parts = family.attention[kind](module)
            attention.append(
                Attention(name, {p: (f"{name}.{a}", r) for p, (a, r) in parts.items()})
            )
        elif _looks_like_attention(module) and not any(
            name.startswith(f"{_name_of(u)}.") for u in unknown
        ):
            unknown.append(f"{name} ({type(module).__name__})")
        elif kind in family.mlps:
            mlps.append(name)
        elif kind in family.norms or isinstance(module, TORCH_NORMS):
            norms.append(name)
    by_linear: dict[str, dict[str, Rows | None]] = {}
    for a in attention:
        for part, (linear, rows) in a.parts.items():
            by_linear.setdefault(linear, {})[part] = rows
    return Roles(
        image_encoder=encoder,
        prompt_encoder=family.prompt_encoder,
        mask_decoder=family.mask_decoder,
        attention=tuple(attention),
        unknown_attention=tuple(unknown),
        mlps=tuple(mlps),
        norms=tuple(norms),
        blocks=tuple(blocks),
        _by_linear=by_linear,
    )


def _looks_like_attention(module: nn.Module) -> bool:
    """Named an attention, or holding a fused qkv projection: reported, never adapted by guess."""
    fused = isinstance(getattr(module, "qkv", None), nn.Linear)
    return fused or "attention" in type(module).__name__.lower()


def stacked_qkv(attention: nn.Module, attr: str = "qkv") -> dict[str, tuple[str, Rows]]:
    """q, k, v stacked in one fused Linear, [q | k | v], each a third of its outputs (SAM's ViT: its
    forward reshapes the output to (..., 3, heads, -1))."""
    linear = getattr(attention, attr)
    d = getattr(linear, "base", linear).out_features // 3  # an adapter may wrap it (LoRA's base)
    return {p: (attr, slice(i * d, (i + 1) * d)) for i, p in enumerate(QKV_PARTS)}
