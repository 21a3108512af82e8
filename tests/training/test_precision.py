"""Mixed precision: the model runs under autocast, losses stay fp32, impossible combinations are
refused at startup in the user's words."""

from __future__ import annotations

import pytest
import torch

from samexp.adapters.lora import LoraAdapter
from samexp.config.errors import SamexpError
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.models.attention import set_attention
from samexp.models.seam import encode
from samexp.training.evaluation import predict
from samexp.training.loop import training_loss
from samexp.training.precision import mixed_precision
from tests.training.test_loop import _fit

CPU = torch.device("cpu")


def test_fp16_on_cpu_is_refused_with_the_alternatives():
    with pytest.raises(SamexpError, match="fp16 needs a CUDA device.*bf16 or fp32"):
        mixed_precision("fp16", CPU)


def test_unknown_precision_names_the_key():
    with pytest.raises(SamexpError, match="trainer.precision='int8'"):
        mixed_precision("int8", CPU)


def test_only_fp16_scales_the_loss():
    assert not mixed_precision("fp32", CPU).scaler.is_enabled()
    assert not mixed_precision("bf16", CPU).scaler.is_enabled()


def test_bf16_runs_the_model_in_bf16_and_the_loss_in_fp32(tiny, shapes_root):
    from monai.losses import DiceLoss
    from torch.utils.data import DataLoader

    from samexp.data.base import collate
    from samexp.prompts.box import BoxPrompt
    from samexp.training.losses import SamLoss

    amp = mixed_precision("bf16", CPU)
    batch = next(iter(DataLoader(FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256)),
                                 batch_size=2, collate_fn=collate)))  # fmt: skip
    with amp.autocast():
        passes = predict(tiny.sam, batch, BoxPrompt(jitter=0), torch.Generator(), train=False)
    assert passes[0][0].dtype == torch.bfloat16
    loss, _ = training_loss(tiny.sam, SamLoss(DiceLoss(sigmoid=True)), passes, batch.masks)
    assert loss.dtype == torch.float32


@pytest.mark.slow
def test_bf16_training_of_the_encoder_with_blocked_attention_learns(shapes_root):
    from samexp.models.build import build_tiny

    base = build_tiny(seed=0)
    LoraAdapter(rank=4).apply(base.sam)
    set_attention(base.sam, "blocked")
    data = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    result = _fit(base.sam, data, batch_size=2, epochs=3, lr=0.05,
                  precision=mixed_precision("bf16", CPU))  # fmt: skip
    assert torch.isfinite(torch.tensor(result.last_loss))
    lora_b = [p for n, p in base.sam.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it moved


def test_blocked_attention_under_bf16_autocast_tracks_the_stock_module(tiny):
    images = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        stock = encode(tiny.sam, images, [(256, 256)])["image_embed"].float()
        set_attention(tiny.sam, "blocked")
        blocked = encode(tiny.sam, images, [(256, 256)])["image_embed"].float()
    assert (blocked - stock).abs().max() < 0.05 * stock.abs().max()


def test_a_run_asking_fp16_on_cpu_stops_before_a_model_is_built(make_config, monkeypatch):
    from samexp import runner

    monkeypatch.setattr(runner, "build", lambda node, **kw: pytest.fail(f"built {node._target_}"))
    with pytest.raises(SamexpError, match="trainer.precision=fp16"):
        runner.run(make_config("trainer.precision=fp16", "trainer.device=cpu"))


@pytest.mark.slow
def test_a_bf16_run_trains_and_keeps_its_cached_embeddings_apart_from_fp32(make_config, tmp_path):
    from samexp import runner

    def run(precision: str) -> dict[str, float]:
        cfg = make_config("model=tiny", "adapter=decoder", "trainer.epochs=1", "optim.lr=1e-2",
                          f"trainer.precision={precision}", f"cache.dir={tmp_path}/emb")  # fmt: skip
        return runner.run(cfg).metrics

    fp32, bf16 = run("fp32"), run("bf16")
    assert bf16["baseline/test/iou"] > 0  # zero-shot evaluation under autocast predicts masks
    for key in ("baseline/test/iou", "final/test/iou"):
        assert bf16[key] == pytest.approx(fp32[key], abs=0.01)
    # 10 images each: bf16 embeddings are not served to an fp32 run, nor the other way round
    assert len(list((tmp_path / "emb").rglob("*.pt"))) == 20
