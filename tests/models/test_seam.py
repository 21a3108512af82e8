"""The encode/decode seam computes exactly what `Sam.forward` does, with gradients and one encoder pass per image."""

from __future__ import annotations

import torch

from samexp.data.frame import Frame
from samexp.models.seam import Prompts, decode, encode, preprocess, upscale


def _images(n: int, sizes: list[tuple[int, int]]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(n, 3, 256, 256, dtype=torch.uint8)
    for i, (h, w) in enumerate(sizes):
        images[i, :, :h, :w] = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    return images


def test_preprocess_matches_sam_preprocess_on_unpadded_input(tiny):
    images = _images(1, [(200, 256)])
    ours = preprocess(tiny.sam, images, [(200, 256)])
    stock = tiny.sam.preprocess(images[0, :, :200, :256].float())
    assert torch.allclose(ours[0], stock, atol=1e-6)


def test_encode_decode_equals_sam_forward(tiny):
    sizes = [(256, 192), (160, 256)]
    images = _images(2, sizes)
    boxes = torch.tensor([[10.0, 20, 120, 200], [30, 5, 250, 150], [0, 0, 60, 60]])
    instance_image = torch.tensor([0, 1, 1])
    low_res, iou = decode(
        tiny.sam, encode(tiny.sam, images, sizes), instance_image, Prompts(boxes=boxes)
    )

    stock = tiny.sam(
        [
            {
                "image": images[0, :, :256, :192].float(),
                "original_size": (256, 192),
                "boxes": boxes[:1],
            },
            {
                "image": images[1, :, :160, :256].float(),
                "original_size": (160, 256),
                "boxes": boxes[1:],
            },
        ],
        multimask_output=False,
    )
    expected = torch.cat([o["low_res_logits"] for o in stock])
    assert torch.allclose(low_res, expected, atol=1e-5)
    assert torch.allclose(iou, torch.cat([o["iou_predictions"] for o in stock]), atol=1e-6)
    # back at the image's size through the one image pipeline, as stock SAM brings them back
    frame = Frame(256, (160, 256), (160, 256))
    assert torch.equal(frame.masks(low_res[1:], tiny.sam.mask_threshold), stock[1]["masks"])


def test_decode_keeps_instance_order_when_images_interleave(tiny):
    sizes = [(256, 256), (256, 256)]
    images = _images(2, sizes)
    boxes = torch.tensor([[10.0, 10, 100, 100], [20, 20, 200, 200], [50, 60, 70, 90]])
    emb = encode(tiny.sam, images, sizes)
    ordered, _ = decode(tiny.sam, emb, torch.tensor([0, 0, 1]), Prompts(boxes=boxes))
    shuffled, _ = decode(tiny.sam, emb, torch.tensor([1, 0, 0]), Prompts(boxes=boxes[[2, 0, 1]]))
    assert torch.allclose(shuffled, ordered[[2, 0, 1]], atol=1e-6)


def test_gradients_flow_through_the_seam_unlike_sam_forward(tiny):
    images = _images(1, [(256, 256)])
    low_res, _ = decode(tiny.sam, encode(tiny.sam, images, [(256, 256)]), torch.tensor([0]),
                        Prompts(boxes=torch.tensor([[10.0, 10, 200, 200]])))  # fmt: skip
    upscale(tiny.sam, low_res).sum().backward()
    assert tiny.sam.image_encoder.patch_embed.proj.weight.grad is not None
    assert tiny.sam.mask_decoder.iou_token.weight.grad is not None


def test_upscale_returns_input_frame_logits(tiny):
    assert upscale(tiny.sam, torch.zeros(3, 1, 64, 64)).shape == (3, 1, 256, 256)
