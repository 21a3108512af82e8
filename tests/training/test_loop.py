"""The training loop's contracts: accumulation, clipping, early stopping with the best weights,
multimask min-loss, refinement passes, and one encoder pass per image however many instances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss
from torch.utils.data import DataLoader

from samexp.adapters.base import trainable_parameters
from samexp.adapters.decoder import DecoderAdapter
from samexp.data.base import collate, make_sample
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.data.splits import DatasetSplits
from samexp.models.build import build_tiny
from samexp.prompts.box import BoxPrompt
from samexp.training.evaluation import evaluate
from samexp.training.loop import training_loss
from samexp.training.losses import SamLoss
from samexp.training.monitor import Monitor
from samexp.training.reporting import Heartbeat
from tests.training.fitting import fit_with


def _decoder_model():
    base = build_tiny(seed=0)
    DecoderAdapter().apply(base.sam)
    return base.sam


def _fit(sam, dataset, batch_size, **kwargs):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    optimizer = torch.optim.SGD(list(trainable_parameters(sam).values()), lr=kwargs.pop("lr", 0.1))
    return fit_with(sam, loader, BoxPrompt(jitter=0), SamLoss(DiceLoss(sigmoid=True)), optimizer,
                    **kwargs)  # fmt: skip


def test_gradient_accumulation_matches_one_larger_batch(shapes_root):
    data = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    big, accumulated = _decoder_model(), _decoder_model()
    _fit(big, data, batch_size=2, epochs=1, max_steps=1)
    _fit(accumulated, data, batch_size=1, epochs=1, max_steps=1, grad_accum_steps=2)
    for (name, a), b in zip(
        trainable_parameters(big).items(), trainable_parameters(accumulated).values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_gradient_clipping_bounds_the_update(shapes_root):
    data = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    sam = _decoder_model()
    before = torch.cat([p.detach().flatten().clone() for p in trainable_parameters(sam).values()])
    _fit(sam, data, batch_size=2, epochs=1, max_steps=1, grad_clip=1e-3, lr=1.0)
    after = torch.cat([p.detach().flatten() for p in trainable_parameters(sam).values()])
    assert 0 < torch.linalg.vector_norm(after - before) <= 1e-3 + 1e-6


def test_early_stopping_waits_patience_evaluations_and_restores_the_best_epoch(shapes_root):
    data = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    sam = _decoder_model()
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.6, 0.9])
    snapshots = {}

    def evaluate_fn(epoch):
        snapshots[epoch] = {n: p.detach().clone() for n, p in trainable_parameters(sam).items()}
        return {"val/iou": next(scores)}

    monitor = Monitor("val/iou", "max", patience=3)
    result = _fit(sam, data, batch_size=4, epochs=10, monitor=monitor, evaluate_fn=evaluate_fn)
    assert result.stopped_early and result.epochs == 5  # 0.6, 0.65, 0.6 after the best 0.7
    assert (monitor.best_epoch, monitor.best) == (2, 0.7)
    monitor.restore(sam)
    for name, value in trainable_parameters(sam).items():
        assert torch.equal(value, snapshots[2][name])
    assert not all(torch.equal(snapshots[2][n], snapshots[5][n]) for n in snapshots[2])


def test_the_heartbeat_is_called_after_every_optimizer_step_not_once_an_epoch(shapes_root):
    data = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    beats = []
    _fit(_decoder_model(), data, batch_size=2, epochs=1, max_steps=3,
         parts=[Heartbeat(lambda: beats.append(1))])  # fmt: skip
    assert len(beats) == 3 + 1  # three steps, then the epoch's end


def test_min_mode_monitor_prefers_lower_values():
    monitor = Monitor("val/loss", "min")
    sam = _decoder_model()
    monitor.update(0.5, 1, sam)
    monitor.update(0.3, 2, sam)
    monitor.update(0.4, 3, sam)
    assert monitor.best_epoch == 2 and monitor.stale == 1


def test_multimask_loss_backpropagates_only_the_lowest_loss_candidate():
    target = torch.zeros(2, 8, 8, dtype=torch.bool)
    target[:, :4] = True
    good = torch.where(target, 20.0, -20.0)
    logits = torch.stack([-good, good, torch.zeros_like(good)], dim=1)  # candidate 1 is perfect
    logits[1] = torch.stack(
        [torch.zeros_like(good[1]), -good[1], good[1]]
    )  # instance 1: candidate 2
    logits.requires_grad_(True)
    loss_fn = SamLoss(DiceLoss(sigmoid=True))
    total, parts = loss_fn.min_over_candidates(logits, target, torch.zeros(2, 3))
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    total.backward()
    assert logits.grad[0, [0, 2]].abs().sum() == 0 and logits.grad[1, [0, 1]].abs().sum() == 0


def test_loss_is_averaged_over_refinement_passes(tiny):
    masks = torch.zeros(1, 256, 256, dtype=torch.bool)
    masks[0, 64:128, 64:128] = True
    loss_fn = SamLoss(DiceLoss(sigmoid=True))
    a, b = torch.full((1, 1, 64, 64), 3.0), torch.full((1, 1, 64, 64), -3.0)
    iou = torch.zeros(1, 1)
    both, _ = training_loss(tiny.sam, loss_fn, [(a, iou), (b, iou)], masks)
    first, _ = training_loss(tiny.sam, loss_fn, [(a, iou)], masks)
    second, _ = training_loss(tiny.sam, loss_fn, [(b, iou)], masks)
    assert both.item() == pytest.approx((first.item() + second.item()) / 2)


class _ManyInstances(torch.utils.data.Dataset):
    """Images with 3 instances each, to count encoder passes."""

    def __init__(self, n: int):
        self.n = n
        self.names = [f"im{i}" for i in range(n)]
        self.transform = None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        masks = np.zeros((3, 64, 96), bool)
        masks[0, 5:20, 5:30], masks[1, 30:60, 10:40], masks[2, 10:50, 60:90] = True, True, True
        return make_sample(self.names[i], f"{i}.png", image, masks, Pipeline(256))


def test_many_instances_cost_one_encoder_pass_per_image_in_training_and_evaluation(tiny):
    calls = []
    tiny.sam.image_encoder.register_forward_hook(
        lambda module, inputs, output: calls.append(output.shape[0])
    )
    DecoderAdapter().apply(tiny.sam)
    data = _ManyInstances(4)
    _fit(tiny.sam, data, batch_size=2, epochs=1)
    assert calls == [2, 2]  # two batches of two images, 12 instances decoded
    calls.clear()
    loader = DataLoader(data, batch_size=4, collate_fn=collate)
    result = evaluate(tiny.sam, loader, BoxPrompt(), torch.device("cpu"))
    assert calls == [4] and len(result.rows) == 12


def test_validation_is_carved_from_train_seeded_disjoint_and_never_augmented(shapes_root):
    train = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    test = FolderDataset(str(shapes_root), "test", pipeline=Pipeline(256))
    splits = DatasetSplits("shapes", train, test).carve_val(0.25, seed=3)
    again = DatasetSplits("shapes", train, test).carve_val(0.25, seed=3)
    other = DatasetSplits("shapes", train, test).carve_val(0.25, seed=4)
    assert len(splits.val) == 2 and len(splits.train) == 6
    assert not set(splits.val.names) & set(splits.train.names)
    assert splits.val.names == again.val.names and splits.val.names != other.val.names
    splits.train.transform = lambda image, masks: (image, masks)
    assert splits.val.transform is None and train.transform is None
    assert splits.test is test


def test_a_dataset_with_its_own_val_split_is_not_carved(shapes_root):
    train = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    own = FolderDataset(str(shapes_root), "test", pipeline=Pipeline(256))
    splits = DatasetSplits("shapes", train, own, val=own)
    assert splits.carve_val(0.5, seed=0) is splits
