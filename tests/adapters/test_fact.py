"""FacT-TT: each attention weight's increment is s · V Σ U, with U and V shared by every weight of
the same input / output width and a core Σ per layer and weight (the invariants every adapter
keeps: test_adapters.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from samexp.adapters.base import parameter_counts
from samexp.adapters.fact import FactAdapter, FactFactors, FactLinear
from samexp.config.errors import SamexpError
from samexp.models.build import build_tiny
from samexp.models.roles import roles
from samexp.models.sam2 import build_sam2_tiny
from tests.adapters.logits import logits_1024


def _wrappers(sam) -> dict[str, FactLinear]:
    return {n: m for n, m in sam.named_modules() if isinstance(m, FactLinear)}


def _drawn(sam, seed: int = 0) -> None:
    """Every factor and core drawn at random, as if trained (V starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (p for p in sam.parameters() if p.requires_grad):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_fact_increment_is_scale_times_v_sigma_u_on_each_part():
    base = build_tiny(seed=0)
    FactAdapter(rank=3, scale=0.5, qkv_parts=("q", "v")).apply(base.sam)
    _drawn(base.sam)
    qkv = base.sam.image_encoder.blocks[1].attn.qkv
    factors = base.sam.image_encoder.fact
    u, v = factors.u["32"], factors.v["32"]
    expected = qkv.base.weight.detach().clone()
    expected[:32] += 0.5 * v @ qkv.sigma[0] @ u  # q: the first third of the fused qkv
    expected[64:] += 0.5 * v @ qkv.sigma[1] @ u  # v: the last; k has no increment
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        assert torch.allclose(qkv(x), F.linear(x, expected, qkv.base.bias), atol=1e-6)
        qkv.merge()
        assert torch.allclose(qkv.base.weight, expected, atol=1e-6)


def test_fact_by_default_adapts_q_k_v_and_the_output_projection_of_every_encoder_attention():
    base = build_tiny(seed=0)
    FactAdapter().apply(base.sam)
    wrapped = _wrappers(base.sam)
    attentions = [a.name for a in roles(base.sam).attention]
    assert set(wrapped) == {f"{a}.{p}" for a in attentions for p in ("qkv", "proj")}
    assert all(len(wrapped[f"{a}.qkv"].sigma) == 3 for a in attentions)


def test_fact_layers_of_one_width_share_u_and_v_and_each_weight_has_its_own_core():
    """Hiera (sam2_tiny) widens per stage: one U per input width, one V per output width; a
    stage's first attention reads with the previous stage's U and writes with its own V."""
    base = build_sam2_tiny(seed=0)
    rank = 2
    FactAdapter(rank=rank).apply(base.sam)
    factors = base.sam.image_encoder.fact
    assert isinstance(factors, FactFactors)
    wrapped = _wrappers(base.sam).values()
    widths_in = {m.base.in_features for m in wrapped}
    widths_out = {size for m in wrapped for size in m.part_sizes}
    assert set(factors.u) == {str(w) for w in widths_in}
    assert set(factors.v) == {str(w) for w in widths_out}
    transition = base.sam.image_encoder.trunk.blocks[1].attn  # 8 -> 16 channels
    assert (transition.qkv.base.in_features, transition.qkv.part_sizes) == (8, [16, 16, 16])
    # every weight of a width trains the same tensors: a gradient reaches U from all its layers
    x8, x16 = torch.randn(1, 3, 8), torch.randn(1, 3, 16)
    _drawn(base.sam)
    (transition.qkv(x8).sum() + transition.proj(x16).sum()).backward()
    first = base.sam.image_encoder.trunk.blocks[0].attn.qkv
    assert factors.u["8"].grad is not None and factors.v["16"].grad is not None
    assert first.factors is factors and transition.qkv.factors is factors
    cores = sum(len(m.sigma) for m in wrapped)
    shared = sum(rank * int(w) for w in [*factors.u, *factors.v])
    assert parameter_counts(base.sam)["params/trainable"] == shared + cores * rank * rank


def test_fact_is_its_base_model_at_step_0_because_v_starts_at_zero():
    base = build_tiny(seed=0)
    FactAdapter().apply(base.sam)
    assert all(torch.count_nonzero(v) == 0 for v in base.sam.image_encoder.fact.v.values())
    assert all(torch.count_nonzero(u) > 0 for u in base.sam.image_encoder.fact.u.values())


def test_fact_export_has_the_stock_names_and_no_factor():
    base = build_tiny(seed=0)
    adapter = FactAdapter(rank=2)
    adapter.apply(base.sam)
    _drawn(base.sam)
    state = adapter.plain_state_dict(base.sam)
    assert set(state) == set(build_tiny(seed=0).sam.state_dict())
    assert not any(m.merged for m in _wrappers(base.sam).values())  # left as it was


def test_fact_qkv_parts_outside_q_k_v_are_refused_naming_the_key():
    with pytest.raises(SamexpError, match=r"adapter\.qkv_parts"):
        FactAdapter(qkv_parts=("q", "o"))


@pytest.mark.slow
def test_fact_on_vit_t_starts_equal_and_folds_into_a_stock_mobilesam(vit_t_base):
    """TinyViT interleaves q, k and v head by head in its qkv rows: the increments land on them."""
    reference = logits_1024(vit_t_base.sam)
    adapted = copy.deepcopy(vit_t_base)
    adapter = FactAdapter(rank=4, scale=0.5)
    adapter.apply(adapted.sam)
    assert torch.allclose(logits_1024(adapted.sam), reference, atol=1e-6)
    _drawn(adapted.sam)
    expected = logits_1024(adapted.sam)
    stock = copy.deepcopy(vit_t_base)
    stock.sam.load_state_dict(adapter.plain_state_dict(adapted.sam))  # strict: the stock names
    assert torch.allclose(logits_1024(stock.sam), expected, atol=1e-4)
    assert not torch.allclose(expected, reference, atol=1e-4)
