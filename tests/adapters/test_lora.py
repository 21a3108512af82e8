"""LoRA: q and v slices of SAM's fused qkv, zero-initialised B, exact merge/unmerge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samexp.adapters.lora import LoraAdapter, LoraLinear
from samexp.config.errors import SamexpError
from samexp.models.build import build_tiny
from tests.models.conftest import randomize_lora_b, tiny_with_unknown_attention


def _trained_lora(parts=("q", "v")) -> LoraLinear:
    torch.manual_seed(0)
    layer = LoraLinear(
        nn.Linear(8, 24),
        rank=2,
        alpha=4.0,
        out_slices=[slice(0, 8), slice(16, 24)] if parts == ("q", "v") else None,
    )
    with torch.no_grad():
        for b in layer.lora_B:
            b.weight.normal_()
    return layer


def test_lora_delta_touches_only_q_and_v_slices():
    layer = _trained_lora()
    x = torch.randn(5, 8)
    diff = layer(x) - layer.base(x)
    assert torch.all(diff[:, 8:16] == 0), "k slice must be untouched"
    assert diff[:, :8].abs().sum() > 0 and diff[:, 16:].abs().sum() > 0


def test_lora_delta_is_b_a_x_times_alpha_over_rank():
    layer = _trained_lora()
    x = torch.randn(3, 8)
    expected_q = x @ (layer.lora_B[0].weight @ layer.lora_A[0].weight).T * (4.0 / 2)
    assert torch.allclose((layer(x) - layer.base(x))[:, :8], expected_q, atol=1e-6)


def test_merged_output_equals_unmerged_output_and_unmerge_restores_the_base():
    layer = _trained_lora()
    x = torch.randn(4, 8)
    base_weight = layer.base.weight.detach().clone()
    unmerged = layer(x)
    layer.merge()
    assert torch.allclose(layer(x), unmerged, atol=1e-5)
    layer.merge()  # idempotent: merging twice must not add the delta twice
    assert torch.allclose(layer(x), unmerged, atol=1e-5)
    layer.unmerge()
    assert torch.allclose(layer.base.weight, base_weight, atol=1e-6)
    assert torch.allclose(layer(x), unmerged, atol=1e-5)


def test_lora_adapter_wraps_every_encoder_qkv_with_q_and_v_parts(tiny):
    LoraAdapter(rank=4).apply(tiny.sam)
    wrapped = {n: m for n, m in tiny.sam.named_modules() if isinstance(m, LoraLinear)}
    assert set(wrapped) == {
        f"image_encoder.blocks.{i}.attn.qkv" for i in range(len(tiny.sam.image_encoder.blocks))
    }
    dim = tiny.sam.image_encoder.blocks[0].attn.qkv.base.in_features
    assert [(s.start, s.stop) for s in next(iter(wrapped.values())).out_slices] == [
        (0, dim),
        (2 * dim, 3 * dim),
    ]


def _vit_heads(attn, qkv_out: torch.Tensor) -> torch.Tensor:
    """q, k, v split exactly as segment_anything's Attention.forward splits its fused projection."""
    b, h, w, _ = qkv_out.shape
    return qkv_out.reshape(b, h * w, 3, attn.num_heads, -1).unbind(2)


@pytest.mark.parametrize("parts", [("q",), ("k",), ("v",), ("q", "v"), ("q", "k", "v")])
def test_tiny_vit_lora_delta_reaches_exactly_the_configured_parts(tiny, parts):
    LoraAdapter(rank=2, qkv_parts=list(parts)).apply(tiny.sam)
    randomize_lora_b(tiny.sam)
    for block in tiny.sam.image_encoder.blocks:
        attn = block.attn
        x = torch.randn(1, 4, 4, attn.qkv.base.in_features)
        adapted, base = _vit_heads(attn, attn.qkv(x)), _vit_heads(attn, attn.qkv.base(x))
        for name, new, old in zip("qkv", adapted, base, strict=True):
            changed = (new - old).abs().amax(dim=(0, 1, 3))  # per head
            assert torch.all(changed > 0) if name in parts else torch.all(changed == 0), name


def _refused_in_one_line(adapter: LoraAdapter, sam: nn.Module) -> str:
    before = {n: p.requires_grad for n, p in sam.named_parameters()}
    with pytest.raises(SamexpError) as e:
        adapter.apply(sam)
    assert "\n" not in str(e.value)
    assert not any(isinstance(m, LoraLinear) for m in sam.modules()), "nothing may be wrapped"
    assert {n: p.requires_grad for n, p in sam.named_parameters()} == before, "nor frozen"
    return str(e.value)


def test_an_attention_of_unknown_class_is_refused_naming_it_never_adapted_whole():
    message = _refused_in_one_line(LoraAdapter(rank=2), tiny_with_unknown_attention())
    assert message.startswith("LoRA cannot adapt image_encoder.blocks.0.attn (PairedAttention):")
    assert "adapter.qkv_parts=['q', 'v'] cannot be honoured" in message
    assert "adapter.target_modules" in message  # what to do instead


def test_a_regex_reaching_into_an_unknown_attention_is_refused_as_well():
    adapter = LoraAdapter(rank=2, target_modules=r"image_encoder\.blocks\.\d+\.attn\.qkv")
    message = _refused_in_one_line(adapter, tiny_with_unknown_attention())
    assert "image_encoder.blocks.0.attn (PairedAttention)" in message


def test_an_image_encoder_without_attention_is_refused_naming_the_role_it_lacks(tiny):
    for block in tiny.sam.image_encoder.blocks:
        block.attn = nn.Identity()
    message = _refused_in_one_line(LoraAdapter(rank=2), tiny.sam)
    assert "image_encoder (ImageEncoderViT) has none" in message


