"""Parameter roles: a model's modules named by what they do, from its family's description, never
guessed (an attention of an unknown class is reported as such)."""

from __future__ import annotations

import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.models.roles import QKV_PARTS, roles
from tests.models.conftest import tiny_with_unknown_attention


def test_tiny_vit_roles_name_each_block_and_stack_q_k_v_in_the_fused_qkv(tiny):
    found = roles(tiny.sam)
    depth = len(tiny.sam.image_encoder.blocks)
    dim = tiny.sam.image_encoder.blocks[0].attn.qkv.in_features
    assert [a.name for a in found.attention] == [
        f"image_encoder.blocks.{i}.attn" for i in range(depth)
    ]
    assert found.attention[0].parts == {
        p: ("image_encoder.blocks.0.attn.qkv", slice(i * dim, (i + 1) * dim))
        for i, p in enumerate(QKV_PARTS)
    }
    assert found.mlps == tuple(f"image_encoder.blocks.{i}.mlp" for i in range(depth))
    assert {f"image_encoder.blocks.{i}.norm{n}" for i in range(depth) for n in (1, 2)} < set(
        found.norms
    )
    assert "image_encoder.neck.1" in found.norms  # segment_anything's own LayerNorm2d
    assert found.unknown_attention == ()
    assert (found.prompt_encoder, found.mask_decoder) == ("prompt_encoder", "mask_decoder")


def test_tinyvit_split_is_the_one_its_forward_makes_head_by_head(vit_t):
    found = roles(vit_t.sam)
    assert len(found.attention) == 10  # stages 1-3: 2 + 6 + 2 blocks (stage 0 is convolutions)
    for a in found.attention:
        attn = vit_t.sam.get_submodule(a.name)
        # the output index of every row, split as TinyViT's Attention.forward splits its qkv
        index = torch.arange(attn.qkv.out_features).view(1, 1, attn.num_heads, -1)
        expected = index.split([attn.key_dim, attn.key_dim, attn.d], dim=3)
        for part, want in zip(QKV_PARTS, expected, strict=True):
            linear, rows = a.parts[part]
            assert linear == f"{a.name}.qkv"
            assert torch.equal(rows, want.flatten())
    assert len(found.mlps) == 10 and all(m.endswith(".mlp") for m in found.mlps)
    assert found.unknown_attention == ()


def test_an_attention_of_unknown_class_is_reported_not_guessed():
    found = roles(tiny_with_unknown_attention())
    assert found.unknown_attention == ("image_encoder.blocks.0.attn (PairedAttention)",)
    assert [a.name for a in found.attention] == ["image_encoder.blocks.1.attn"]
    assert found.parts_on("image_encoder.blocks.0.attn.qkv") is None
    assert found.unknown_attention_holding("image_encoder.blocks.0.attn.qkv") is not None


def test_a_model_of_no_known_family_is_refused_in_one_line():
    with pytest.raises(SamexpError, match="knows no parameter roles of Sequential") as e:
        roles(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert "\n" not in str(e.value)
