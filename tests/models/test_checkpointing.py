"""Checkpointed encoder blocks compute the same loss and gradients, keep parameter names, and stay
out of the way when no gradient is needed."""

from __future__ import annotations

import copy

import pytest
import torch

import samexp.models.checkpointing as ckpt
from samexp.adapters.full import FullAdapter
from samexp.models.attention import set_attention
from samexp.models.build import build_tiny
from samexp.models.checkpointing import disable_checkpointing, enable_checkpointing, is_checkpointed
from samexp.models.seam import encode
from tests.models.conftest import encoder_images, tiny_lora_sam


def _loss_and_grads(sam) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images, sizes = encoder_images()
    loss = encode(sam, images, sizes)["image_embed"].square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in sam.named_parameters() if p.requires_grad}


def _count_checkpoint_calls(monkeypatch) -> list[int]:
    calls = [0]
    real = ckpt.checkpoint

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt, "checkpoint", counting)
    return calls


def test_checkpointing_gives_identical_loss_and_gradients_with_lora():
    plain = tiny_lora_sam()
    checkpointed = copy.deepcopy(plain)
    assert enable_checkpointing(checkpointed) == 2

    loss, grads = _loss_and_grads(plain)
    ck_loss, ck_grads = _loss_and_grads(checkpointed)

    assert torch.allclose(ck_loss, loss, atol=1e-6)
    assert grads.keys() == ck_grads.keys() and grads
    for name, g in grads.items():
        assert torch.allclose(ck_grads[name], g, atol=1e-6), name


def test_checkpointing_keeps_state_dict_keys_so_saved_weights_load():
    sam = tiny_lora_sam()
    before = sam.state_dict()
    enable_checkpointing(sam)
    assert list(sam.state_dict()) == list(before)
    sam.load_state_dict(before, strict=True)


def test_enable_checkpointing_is_idempotent(monkeypatch):
    sam = tiny_lora_sam()
    assert enable_checkpointing(sam) == enable_checkpointing(sam) == 2
    assert all(is_checkpointed(b) for b in sam.image_encoder.blocks)
    calls = _count_checkpoint_calls(monkeypatch)
    _loss_and_grads(sam)
    assert calls[0] == 2  # once per block, not nested


def test_checkpointing_does_nothing_under_no_grad(monkeypatch):
    sam = tiny_lora_sam()
    images, sizes = encoder_images()
    with torch.no_grad():
        expected = encode(sam, images, sizes)["image_embed"]
    enable_checkpointing(sam)
    calls = _count_checkpoint_calls(monkeypatch)
    with torch.no_grad():
        out = encode(sam, images, sizes)["image_embed"]
    assert calls[0] == 0
    assert torch.equal(out, expected)
    encode(sam, images, sizes)
    assert calls[0] == 2


def test_checkpointing_skips_a_frozen_encoder(monkeypatch):
    sam = build_tiny(seed=0).sam.requires_grad_(False)
    enable_checkpointing(sam)
    calls = _count_checkpoint_calls(monkeypatch)
    encode(sam, *encoder_images())
    assert calls[0] == 0


def test_checkpointing_composes_with_sdpa_attention():
    plain = tiny_lora_sam()
    fast = copy.deepcopy(plain)
    set_attention(fast, "sdpa")
    enable_checkpointing(fast)
    loss, grads = _loss_and_grads(plain)
    fast_loss, fast_grads = _loss_and_grads(fast)
    assert torch.allclose(fast_loss, loss, atol=1e-4)
    for name, g in grads.items():
        assert torch.allclose(fast_grads[name], g, atol=1e-4), name


def test_disable_checkpointing_restores_the_plain_forward():
    sam = tiny_lora_sam()
    enable_checkpointing(sam)
    assert disable_checkpointing(sam) == 2
    assert disable_checkpointing(sam) == 0
    assert not any(is_checkpointed(b) for b in sam.image_encoder.blocks)


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
def test_vit_t_checkpointing_covers_every_tinyvit_block_with_identical_gradients(
    vit_t, monkeypatch
):
    sam = vit_t.sam
    FullAdapter().apply(sam)
    sam.train()
    stages = sam.image_encoder.layers
    g = torch.Generator().manual_seed(0)
    # the convolution stage and the last attention stage, at their own input shapes
    inputs = {0: torch.randn(1, 64, 32, 32, generator=g), 3: torch.randn(1, 64 * 64, 320, generator=g)}  # fmt: skip

    def gradients() -> dict[str, torch.Tensor]:
        sam.zero_grad(set_to_none=True)
        sum(stages[i](x).square().mean() for i, x in inputs.items()).backward()
        return {n: p.grad for n, p in stages.named_parameters() if p.grad is not None}

    plain = gradients()
    assert enable_checkpointing(sam) == 12  # MobileSAM: 2 MBConv, then 2, 6 and 2 attention blocks
    calls = _count_checkpoint_calls(monkeypatch)
    checkpointed = gradients()
    assert calls[0] == 4  # the two blocks of each stage run, each checkpointed once
    assert checkpointed.keys() == plain.keys() and plain
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, atol=1e-6), name
