"""SAM 2.1 on the seam (`samexp.models.sam2`): built from sam2's packaged yaml without touching
Hydra's global state, decoding exactly as stock `SAM2ImagePredictor`, its Hiera attention adapted by
role, and its checkpoints checked by size (Meta publishes no SHA-256 for them).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
import pytest
import torch
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from samexp.adapters.lora import LoraAdapter, LoraLinear
from samexp.config.errors import CheckpointError, SamexpError
from samexp.models.build import build_tiny
from samexp.models.checkpoints import CHECKPOINTS, resolve_checkpoint, sha256_file
from samexp.models.family import family_of
from samexp.models.roles import roles
from samexp.models.sam2 import build_sam2, build_sam2_tiny, sam2_model
from samexp.models.seam import Prompts
from tests.conftest import compose_config
from tests.models.conftest import randomize_lora_b
from tests.models.stock_sam2 import stock_predictor

ARCHS = ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l")


@pytest.fixture(scope="module")
def tiny():
    return build_sam2_tiny(seed=0)


# --- building -------------------------------------------------------------------------------------


def test_tiny_sam2_is_the_same_per_seed_and_leaves_hydra_uninitialised(tiny):
    assert not GlobalHydra.instance().is_initialized()
    again, other = build_sam2_tiny(seed=0), build_sam2_tiny(seed=1)
    assert not GlobalHydra.instance().is_initialized()
    a, b, c = tiny.sam.state_dict(), again.sam.state_dict(), other.sam.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert type(tiny.sam).__name__ == "SAM2Base" and tiny.sam.image_size == 256
    assert sum(p.numel() for p in tiny.sam.parameters()) < 1_000_000
    assert (tiny.arch, tiny.weights_id) == ("sam2_tiny", "random:sam2_tiny:seed0")
    assert tiny.build_kwargs == {"seed": 0, "image_size": 256}
    assert tiny.pipeline.size == 256 and tiny.pipeline.stretch


def test_samexps_own_config_composes_and_builds_sam2_after_sam2_was_used(tiny):
    cfg = compose_config(["model=sam2_tiny", "model.image_size=512"])
    base = instantiate(cfg.model)
    assert base.sam.image_size == 512 and base.target == tiny.target
    assert not GlobalHydra.instance().is_initialized()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_sam2_size_composes_as_a_model_option(arch):
    cfg = compose_config([f"model={arch}", "model.pretrained=false"])
    assert (cfg.model.arch, cfg.model._target_) == (arch, "samexp.models.sam2.build_sam2")


def test_an_encoder_size_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr("samexp.models.sam2.load_or_init", pytest.fail)
    with pytest.raises(SamexpError, match=r"^model.encoder_size=512: SAM 2.1 runs at its native"):
        build_sam2("sam2.1_hiera_t", pretrained=False, encoder_size=512)


# --- encode and decode ----------------------------------------------------------------------------


def _prompt_cases(s: int) -> dict[str, dict]:
    g = torch.Generator().manual_seed(0)
    points = torch.rand(2, 3, 2, generator=g) * s
    labels = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.int)
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.7], [0.3, 0.1, 0.9, 0.6]]) * s
    masks = torch.randn(2, 1, s // 4, s // 4, generator=g)
    return {
        "points": {"points": points, "labels": labels},
        "one point set": {"points": points[:1], "labels": labels[:1]},
        "boxes": {"boxes": boxes},
        "boxes and points": {"boxes": boxes, "points": points, "labels": labels},
        "boxes and masks": {"boxes": boxes, "mask_inputs": masks},
    }


@pytest.mark.parametrize("image_size", [256, 1024])
def test_decode_equals_stock_sam2_image_predictor(image_size, tiny):
    sam = tiny.sam if image_size == 256 else build_sam2_tiny(seed=0, image_size=1024).sam
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    predictor = stock_predictor(sam)
    predictor.set_image(image)
    family = family_of(sam)
    with torch.no_grad():
        features = family.encode(sam, predictor._transforms(image)[None])
    for case, given in _prompt_cases(image_size).items():
        for multimask in (True, False):
            with torch.no_grad():
                low_res, iou = family.decode(sam, features, Prompts(**given), multimask)
            _, stock_iou, stock_low_res = predictor._predict(
                given.get("points"), given.get("labels"), given.get("boxes"),
                given.get("mask_inputs"), multimask_output=multimask, return_logits=True,
            )  # fmt: skip
            assert low_res.shape == stock_low_res.shape, case
            torch.testing.assert_close(low_res.clamp(-32, 32), stock_low_res, atol=1e-5, rtol=0)
            torch.testing.assert_close(iou, stock_iou, atol=1e-5, rtol=0)


def test_normalise_is_sam2_transforms_normalisation(tiny):
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    ours = family_of(tiny.sam).normalise(
        tiny.sam, torch.from_numpy(image).permute(2, 0, 1)[None], [(256, 256)]
    )
    stock = stock_predictor(tiny.sam)._transforms(image)[None]
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)


def test_learned_tokens_decode_beside_the_no_mask_embedding(tiny):
    sam = tiny.sam
    family = family_of(sam)
    with torch.no_grad():
        features = family.encode(sam, torch.randn(1, 3, 256, 256))
        tokens = torch.randn(3, 2, family.prompt_dim(sam))
        low_res, iou = family.decode(sam, features, Prompts(sparse=tokens), False)
    assert low_res.shape == (3, 1, 64, 64) and iou.shape == (3, 1)


def test_the_encoder_output_is_raw_features_and_the_decoder_side_trains_from_it():
    """conv_s0/conv_s1 and no_mem_embed run at decode time: changing them leaves a cached encoding
    valid, and gradients reach them and the encoder."""
    sam = build_sam2_tiny(seed=0).sam.train()
    family = family_of(sam)
    x = torch.randn(2, 3, 256, 256)
    features = family.encode(sam, x)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "fpn0": (2, 32, 64, 64), "fpn1": (2, 32, 32, 32), "image_embed": (2, 32, 16, 16)
    }  # fmt: skip
    with torch.no_grad():
        sam.sam_mask_decoder.conv_s0.weight.add_(1.0)
        sam.no_mem_embed.add_(1.0)
        assert torch.equal(family.encode(sam, x)["fpn0"], features["fpn0"])
    boxes = torch.tensor([[10.0, 20.0, 200.0, 180.0]])
    one = {k: v[:1] for k, v in features.items()}
    low_res, iou = family.decode(sam, one, Prompts(boxes=boxes), False)
    (low_res.mean() + iou.mean()).backward()
    for name in ("image_encoder.trunk.patch_embed.proj.weight", "sam_mask_decoder.conv_s0.weight",
                 "sam_mask_decoder.conv_s1.weight", "no_mem_embed"):  # fmt: skip
        grad = sam.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


# --- roles and LoRA -------------------------------------------------------------------------------


def test_hiera_qkv_thirds_are_q_k_v_as_its_forward_splits_them(tiny):
    found = roles(tiny.sam)
    stage_change = found.attention[1]  # dim 8 -> 16: qkv is Linear(8, 48)
    attention = tiny.sam.get_submodule(stage_change.name)
    x = torch.randn(1, 4, 4, attention.dim)
    out = attention.qkv(x)
    heads = attention.num_heads
    q, k, v = torch.unbind(out.reshape(1, 16, 3, heads, -1), 2)  # as MultiScaleAttention.forward
    for part, split in zip("qkv", (q, k, v), strict=True):
        linear, rows = stage_change.parts[part]
        assert linear == f"{stage_change.name}.qkv"
        assert torch.equal(out[..., rows].reshape(1, 16, heads, -1), split), part


def test_roles_of_the_tiny_and_of_hiera_t():
    tiny = roles(build_sam2_tiny().sam)
    assert len(tiny.attention) == 5 and tiny.unknown_attention == ()  # stages [1, 1, 2, 1]
    hiera_t = roles(sam2_model("sam2.1_hiera_t"))
    assert len(hiera_t.attention) == 12 and hiera_t.unknown_attention == ()
    assert hiera_t.attention[0].name == "image_encoder.trunk.blocks.0.attn"
    assert hiera_t.mlps[0] == "image_encoder.trunk.blocks.0.mlp" and len(hiera_t.mlps) == 12
    assert hiera_t.blocks[0] == "image_encoder.trunk.blocks.0" and len(hiera_t.blocks) == 12
    assert (hiera_t.image_encoder, hiera_t.prompt_encoder, hiera_t.mask_decoder) == (
        "image_encoder", "sam_prompt_encoder", "sam_mask_decoder"
    )  # fmt: skip


def test_lora_on_hiera_qkv_with_q_and_v_changes_only_those_rows():
    sam = build_sam2_tiny(seed=0).sam
    base_qkv = {a.name: sam.get_submodule(f"{a.name}.qkv") for a in roles(sam).attention}
    LoraAdapter(rank=2, qkv_parts=["q", "v"]).apply(sam)
    randomize_lora_b(sam)
    for name, base in base_qkv.items():
        wrapped = sam.get_submodule(f"{name}.qkv")
        assert isinstance(wrapped, LoraLinear) and wrapped.base is base
        x = torch.randn(5, base.in_features)
        with torch.no_grad():
            changed = (wrapped(x) - base(x)).abs().amax(0) > 0
        d = base.out_features // 3
        assert changed[:d].all() and not changed[d : 2 * d].any() and changed[2 * d :].all(), name


# --- checkpoints ----------------------------------------------------------------------------------


def test_sam2_checkpoints_are_the_official_urls_checked_by_size():
    for arch, name in zip(ARCHS, ("tiny", "small", "base_plus", "large"), strict=True):
        spec = CHECKPOINTS[arch]
        assert spec.url == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{name}.pt"
        )
        assert spec.sha256 is None and spec.size_bytes > 150_000_000
    assert CHECKPOINTS["sam2.1_hiera_t"].size_bytes == 156_008_466


@pytest.fixture
def small_spec(monkeypatch):
    """hiera_t's entry describing a 1 KB file (the check, not 156 MB of bytes, is under test)."""
    spec = dataclasses.replace(CHECKPOINTS["sam2.1_hiera_t"], size_bytes=1024)
    monkeypatch.setitem(CHECKPOINTS, spec.arch, spec)
    for name in ("SAMEXP_CHECKPOINT_MIRROR", "SAMEXP_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return spec


def test_a_mirror_file_of_the_wrong_size_is_refused_naming_the_expected_size(small_spec, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / small_spec.filename).write_bytes(b"x" * 1000)
    with pytest.raises(CheckpointError, match=r"expected size: 1024 bytes \(size only: Meta"):
        resolve_checkpoint(small_spec.arch, mirror=str(mirror), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / small_spec.filename).exists()


def test_a_mirror_file_of_the_right_size_is_accepted_and_identified_by_its_hash(
    small_spec, tmp_path, caplog
):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / small_spec.filename).write_bytes(bytes(range(256)) * 4)
    with caplog.at_level(logging.INFO, logger="samexp.models.checkpoints"):
        resolved = resolve_checkpoint(
            small_spec.arch, mirror=str(mirror), cache_dir=tmp_path / "cache"
        )
        again = resolve_checkpoint(small_spec.arch, cache_dir=tmp_path / "cache")
    assert resolved.path == tmp_path / "cache" / small_spec.filename
    assert resolved.sha256 == again.sha256 == sha256_file(mirror / small_spec.filename)
    assert sum("size only" in r.getMessage() for r in caplog.records) <= 1


