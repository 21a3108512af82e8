"""Training learns: on synthetic ellipses the loss falls and test IoU climbs far above zero-shot;
decoder fine-tuning moves the mask decoder only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from monai.losses import DiceCELoss
from torch.utils.data import DataLoader

from samexp.adapters.base import trainable_parameters
from samexp.adapters.decoder import DecoderAdapter
from samexp.data.base import collate
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.models.build import build_tiny
from samexp.prompts.box import BoxPrompt
from samexp.runner import run
from samexp.training.losses import SamLoss
from tests.conftest import IMG_SIZE
from tests.training.fitting import fit_with


@pytest.mark.slow
def test_full_fine_tuning_on_shapes_lowers_loss_and_lifts_iou_far_above_zero_shot(
    make_config, shapes_root: Path
):
    # Measured (seeds 0-2): loss falls to 4-6% of epoch 1, IoU goes 0.04-0.09 -> 0.91-0.93.
    cfg = make_config(
        "model=tiny",
        "adapter=full",
        "dataset=rings",
        f"dataset.root={shapes_root}",
        "dataset.name=shapes",
        "optim.lr=1e-3",
        "trainer.epochs=30",
        "trainer.batch_size=4",
        "trainer.eval_every=10",
        "trainer.device=cpu",
    )
    done = run(cfg)

    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    loss = sorted((m.step, m.value) for m in client.get_metric_history(done.run_id, "train/loss"))
    assert [step for step, _ in loss] == list(range(1, 31))
    first, last = loss[0][1], loss[-1][1]
    assert last < 0.3 * first, f"train/loss {first:.3f} -> {last:.3f}"
    baseline, final = done.metrics["baseline/test/iou"], done.metrics["final/test/iou"]
    assert final > 0.75, f"final IoU {final:.3f}"
    assert final > baseline + 0.5, f"IoU {baseline:.3f} -> {final:.3f}"


def test_decoder_fine_tuning_changes_the_mask_decoder_and_leaves_both_encoders_bit_identical(
    shapes_root: Path,
):
    base = build_tiny(seed=0)
    adapter = DecoderAdapter()
    adapter.apply(base.sam)
    before = {k: v.clone() for k, v in base.sam.state_dict().items()}
    loader = DataLoader(
        FolderDataset(str(shapes_root), "train", pipeline=Pipeline(IMG_SIZE)),
        batch_size=4,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.AdamW(trainable_parameters(base.sam).values(), lr=1e-3)
    result = fit_with(
        base.sam,
        loader,
        BoxPrompt(),
        SamLoss(DiceCELoss(sigmoid=True)),
        optimizer,
        device=torch.device("cpu"),
        epochs=1,
    )

    assert result.steps == 2
    after = base.sam.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "no parameter changed: nothing trained"
    assert all(k.startswith("mask_decoder.") for k in changed), sorted(changed)
    assert any(k.startswith("mask_decoder.output_upscaling") for k in changed)
