"""The peft-backed adapters (samexp/adapters/peft_engine.py) beyond the invariants table
(test_adapters.py): MobileSAM, export leaving the model exactly as it was, IA3's feed-forward rule,
and peft imported only when such an adapter is applied."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from samexp.adapters.base import parameter_counts, trainable_parameters
from samexp.adapters.dora import DoraAdapter
from samexp.adapters.ia3 import Ia3Adapter
from samexp.adapters.io import load_adapter, save_adapter
from samexp.models.build import build_tiny

# TinyViT's attention blocks: stage -> depth (stage 0 is convolutional)
TINY_VIT_ATTENTION = {(stage, block) for stage, depth in ((1, 2), (2, 6), (3, 2)) for block in range(depth)}  # fmt: skip


def _peft_layers(sam) -> dict:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n: m for n, m in sam.named_modules() if isinstance(m, BaseTunerLayer)}


def _as_if_trained(sam) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainable_parameters(sam).values():
            p.add_(torch.randn(p.shape, generator=g), alpha=0.05)


def test_vit_t_dora_adapts_every_tinyvit_attention_merges_reloads_and_exports(
    vit_t, vit_t_base, tmp_path
):
    adapter = DoraAdapter(rank=4)
    adapter.apply(vit_t.sam)
    layers = _peft_layers(vit_t.sam)
    assert set(layers) == {f"image_encoder.layers.{s}.blocks.{b}.attn.qkv" for s, b in TINY_VIT_ATTENTION}  # fmt: skip
    # each fused qkv whole: A (4 x in), B (out x 4) and DoRA's magnitude, one per output row
    expected = sum(4 * (m.in_features + m.out_features) + m.out_features for m in layers.values())
    assert parameter_counts(vit_t.sam)["params/trainable"] == expected
    _as_if_trained(vit_t.sam)
    stage = vit_t.sam.image_encoder.layers[3]  # two attention blocks on the 64x64 token grid
    x = torch.randn(1, 64 * 64, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unmerged = stage(x)
        adapter.merge(vit_t.sam)
        assert torch.allclose(stage(x), unmerged, atol=1e-5)
        adapter.unmerge(vit_t.sam)

    fresh = copy.deepcopy(vit_t_base)
    path = save_adapter(tmp_path / "adapter.safetensors", vit_t, adapter)
    assert load_adapter(path, fresh).spec() == adapter.spec()
    stock = copy.deepcopy(vit_t_base)
    stock.sam.load_state_dict(adapter.plain_state_dict(vit_t.sam))
    with torch.no_grad():
        assert torch.equal(fresh.sam.image_encoder.layers[3](x), unmerged)
        assert torch.allclose(stock.sam.image_encoder.layers[3](x), unmerged, atol=1e-5)


def test_export_leaves_the_adapted_model_exactly_as_it_was():
    """IA3's unmerge divides by the scale, which rounds: export puts the base weights back instead."""
    base = build_tiny(seed=0)
    adapter = Ia3Adapter()
    adapter.apply(base.sam)
    _as_if_trained(base.sam)
    before = {k: v.clone() for k, v in base.sam.state_dict().items()}
    adapter.plain_state_dict(base.sam)
    after = base.sam.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(layer.merged for layer in _peft_layers(base.sam).values())


def test_ia3_scales_an_encoder_mlp_layer_at_its_input_and_any_other_at_its_output():
    base = build_tiny(seed=0)
    Ia3Adapter(target_modules=r"image_encoder\.blocks\.0\.(attn\.qkv|mlp\.lin2)").apply(base.sam)
    block = base.sam.image_encoder.blocks[0]
    lin2, qkv = block.mlp.lin2, block.attn.qkv
    assert lin2.is_feedforward and not qkv.is_feedforward
    assert lin2.ia3_l["default"].shape == (1, lin2.in_features)
    assert qkv.ia3_l["default"].shape == (qkv.out_features, 1)


@pytest.mark.slow  # a fresh interpreter
def test_reading_the_adapter_registry_does_not_import_peft():
    """`import peft` takes ~5 s (transformers): every command lists the adapters, few use peft."""
    code = (
        "import sys; from samexp.adapters.registry import registered; "
        "assert {'dora', 'vera'} <= set(registered()); "
        "assert 'peft' not in sys.modules, 'peft imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
