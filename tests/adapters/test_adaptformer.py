"""AdaptFormer: a bottleneck beside every image-encoder MLP, `mlp(x) + s · up(relu(down(x)))`, that
starts as nothing and cannot be exported to a stock checkpoint (the invariants every adapter keeps:
test_adapters.py)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from samexp.adapters.adaptformer import AdaptFormerAdapter, AdaptFormerMlp
from samexp.adapters.io import load_adapter, save_adapter
from samexp.config.errors import SamexpError
from samexp.models.build import build_tiny
from samexp.models.roles import roles
from samexp.models.sam2 import build_sam2_tiny
from tests.adapters.logits import logits_1024
from tests.conftest import REPO

FAMILIES = {"tiny": lambda: build_tiny(seed=0), "sam2_tiny": lambda: build_sam2_tiny(seed=0)}


@pytest.mark.parametrize("family", FAMILIES)
def test_adaptformer_wraps_every_encoder_mlp_and_adds_nothing_at_step_0(family):
    base = FAMILIES[family]()
    mlps = roles(base.sam).mlps
    originals = {name: base.sam.get_submodule(name) for name in mlps}
    AdaptFormerAdapter().apply(base.sam)
    for name, mlp in originals.items():
        wrapped = base.sam.get_submodule(name)
        assert isinstance(wrapped, AdaptFormerMlp) and wrapped.mlp is mlp
        x = torch.randn(2, 3, 3, wrapped.down.in_features)  # channels-last, as the blocks call it
        with torch.no_grad():
            assert torch.equal(wrapped(x), mlp(x))  # up is zero: exactly the MLP


def test_adaptformer_adds_scale_times_up_relu_down_to_the_mlp_output():
    base = build_tiny(seed=0)
    AdaptFormerAdapter(bottleneck=4, scale=0.3).apply(base.sam)
    wrapped = base.sam.image_encoder.blocks[0].mlp
    with torch.no_grad():
        wrapped.up.weight.normal_()
        wrapped.up.bias.normal_()
        x = torch.randn(1, 2, 2, 32)
        bottleneck = F.linear(F.relu(F.linear(x, wrapped.down.weight, wrapped.down.bias)),
                              wrapped.up.weight, wrapped.up.bias)  # fmt: skip
        assert torch.allclose(wrapped(x), wrapped.mlp(x) + 0.3 * bottleneck, atol=1e-6)


def test_adaptformer_merge_changes_nothing_and_export_is_refused_naming_the_kind():
    base = build_tiny(seed=0)
    adapter = AdaptFormerAdapter()
    adapter.apply(base.sam)
    before = {k: v.clone() for k, v in base.sam.state_dict().items()}
    adapter.merge(base.sam)
    assert all(torch.equal(v, before[k]) for k, v in base.sam.state_dict().items())
    with pytest.raises(SamexpError, match=r"^adapter adaptformer cannot be exported.*predict"):
        adapter.plain_state_dict(base.sam)


@pytest.mark.slow
def test_exporting_an_adaptformer_run_prints_the_refusal_in_one_line(tmp_path):
    base = build_tiny(seed=0)
    adapter = AdaptFormerAdapter(bottleneck=4)
    adapter.apply(base.sam)
    weights = save_adapter(tmp_path / "adapter.safetensors", base, adapter)
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run(
        [sys.executable, "-m", "samexp.export", f"hydra.run.dir={tmp_path / 'hydra'}",
         f"weights={weights}", f"out={tmp_path / 'sam.pth'}"],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "adapter adaptformer cannot be exported to a stock checkpoint" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "sam.pth").exists()


@pytest.mark.slow
def test_adaptformer_on_vit_t_starts_equal_and_reloads_to_the_same_masks(vit_t_base, tmp_path):
    """TinyViT's Mlp normalises inside itself: the bottleneck reads the block's stream beside it."""
    reference = logits_1024(vit_t_base.sam)
    adapted = copy.deepcopy(vit_t_base)
    adapter = AdaptFormerAdapter(bottleneck=8, scale=0.5)
    adapter.apply(adapted.sam)
    assert torch.allclose(logits_1024(adapted.sam), reference, atol=1e-6)
    with torch.no_grad():  # stands in for training
        for p in (p for p in adapted.sam.parameters() if p.requires_grad):
            p.add_(torch.randn_like(p), alpha=0.1)
    expected = logits_1024(adapted.sam)
    path = save_adapter(tmp_path / "adapter.safetensors", adapted, adapter)
    fresh = copy.deepcopy(vit_t_base)
    load_adapter(path, fresh)
    assert torch.equal(logits_1024(fresh.sam), expected)
    assert not torch.allclose(expected, reference, atol=1e-4)
