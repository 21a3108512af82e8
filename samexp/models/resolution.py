"""Run a built SAM's image encoder at a lower input size (`model.encoder_size`, e.g. 512 for 1024).

The encoder's work grows with the token count, (S/16)², so half the side is ~4x less of it, paid for
in detail. Only the size-bound tensors change: the absolute position grid is interpolated, and the
relative-position tables of the global-attention blocks are resized once, exactly as segment_anything
would interpolate them at every forward; everything else reads the size from these attributes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import get_rel_pos

from samexp.config.errors import SamexpError


def _patch_size(sam: Sam) -> int:
    return sam.image_encoder.patch_embed.proj.kernel_size[0]


def check_encoder_size(size: int, native: int, patch: int) -> None:
    """Fail in the user's words unless `size` is a positive multiple of `patch` no larger than `native`."""
    key = f"model.encoder_size={size}"
    if size <= 0 or size > native:
        example = max(patch, native // 2 // patch * patch)
        raise SamexpError(
            f"{key} must be a multiple of {patch} from {patch} to this model's native {native} px "
            f"(e.g. {example}); leave it unset to run the encoder at its native size"
        )
    if size % patch:
        below = size // patch * patch
        nearest = [s for s in (below, below + patch) if patch <= s <= native]
        values = "values are " if len(nearest) > 1 else "value is "
        raise SamexpError(
            f"{key} is not a multiple of the {patch} px patch size; the nearest valid {values}"
            + " and ".join(str(s) for s in nearest)
        )


def resize_encoder(sam: Sam, size: int) -> Sam:
    """Make `sam` take size×size inputs (in place; also returned). The current size is a no-op.

    Resizing the tables here rather than leaving them to `get_rel_pos` keeps the numerics identical,
    saves the interpolation at every forward, and gives saved weights the shapes that a SAM built
    at `size` (e.g. `ImageEncoderViT(img_size=size)`) has.
    """
    encoder = sam.image_encoder
    patch = _patch_size(sam)
    check_encoder_size(size, encoder.img_size, patch)
    if size == encoder.img_size:
        return sam
    tokens = size // patch
    if encoder.pos_embed is not None:
        encoder.pos_embed = _like(encoder.pos_embed, _resize_grid(encoder.pos_embed, tokens))
    for block in encoder.blocks:
        attn = block.attn
        # windowed blocks see window×window tokens at any input size: only global ones change
        if block.window_size == 0 and attn.use_rel_pos:
            attn.rel_pos_h = _like(attn.rel_pos_h, _resize_rel_pos(attn.rel_pos_h, tokens))
            attn.rel_pos_w = _like(attn.rel_pos_w, _resize_rel_pos(attn.rel_pos_w, tokens))
    encoder.img_size = size
    prompt = sam.prompt_encoder
    prompt.input_image_size = (size, size)
    # the dense PE is computed from this size in normalised coordinates, so it follows by itself
    prompt.image_embedding_size = (tokens, tokens)
    prompt.mask_input_size = (4 * tokens, 4 * tokens)
    return sam


def _like(old: torch.nn.Parameter, value: torch.Tensor) -> torch.nn.Parameter:
    """A new parameter (the shape changed) that trains or stays frozen as the old one did."""
    return torch.nn.Parameter(value.to(old.dtype), requires_grad=old.requires_grad)


def _resize_grid(pos_embed: torch.Tensor, tokens: int) -> torch.Tensor:
    """1×H×W×C position grid to 1×tokens×tokens×C, bicubic, antialiased when shrinking."""
    grid = pos_embed.detach().float().permute(0, 3, 1, 2)
    shrinking = tokens < grid.shape[-1]
    resized = F.interpolate(
        grid, size=(tokens, tokens), mode="bicubic", align_corners=False, antialias=shrinking
    )
    return resized.permute(0, 2, 3, 1).contiguous()


def _resize_rel_pos(table: torch.Tensor, tokens: int) -> torch.Tensor:
    """The (2·tokens−1)×C table that `get_rel_pos` interpolates on the fly for a tokens-long axis.

    Read back from `get_rel_pos` itself, so it is its interpolation by construction: its
    tokens×tokens output holds table entry i−j+tokens−1 at (i, j), so the reversed first row
    (entries tokens−1 … 0) and the rest of the first column (entries tokens … 2·tokens−2) hold
    every entry once.
    """
    with torch.no_grad():
        lookup = get_rel_pos(tokens, tokens, table.detach())
    return torch.cat([lookup[0].flip(0), lookup[1:, 0]]).contiguous()
