"""Partial fine-tuning (bitfit, layernorm, attention) trains exactly the parameters of its role on
every family, found by role and checked here by what the modules are, never by the role table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samexp.adapters.attention import AttentionAdapter
from samexp.adapters.base import Adapter, trainable_parameters
from samexp.adapters.bitfit import BitFitAdapter
from samexp.adapters.layernorm import LayerNormAdapter
from samexp.adapters.ssf import SsfAdapter
from samexp.config.errors import SamexpError
from samexp.models.build import build_tiny
from samexp.models.sam2 import build_sam2_tiny
from tests.models.conftest import tiny_with_unknown_attention

FAMILIES = ["tiny", "sam2_tiny", "vit_t"]


@pytest.fixture
def model(request: pytest.FixtureRequest) -> nn.Module:
    """The tiny SAM, the tiny SAM 2.1 or a random MobileSAM (vit_t), by the test's parameter."""
    if request.param == "vit_t":
        return request.getfixturevalue("vit_t").sam
    return {"tiny": build_tiny, "sam2_tiny": build_sam2_tiny}[request.param](seed=0).sam


def _encoder_parameters(sam: nn.Module, keep) -> set[str]:
    """Full names of the parameters of the image encoder's modules `keep` accepts (own only)."""
    return {
        f"image_encoder.{m}.{p}"
        for m, module in sam.image_encoder.named_modules()
        if keep(module)
        for p, _ in module.named_parameters(recurse=False)
    }


@pytest.mark.parametrize("model", FAMILIES, indirect=True)
def test_bitfit_trains_exactly_the_image_encoders_biases(model):
    BitFitAdapter().apply(model)
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert set(trainable_parameters(model)) == {n for n in biases if n.startswith("image_encoder.")}


@pytest.mark.parametrize("model", FAMILIES, indirect=True)
def test_layernorm_trains_every_norm_of_the_image_encoder_and_nothing_else(model):
    """Every module of a norm class (torch's LayerNorm, each family's LayerNorm2d, TinyViT's
    BatchNorm) has its weight and bias trained."""
    LayerNormAdapter().apply(model)
    norms = _encoder_parameters(model, lambda m: "Norm" in type(m).__name__)
    assert norms and set(trainable_parameters(model)) == norms


@pytest.mark.parametrize("model", FAMILIES, indirect=True)
def test_attention_trains_every_parameter_of_the_encoders_attention_layers(model):
    AttentionAdapter().apply(model)
    layers = [n for n, m in model.image_encoder.named_modules() if "Attention" in type(m).__name__]
    inside = {
        f"image_encoder.{layer}.{p}"
        for layer in layers
        for p, _ in model.image_encoder.get_submodule(layer).named_parameters()
    }
    assert layers and set(trainable_parameters(model)) == inside


@pytest.mark.parametrize("model", FAMILIES, indirect=True)
def test_attention_qkv_trains_only_the_q_k_v_projections(model):
    AttentionAdapter(parts="qkv").apply(model)
    trainable = set(trainable_parameters(model))
    assert trainable and all(n.endswith((".attn.qkv.weight", ".attn.qkv.bias")) for n in trainable)


@pytest.mark.parametrize(
    "adapter",
    [AttentionAdapter(), AttentionAdapter(parts="qkv"), SsfAdapter()],
    ids=["attention", "attention-qkv", "ssf"],  # stable ids: xdist workers must collect the same
)
def test_an_attention_of_unknown_class_is_refused_in_one_line_leaving_the_model(adapter: Adapter):
    sam = tiny_with_unknown_attention()
    before = {n: p.requires_grad for n, p in sam.named_parameters()}
    with pytest.raises(SamexpError) as e:
        adapter.apply(sam)
    assert str(e.value).startswith(
        f"adapter={adapter.kind} cannot adapt image_encoder.blocks.0.attn (PairedAttention)"
    )
    assert {n: p.requires_grad for n, p in sam.named_parameters()} == before


def test_a_model_with_nothing_of_the_role_is_refused(tiny):
    for block in tiny.sam.image_encoder.blocks:
        block.attn = nn.Identity()
    with pytest.raises(SamexpError, match="adapter=attention finds no parameter to train"):
        AttentionAdapter().apply(tiny.sam)


def test_partial_adapters_export_the_model_as_it_is(tiny):
    BitFitAdapter().apply(tiny.sam)
    with torch.no_grad():
        tiny.sam.image_encoder.blocks[0].attn.qkv.bias.add_(1.0)
    exported = BitFitAdapter().plain_state_dict(tiny.sam)
    assert torch.equal(
        exported["image_encoder.blocks.0.attn.qkv.bias"],
        tiny.sam.image_encoder.blocks[0].attn.qkv.bias,
    )