def test_whole_model_merge_matches_unmerged_within_1e_5(tiny):
    adapter = LoraAdapter(rank=4, qkv_parts=["q", "k", "v"])
    adapter.apply(tiny.sam)
    with torch.no_grad():
        for n, p in tiny.sam.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    x = torch.randn(1, 3, 256, 256)
    unmerged = tiny.sam.image_encoder(x)
    adapter.merge(tiny.sam)
    assert torch.allclose(tiny.sam.image_encoder(x), unmerged, atol=1e-5)
    adapter.unmerge(tiny.sam)
    assert torch.allclose(tiny.sam.image_encoder(x), unmerged, atol=1e-5)


def test_target_modules_regex_can_reach_the_decoder(tiny):
    LoraAdapter(
        rank=2, target_modules=r"mask_decoder\.transformer\.layers\.\d+\.self_attn\.(q|v)_proj"
    ).apply(tiny.sam)
    wrapped = [n for n, m in tiny.sam.named_modules() if isinstance(m, LoraLinear)]
    assert wrapped and all(n.startswith("mask_decoder.transformer.layers.") for n in wrapped)
    assert all(
        m.out_slices == [slice(0, m.base.out_features)]
        for m in tiny.sam.modules()
        if isinstance(m, LoraLinear)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank"),
        ({"dropout": 1.5}, "dropout"),
        ({"qkv_parts": ["q", "x"]}, "qkv_parts"),
        ({"qkv_parts": []}, "qkv_parts"),
    ],
)
def test_bad_lora_settings_are_refused_with_the_key_named(kwargs, message):
    with pytest.raises(SamexpError, match=message):
        LoraAdapter(**kwargs)


def test_target_regex_that_matches_nothing_is_a_clear_error():
    with pytest.raises(SamexpError, match="matches no Linear"):
        LoraAdapter(target_modules=r"nothing\.here").apply(build_tiny().sam)


def test_lora_on_every_output_adds_the_same_delta_as_the_sliced_path():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 12)
    whole = LoraLinear(base, rank=2, alpha=2.0)
    torch.nn.init.normal_(whole.lora_B[0].weight)
    assert whole.covers_all
    x = torch.randn(5, 16)
    expected = whole.base(x).index_add(-1, whole.out_index, whole.lora_B[0](whole.lora_A[0](x)))
    assert torch.allclose(whole(x), expected, atol=1e-6)
    assert not LoraLinear(
        base, rank=2, alpha=2.0, out_slices=[slice(0, 4), slice(8, 12)]
    ).covers_all


# --- MobileSAM (vit_t): the same default reaches TinyViT's attention -----------------------------
TINY_VIT_ATTENTION = {(stage, block) for stage, depth in ((1, 2), (2, 6), (3, 2)) for block in range(depth)}  # fmt: skip


def test_vit_t_lora_targets_tinyvit_attention(vit_t):
    LoraAdapter(rank=8).apply(vit_t.sam)  # the default target_modules, as for vit_b
    wrapped = {n for n, m in vit_t.sam.named_modules() if isinstance(m, LoraLinear)}
    assert wrapped == {
        f"image_encoder.layers.{s}.blocks.{b}.attn.qkv" for s, b in TINY_VIT_ATTENTION
    }
    trainable = [p for p in vit_t.sam.parameters() if p.requires_grad]
    # q and v of each block: 2 parts x (A: 8 x dim + B: dim x 8), dims 128, 160 and 320 by stage
    assert sum(p.numel() for p in trainable) == 2 * 16 * (2 * 128 + 6 * 160 + 2 * 320)


def _heads(attn, qkv_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v split exactly as TinyViT's Attention.forward splits its fused projection."""
    b, n, _ = qkv_out.shape
    view = qkv_out.view(b, n, attn.num_heads, -1)
    return view.split([attn.key_dim, attn.key_dim, attn.d], dim=3)


@pytest.mark.parametrize("parts", [("q", "v"), ("k",)])
def test_vit_t_lora_delta_reaches_the_chosen_parts_of_every_head_and_nothing_else(vit_t, parts):
    LoraAdapter(rank=4, qkv_parts=list(parts)).apply(vit_t.sam)
    attn = vit_t.sam.image_encoder.layers[2].blocks[0].attn  # 5 heads interleaved in one Linear
    with torch.no_grad():
        for b in attn.qkv.lora_B:
            b.weight.normal_()
    x = torch.randn(2, 196, attn.qkv.base.in_features)
    adapted, base = _heads(attn, attn.qkv(x)), _heads(attn, attn.qkv.base(x))
    for name, new, old in zip("qkv", adapted, base, strict=True):
        changed = (new - old).abs().amax(dim=(0, 1, 3))  # per head
        if name in parts:
            assert torch.all(changed > 0), f"{name}: some head got no delta"
        else:
            assert torch.all(changed == 0), f"{name} must be untouched"


def test_vit_t_lora_merged_stage_equals_unmerged_and_unmerge_restores_the_base(vit_t):
    adapter = LoraAdapter(rank=4)
    adapter.apply(vit_t.sam)
    randomize_lora_b(vit_t.sam)
    stage = vit_t.sam.image_encoder.layers[3]  # two attention blocks on the 64x64 token grid
    qkv = stage.blocks[0].attn.qkv
    base_weight = qkv.base.weight.detach().clone()
    x = torch.randn(1, 64 * 64, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unmerged = stage(x)
        adapter.merge(vit_t.sam)
        assert not torch.equal(qkv.base.weight, base_weight)
        assert torch.allclose(stage(x), unmerged, atol=1e-5)
        adapter.unmerge(vit_t.sam)
    assert torch.allclose(qkv.base.weight, base_weight, atol=1e-6)
