"""SSF: a per-channel scale and shift after each chosen Linear, folded exactly into its weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samexp.adapters.base import trainable_parameters
from samexp.adapters.ssf import SsfAdapter, SsfLinear
from samexp.config.errors import SamexpError
from samexp.models.build import build_tiny


def _drawn(adapter: SsfAdapter, sam: nn.Module) -> None:
    """Scales and shifts as if trained (they start at 1 and 0)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in sam.named_parameters():
            if n.endswith((".scale", ".shift")):
                p.copy_(
                    torch.randn(p.shape, generator=g) * 0.3 + (1.0 if n.endswith(".scale") else 0.0)
                )


def test_merged_weights_are_the_scaled_weights_and_the_scaled_shifted_bias(tiny):
    qkv = tiny.sam.image_encoder.blocks[0].attn.qkv
    w, b = qkv.weight.detach().clone(), qkv.bias.detach().clone()
    adapter = SsfAdapter()
    adapter.apply(tiny.sam)
    _drawn(adapter, tiny.sam)
    layer = tiny.sam.image_encoder.blocks[0].attn.qkv
    gamma, beta = layer.scale.detach(), layer.shift.detach()
    adapter.merge(tiny.sam)
    assert torch.allclose(layer.base.weight, gamma[:, None] * w)
    assert torch.allclose(layer.base.bias, gamma * b + beta)
    adapter.unmerge(tiny.sam)
    assert torch.allclose(layer.base.weight, w, atol=1e-6)
    assert torch.allclose(layer.base.bias, b, atol=1e-6)


def test_export_folds_under_the_stock_names_and_leaves_the_model_as_it_was(tiny):
    adapter = SsfAdapter()
    adapter.apply(tiny.sam)
    _drawn(adapter, tiny.sam)
    before = {k: v.clone() for k, v in tiny.sam.state_dict().items()}
    x = torch.randn(1, 3, 256, 256)
    stock = build_tiny(seed=0).sam
    stock.load_state_dict(adapter.plain_state_dict(tiny.sam))  # strict: the stock names, no more
    assert all(torch.equal(v, tiny.sam.state_dict()[k]) for k, v in before.items())
    assert torch.allclose(stock.image_encoder(x), tiny.sam.image_encoder(x), atol=1e-5)


def test_the_default_wraps_every_linear_of_the_encoders_attention_and_mlps(tiny):
    SsfAdapter().apply(tiny.sam)
    wrapped = {n for n, m in tiny.sam.named_modules() if isinstance(m, SsfLinear)}
    assert wrapped == {
        f"image_encoder.blocks.{i}.{layer}"
        for i in range(2)
        for layer in ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2")
    }
    assert sum(p.numel() for p in trainable_parameters(tiny.sam).values()) == 2 * sum(
        tiny.sam.get_submodule(n).base.out_features for n in wrapped
    )


def test_a_linear_without_bias_gets_a_scale_only_and_still_folds():
    layer = SsfLinear(nn.Linear(4, 3, bias=False))
    assert layer.shift is None
    with torch.no_grad():
        layer.scale.copy_(torch.tensor([2.0, -1.0, 0.5]))
    x = torch.randn(5, 4)
    expected = layer(x)
    layer.merge()
    assert torch.allclose(layer.base(x), expected)


@pytest.mark.parametrize("targets", [[], ["norm"]])
def test_targets_outside_attention_and_mlp_are_refused(targets):
    with pytest.raises(SamexpError, match="adapter.targets must be a non-empty subset"):
        SsfAdapter(targets=targets)