# a random hiera_t saved (156 MB), copied and hashed: ~2 s on the 2-core EPYC
def test_a_sam2_checkpoint_loads_from_its_model_entry_and_a_sam_file_is_refused(
    tmp_path, monkeypatch
):
    random = build_sam2("sam2.1_hiera_t", pretrained=False, seed=3)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    path = mirror / "sam2.1_hiera_tiny.pt"
    torch.save(family_of(random.sam).stock_checkpoint(random.sam.state_dict()), path)
    spec = dataclasses.replace(CHECKPOINTS["sam2.1_hiera_t"], size_bytes=path.stat().st_size)
    monkeypatch.setitem(CHECKPOINTS, spec.arch, spec)
    loaded = build_sam2("sam2.1_hiera_t", mirror=str(mirror), cache_dir=str(tmp_path / "cache"))
    assert loaded.weights_id == sha256_file(path)
    expected = random.sam.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.sam.state_dict().items())

    sam_file = tmp_path / "sam.pth"
    torch.save({"model": build_tiny().sam.state_dict()}, sam_file)
    with pytest.raises(CheckpointError, match=r"does not fit SAM sam2.1_hiera_t.*sam2.1_hiera_b\+"):
        build_sam2("sam2.1_hiera_t", checkpoint=str(sam_file))


