"""Building SAMs: the tiny one from segment_anything's own modules, the official ones from the registry."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import Sam

from samexp.config.errors import CheckpointError, SamexpError
from samexp.models.build import BaseModel, build_official, build_tiny


def test_tiny_is_a_stock_sam_with_256px_input(tiny):
    assert isinstance(tiny.sam, Sam)
    assert tiny.img_size == 256
    assert tiny.sam.prompt_encoder.image_embedding_size == (16, 16)


def test_tiny_is_reproducible_per_seed_and_differs_across_seeds():
    a, b, c = build_tiny(seed=0), build_tiny(seed=0), build_tiny(seed=1)
    for (name, pa), pb in zip(a.sam.state_dict().items(), b.sam.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.sam.mask_decoder.iou_token.weight, c.sam.mask_decoder.iou_token.weight)
    assert a.weights_id == "random:tiny:seed0" != c.weights_id


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(SamexpError, match="vit_b"):
        build_official(arch="vit_x", pretrained=False)


def test_checkpoint_of_another_arch_is_refused(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_tiny().sam.state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit SAM vit_b"):
        build_official(arch="vit_b", checkpoint=str(path))


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
def test_official_loads_a_local_checkpoint_and_records_its_sha(tmp_path):
    random_b = build_official(arch="vit_b", pretrained=False, seed=3)
    path = tmp_path / "my_vit_b.pth"
    torch.save(random_b.sam.state_dict(), path)
    loaded = build_official(arch="vit_b", checkpoint=str(path))
    assert len(loaded.weights_id) == 64  # a sha256 of the file, not a random id
    assert torch.equal(
        loaded.sam.mask_decoder.iou_token.weight, random_b.sam.mask_decoder.iou_token.weight
    )


def test_a_base_model_identity_tells_architectures_apart_that_share_a_seed():
    # embeddings are cached by identity: a depth-3 tiny model must not be served depth-2 entries
    assert build_tiny(seed=0).identity == build_tiny(seed=0).identity
    assert build_tiny(seed=0).identity != build_tiny(seed=0, depth=3).identity
    assert build_tiny(seed=0).identity != build_tiny(seed=1).identity


def test_a_random_base_says_what_its_runs_can_show_and_a_pretrained_one_says_nothing(tiny):
    assert "random weights" in tiny.caveat() and "model=vit_b" in tiny.caveat()
    pretrained = BaseModel(tiny.sam, "tiny", weights_id="ab" * 32)  # a checkpoint's sha256
    assert pretrained.caveat() is None
