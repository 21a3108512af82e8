"""MobileSAM (`model=vit_t`): built by mobile_sam with a base identity samexp can rebuild, its
checkpoint resolved like Meta's, BatchNorm statistics and TinyViT's cached attention-bias table
kept right, every adapter applied and reloaded, and what TinyViT cannot do refused naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from samexp.adapters.base import trainable_parameters
from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.full import FullAdapter
from samexp.adapters.io import load_adapter, save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.config.errors import CheckpointError, SamexpError
from samexp.config.options import by_target
from samexp.models.attention import choose_kernel
from samexp.models.build import build_tiny
from samexp.models.checkpoints import CHECKPOINTS, sha256_file
from samexp.models.mobile import build_mobile, tiny_vit
from samexp.tracking.finetuned import build_base
from tests.conftest import compose_config


def _bias_tables_are_current(sam: nn.Module) -> bool:
    """Whether every TinyViT attention's eval-mode bias table is built from its present biases."""
    attentions = [m for m in sam.modules() if isinstance(m, tiny_vit().Attention)]
    assert attentions
    return all(torch.equal(m.ab, m.attention_biases[:, m.attention_bias_idxs]) for m in attentions)


def test_model_vit_t_builds_mobilesam_with_a_tinyvit_encoder_and_a_rebuildable_identity(
    vit_t_base,
):
    from mobile_sam.modeling import Sam, TinyViT

    rng = torch.random.get_rng_state()
    cfg = compose_config(["model=vit_t", "model.pretrained=false", "seed=3", "data_root=/d"])
    base = instantiate(cfg.model, _convert_="all")
    assert torch.equal(torch.random.get_rng_state(), rng), "building moved the run's RNG"
    assert isinstance(base.sam, Sam) and isinstance(base.sam.image_encoder, TinyViT)
    assert (base.arch, base.weights_id, base.img_size) == ("vit_t", "random:vit_t:seed3", 1024)
    assert base.build_kwargs == {"arch": "vit_t", "pretrained": False, "seed": 3}
    assert by_target("model", base.target).name == "mobile_sam"
    # MobileSAM's ~10M: TinyViT 6.07M (its unused 0.32M classifier head included) + SAM's decoder
    assert sum(p.numel() for p in base.sam.parameters()) == 10_130_092

    described = {"_target_": base.target, "arch": base.arch, "weights_id": base.weights_id,
                 "build_kwargs": base.build_kwargs}  # fmt: skip
    again = build_base({"base": described})  # what predict and export do from a file
    for (name, a), b in zip(
        base.sam.state_dict().items(), again.sam.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), f"the same seed gave another {name}"
    other_seed = vit_t_base.sam.image_encoder.layers[1].blocks[0].attn.qkv.weight
    assert not torch.equal(base.sam.image_encoder.layers[1].blocks[0].attn.qkv.weight, other_seed)