def test_stock_build_sam2_loads_the_tiny_export_with_the_line_samexp_gives(tiny, tmp_path):
    import samexp.models.sam2

    path = tmp_path / "tiny.pt"
    family = family_of(tiny.sam)
    torch.save(family.stock_checkpoint(tiny.sam.state_dict()), path)
    line = family.how_to_load(tiny.arch, tiny.build_kwargs, path)
    assert line.startswith('sam2.build_sam.build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml"')
    import sam2.build_sam

    # in a fresh process `import sam2` initialises Hydra for build_sam2; here samexp cleared it
    with initialize_config_module("sam2", version_base="1.2"):
        stock = eval(line, {"sam2": sam2, "samexp": samexp})  # noqa: S307
    expected = tiny.sam.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in stock.state_dict().items())


def test_automatic_masks_equal_stock_sam2_automatic_mask_generator_over_samexps_predictor(tiny):
    """On an S×S image (no resize, so both pipelines see the same pixels). Normalising in 0..255
    units rounds differently from stock's 0..1, so a logit within float rounding of the threshold
    may flip: a few edge pixels of a ~36k-pixel mask, never more."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from samexp.predict.predictor import Predictor

    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    settings = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                "box_nms_thresh": 1.0}  # fmt: skip
    ours = family_of(tiny.sam).mask_generator(Predictor(tiny.sam), settings).generate(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = SAM2AutomaticMaskGenerator(tiny.sam, **settings)
    stock.predictor = stock_predictor(tiny.sam)
    expected = stock.generate(image)
    assert len(ours) == len(expected) > 1
    for a, b in zip(ours, expected, strict=True):
        assert (a["segmentation"] != b["segmentation"]).sum() <= 4
        assert np.allclose(a["bbox"], b["bbox"], atol=1)
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)
