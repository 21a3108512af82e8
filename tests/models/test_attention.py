"""The fast attention kernels (SDPA, blocked) compute what SAM's stock `Attention.forward` does, gradients included."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from samexp.adapters.lora import LoraLinear
from samexp.models.attention import (
    FORWARDS,
    kernel_of,
    restore_attention,
    set_attention,
)
from samexp.models.build import build_tiny
from samexp.models.seam import encode
from tests.models.conftest import encoder_images, randomize_lora_b, tiny_lora_sam

ATOL = 1e-4


def _vit_b_attention(window: int) -> Attention:
    """One vit_b-sized attention (768 wide, 12 heads) with random rel-pos and a LoRA with non-zero B."""
    torch.manual_seed(0)
    attn = Attention(
        768, num_heads=12, qkv_bias=True, use_rel_pos=True, input_size=(window, window)
    )
    with torch.no_grad():
        attn.rel_pos_h.normal_(std=0.5)
        attn.rel_pos_w.normal_(std=0.5)
    attn.qkv = LoraLinear(
        attn.qkv, rank=4, alpha=4.0, out_slices=[slice(0, 768), slice(1536, 2304)]
    )
    randomize_lora_b(attn)
    return attn


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("window", "tokens"),
    [(14, 14), pytest.param(64, 64, marks=pytest.mark.slow)],
    ids=["window", "global"],
)
@pytest.mark.parametrize("kernel", sorted(FORWARDS))
def test_fast_kernel_matches_stock_vit_b_attention_with_lora(kernel, window, tokens):
    attn = _vit_b_attention(window)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, tokens, tokens, 768, generator=g)
    upstream = torch.randn(1, tokens, tokens, 768, generator=g)
    wrt = [
        attn.rel_pos_h,
        attn.rel_pos_w,
        *(p for n, p in attn.named_parameters() if "lora_" in n),
    ]

    results = []
    for forward in (Attention.forward, FORWARDS[kernel]):
        xi = x.clone().requires_grad_()
        out = forward(attn, xi)
        grads = torch.autograd.grad((out * upstream).sum(), [xi, *wrt])
        results.append((out.detach(), grads))

    (stock_out, stock_grads), (sdpa_out, sdpa_grads) = results
    assert _max_diff([sdpa_out], [stock_out]) < ATOL
    assert _max_diff([sdpa_grads[0]], [stock_grads[0]]) < ATOL  # w.r.t. the input
    # Parameter gradients are sums over all HW tokens (up to ~200 at 64×64), so fp32 summation
    # order alone moves them by ~1e-4; compare them relative to their size instead.
    for ours, stock in zip(sdpa_grads[1:], stock_grads[1:], strict=True):
        assert _max_diff([ours], [stock]) < ATOL * max(1.0, stock.abs().max().item())
    assert stock_grads[-1].abs().max() > 0  # LoRA's B is live, so its gradient path is compared


@pytest.mark.parametrize("kernel", sorted(FORWARDS))
def test_tiny_encoder_with_fast_kernel_matches_stock_in_window_and_global_blocks(kernel):
    sam = tiny_lora_sam()
    assert {b.window_size > 0 for b in sam.image_encoder.blocks} == {True, False}
    images, sizes = encoder_images()
    lora = [p for p in sam.parameters() if p.requires_grad]

    stock = encode(sam, images, sizes)["image_embed"]
    stock_grads = torch.autograd.grad(stock.square().mean(), lora)
    assert set_attention(sam, kernel) == 2
    fused = encode(sam, images, sizes)["image_embed"]
    fused_grads = torch.autograd.grad(fused.square().mean(), lora)

    assert _max_diff([fused], [stock]) < ATOL
    assert _max_diff(list(fused_grads), list(stock_grads)) < ATOL


def test_set_attention_is_idempotent_and_only_touches_the_image_encoder():
    sam = build_tiny(seed=0).sam
    assert set_attention(sam, "sdpa") == set_attention(sam, "sdpa") == 2
    attns = [m for m in sam.modules() if isinstance(m, Attention)]
    assert attns and all(kernel_of(m) == "sdpa" for m in attns)
    assert not any(kernel_of(m) == "sdpa" for m in sam.mask_decoder.modules())


def test_restore_attention_gives_back_the_stock_forward():
    sam = build_tiny(seed=0).sam
    keys = list(sam.state_dict())
    set_attention(sam, "sdpa")
    assert list(sam.state_dict()) == keys
    assert restore_attention(sam) == 2
    assert restore_attention(sam) == 0
    for blk in sam.image_encoder.blocks:
        assert "forward" not in vars(blk.attn)
        assert blk.attn.forward.__func__ is Attention.forward


def test_set_attention_switches_between_kernels_and_refuses_unknown_ones():
    sam = build_tiny(seed=0).sam
    attns = [blk.attn for blk in sam.image_encoder.blocks]
    for kernel in ("blocked", "sdpa", "stock", "blocked"):
        set_attention(sam, kernel)
        assert {kernel_of(m) for m in attns} == {kernel}
    with pytest.raises(ValueError, match="choose one of"):
        set_attention(sam, "flash")


def _largest_saved(forward, attn: Attention, x: torch.Tensor) -> int:
    """Elements of the largest tensor autograd keeps for backward while running `forward`."""
    largest = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(attn, x)
    return largest


def test_blocked_attention_keeps_no_score_matrix_for_backward():
    """The stock module keeps heads×HW×HW scores per block (805 MB per vit_b global block at 1024²);
    blocked recomputes them block by block in backward instead."""
    attn = _vit_b_attention(32)  # global attention on a 32×32 grid: 12×1024×1024 scores
    x = torch.randn(1, 32, 32, 768, requires_grad=True)
    scores = 12 * 1024 * 1024
    assert _largest_saved(Attention.forward, attn, x) >= scores
    assert _largest_saved(FORWARDS["blocked"], attn, x) < scores / 4
