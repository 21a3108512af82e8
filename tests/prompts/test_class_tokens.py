"""Promptless per-class segmentation (prompt=class_tokens): learned tokens per class, trained with
the adapter, saved with the class list, restored by predict and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from samexp.adapters.base import trainable_parameters
from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import load_adapter, save_adapter
from samexp.data.base import Sample
from samexp.export import export
from samexp.export.pth import class_prompts_file
from samexp.models.build import build_tiny, tiny_sam
from samexp.models.seam import Prompts, decode
from samexp.predict.config import PredictConfig, PredictMode
from samexp.predict.run import predict
from samexp.prompts.class_tokens import ClassTokenPrompt, EveryClass, attach_class_prompts
from samexp.training.evaluation import EvalResult
from tests.data.test_labelmap import write_labelmap

CLASSES = ["cat", "dog", "bird"]  # tests/data/test_labelmap.py's classes 1, 2, 3
TRAIN = {f"i{k}": c for k, c in enumerate([(1, 2, 3), (1,), (2, 3), (1, 3), (2,), (3,), (1, 2), (2, 3)])}  # fmt: skip
TEST = {"t1": (1, 2, 3), "t2": (2,), "t3": (1,)}


def test_learned_tokens_alone_prompt_the_decoder_and_train():
    sam = build_tiny(seed=0).sam
    module = attach_class_prompts(sam, CLASSES, tokens=2)
    embeddings = {"image_embed": torch.randn(1, 32, 16, 16)}
    owner = torch.zeros(3, dtype=torch.long)
    low_res, iou = decode(sam, embeddings, owner, Prompts(sparse=module.tokens))
    assert low_res.shape == (3, 1, 64, 64) and iou.shape == (3, 1)
    low_res.sum().backward()
    assert module.tokens.grad is not None and module.tokens.grad.abs().sum() > 0
    # each class answers with its own mask
    assert not torch.allclose(low_res[0], low_res[1])


def test_the_same_seed_draws_the_same_class_prompts():
    def drawn(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return attach_class_prompts(build_tiny(seed=0).sam, CLASSES, tokens=4).tokens.detach()

    assert torch.equal(drawn(3), drawn(3)) and not torch.equal(drawn(3), drawn(4))


class _Two:
    """Two images: one holds a cat and two dogs (COCO-like instances), the other only a bird."""

    names = ["a", "b"]
    transform = None

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> Sample:
        masks = torch.zeros(3, 8, 8, dtype=torch.bool)
        masks[0, :2], masks[1, 4:5], masks[2, 6:] = True, True, True
        categories = ["cat", "dog", "dog"] if i == 0 else ["bird"]
        k = len(categories)
        return Sample(self.names[i], "", torch.zeros(3, 8, 8, dtype=torch.uint8), masks[:k],
                      masks[:k], (8, 8), (8, 8), categories)  # fmt: skip


def test_every_image_is_a_target_for_every_class_empty_where_absent():
    every = EveryClass(_Two(), CLASSES)
    first, second = every[0], every[1]
    assert first.categories == second.categories == CLASSES
    assert first.masks[0].sum() == 16 and first.masks[1].sum() == 8 + 16  # dog: both instances
    assert not first.masks[2].any()  # no bird: an empty target, learned as "nothing here"
    assert (
        not second.masks[0].any() and not second.masks[1].any() and second.masks[0].shape == (8, 8)
    )
    assert torch.equal(second.masks[2], _Two()[1].masks[0])


def test_class_metrics_count_what_is_painted_where_a_class_is_absent():
    rows = [  # image a: cat right, dog painted where there is none; image b: dog half right
        {"category": "cat", "iou": 1.0, "dice": 1.0, "inter": 10, "union": 10, "pred_px": 10, "true_px": 10},
        {"category": "dog", "iou": 0.0, "dice": 0.0, "inter": 0, "union": 30, "pred_px": 30, "true_px": 0},
        {"category": "cat", "iou": 1.0, "dice": 1.0, "inter": 0, "union": 0, "pred_px": 0, "true_px": 0},
        {"category": "dog", "iou": 0.5, "dice": 0.67, "inter": 10, "union": 20, "pred_px": 15, "true_px": 15},
    ]  # fmt: skip
    m = EvalResult(rows, by_class=True).metrics("test")
    assert m["test/iou/cat"] == 1.0
    assert m["test/iou/dog"] == pytest.approx(10 / 50)  # the false 30 px count against dog
    assert m["test/dice/dog"] == pytest.approx(20 / 60)
    assert m["test/miou"] == m["test/iou"] == pytest.approx((1.0 + 0.2) / 2)


def test_a_file_with_class_prompts_reloads_them_with_their_classes(tmp_path: Path):
    base = build_tiny(seed=0)
    DecoderAdapter().apply(base.sam)
    torch.manual_seed(0)
    tokens = attach_class_prompts(base.sam, CLASSES, tokens=3).tokens.detach().clone()
    path = save_adapter(tmp_path / "adapter.safetensors", base, DecoderAdapter())
    again = build_tiny(seed=0)
    load_adapter(path, again)
    assert again.sam.class_prompts.classes == CLASSES
    assert torch.equal(again.sam.class_prompts.tokens.detach(), tokens)
    assert "class_prompts.tokens" in trainable_parameters(again.sam)


def _promptless_run(tmp_path: Path, make_config):
    from samexp.runner import run

    (tmp_path / "shapes").mkdir()
    root = write_labelmap(tmp_path / "shapes", {"train": TRAIN, "test": TEST})
    # 128 px and a high learning rate: the coloured blocks are learned in a few seconds of CPU
    cfg = make_config("model=tiny", "model.img_size=128", "dataset=labelmap",
                      f"dataset.root={root}", "dataset.name=shapes", "prompt=class_tokens",
                      "prompt.tokens_per_class=2", "adapter=decoder", "loss=dice_focal",
                      "trainer.epochs=16", "trainer.batch_size=2", "trainer.val_fraction=0",
                      "optim.lr=8e-3")  # fmt: skip
    return run(cfg), root


@pytest.mark.slow
def test_a_promptless_run_learns_every_class_and_predicts_and_exports_with_no_prompt(
    tmp_path: Path, make_config
):
    result, root = _promptless_run(tmp_path, make_config)
    m = result.metrics
    for prefix in ("baseline/test", "final/test"):
        assert {f"{prefix}/iou/{c}" for c in CLASSES} <= set(m) and f"{prefix}/miou" in m
    assert m["final/test/miou"] > m["baseline/test/miou"] + 0.2, m
    weights = tmp_path / "out" / "adapter.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        meta = json.loads(f.metadata()["samexp"])
    assert meta["class_prompts"] == {"classes": CLASSES, "tokens": 2}

    out = tmp_path / "predicted"
    index = predict(PredictConfig(weights=str(weights), images=str(root / "test" / "images"),
                                  out=str(out), mode=PredictMode.classes, device="cpu"))  # fmt: skip
    assert len(index["images"]) == 3
    assert (out / "classes.txt").read_text().splitlines() == [
        "0 _background_",
        "1 cat",
        "2 dog",
        "3 bird",
    ]
    ids = np.asarray(Image.open(out / "t1_classes.png"))
    truth = np.asarray(Image.open(root / "test" / "labels" / "t1.png"))
    assert ids.shape == truth.shape
    for class_id in (1, 2, 3):  # the predicted ids are the label map's: each block's commonest
        found, count = np.unique(ids[truth == class_id], return_counts=True)
        assert found[count.argmax()] == class_id, (class_id, found, count)
    overlay = np.asarray(Image.open(out / "t1_overlay.png"))
    assert overlay.shape[1] > truth.shape[1]  # the legend beside the image
    described = json.loads((out / "t1.json").read_text())
    assert {c["name"] for c in described["classes"]} <= set(CLASSES)

    exported = export(weights=str(weights), out=str(tmp_path / "sam.pth"))
    stock = tiny_sam(**{k: v for k, v in meta["base"]["build_kwargs"].items() if k != "seed"})
    stock.load_state_dict(torch.load(exported, weights_only=True))  # strict: no extra keys
    side = load_file(class_prompts_file(exported))
    assert side["tokens"].shape == (3, 2, 32)  # classes × tokens × decoder width
    assert torch.equal(side["tokens"], load_file(weights)["class_prompts.tokens"])


def test_class_tokens_refuse_a_dataset_that_declares_no_classes(make_config):
    from samexp.config.errors import SamexpError
    from samexp.runner import run

    with pytest.raises(SamexpError, match="declares its classes"):
        run(make_config("model=tiny", "prompt=class_tokens", "trainer.epochs=1"))


def test_predicting_by_class_with_weights_that_learned_no_classes_says_so():
    from samexp.config.errors import SamexpError

    with pytest.raises(SamexpError, match="trained with it"):
        ClassTokenPrompt().bind(build_tiny(seed=0).sam)


def test_a_promptless_prompt_with_a_prompted_eval_prompt_is_refused_before_a_model_is_built(
    make_config,
):
    from samexp.config.errors import SamexpError
    from samexp.runner import run

    # vit_b with no checkpoint offline: reaching the model build would fail otherwise
    cfg = make_config("model=vit_b", "prompt=class_tokens", "+prompt@eval_prompt=box")
    with pytest.raises(SamexpError, match="must both be promptless"):
        run(cfg)