def test_vit_t_batchnorm_keeps_the_checkpoint_statistics_when_training(vit_t):
    sam = vit_t.sam
    FullAdapter().apply(sam)
    sam.train()
    norms = [m for m in sam.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert sam.image_encoder.layers[1].blocks[0].attn.training, "the rest trains as usual"

    stage = sam.image_encoder.layers[0]  # TinyViT's convolution stage: MBConv blocks, BatchNorm
    statistics = {n: b.clone() for n, b in stage.named_buffers()}
    x = torch.randn(2, 64, 32, 32, generator=torch.Generator().manual_seed(0))
    trained = stage(x)
    trained.square().mean().backward()
    assert all(torch.equal(b, statistics[n]) for n, b in stage.named_buffers())
    assert all(m.weight.grad is not None for m in stage.modules() if isinstance(m, nn.BatchNorm2d))
    sam.eval()
    assert torch.equal(stage(x), trained), "training must see the evaluation's normalisation"


def test_vit_t_checkpoint_comes_from_a_mirror_verified_and_cached_like_metas(
    vit_t, tmp_path, monkeypatch
):
    with torch.no_grad():  # trained biases are not the init's zeros: the cached table must follow
        for name, p in vit_t.sam.named_parameters():
            if name.endswith("attention_biases"):
                p.normal_()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save(vit_t.sam.state_dict(), mirror / "mobile_sam.pt")
    sha = sha256_file(mirror / "mobile_sam.pt")
    monkeypatch.setitem(CHECKPOINTS, "vit_t", dataclasses.replace(CHECKPOINTS["vit_t"], sha256=sha))

    loaded = build_mobile(mirror=str(mirror), cache_dir=str(tmp_path / "cache"))
    assert (loaded.weights_id, loaded.build_kwargs) == (sha, {"arch": "vit_t"})
    assert sha256_file(tmp_path / "cache" / "mobile_sam.pt") == sha
    for (name, a), b in zip(
        vit_t.sam.state_dict().items(), loaded.sam.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert _bias_tables_are_current(loaded.sam)


def test_a_sam_checkpoint_given_to_vit_t_is_refused_naming_the_architectures(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_tiny().sam.state_dict(), path)
    with pytest.raises(
        CheckpointError, match=r"does not fit SAM vit_t.*model=vit_b/vit_l/vit_h/vit_t"
    ):
        build_mobile(checkpoint=str(path))


def test_vit_t_encoder_size_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr("samexp.models.mobile.load_or_init", pytest.fail)
    with pytest.raises(SamexpError, match=r"^model.encoder_size=512: .* 1024 px only"):
        build_mobile(pretrained=False, encoder_size=512)


ADAPTERS = {  # kind -> (adapter, regex every trainable parameter matches, and every match trains)
    "lora": (LoraAdapter, r"image_encoder\.layers\.[123]\.blocks\.\d+\.attn\.qkv\.lora_[AB]\.[01]\.weight"),
    "decoder": (DecoderAdapter, r"mask_decoder\..*"),
    "full": (FullAdapter, r".*"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_every_adapter_applies_to_vit_t_and_its_weights_reload_exactly(
    kind, vit_t, vit_t_base, tmp_path
):
    make, pattern = ADAPTERS[kind]
    adapter = make()
    adapter.apply(vit_t.sam)
    trained = trainable_parameters(vit_t.sam)
    names = {n for n, _ in vit_t.sam.named_parameters()}
    assert trained and set(trained) == {n for n in names if re.fullmatch(pattern, n)}
    with torch.no_grad():  # stands in for training
        for p in trained.values():
            p.add_(torch.randn_like(p), alpha=0.1)
    path = save_adapter(tmp_path / "adapter.safetensors", vit_t, adapter)

    fresh = copy.deepcopy(vit_t_base)
    assert load_adapter(path, fresh).hparams() == adapter.hparams()
    for name, p in trainable_parameters(fresh.sam).items():
        assert torch.equal(p, trained[name]), name
    assert _bias_tables_are_current(fresh.sam)  # changed by adapter=full: rebuilt on load


def test_vit_t_runs_its_own_attention_and_a_vit_kernel_is_refused_naming_the_key(vit_t_base):
    cpu = torch.device("cpu")
    for kernel in ("auto", "stock"):
        assert choose_kernel(vit_t_base.sam, kernel, cpu, "trainer.attention") == "stock"
    with pytest.raises(SamexpError, match=r"^attention=blocked: .*\(TinyViT\).*attention=auto"):
        choose_kernel(vit_t_base.sam, "blocked", cpu, "attention")  # predict's key


def test_a_vit_t_run_asking_for_the_sdpa_kernel_stops_at_startup_naming_trainer_attention(
    make_config,
):
    from samexp.runner import run

    cfg = make_config("model=vit_t", "model.pretrained=false", "trainer.attention=sdpa",
                      "tracking.enabled=false")  # fmt: skip
    with pytest.raises(SamexpError, match=r"^trainer.attention=sdpa: .*trainer.attention=auto"):
        run(cfg)
