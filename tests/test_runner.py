"""End to end: `run(cfg)` on the real rings data with the tiny SAM, read back through MLflow.

Each adapter runs once per module (a few optimizer steps) and the tests below read that run. The
LoRA run is the fast suite's one pipeline; every test that needs a run of its own is `slow`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from samexp import runner
from samexp.adapters.io import load_adapter
from samexp.data.base import Batch, collate
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.models.build import BaseModel, build_tiny
from samexp.models.seam import decode, encode
from samexp.prompts.box import BoxPrompt
from samexp.tracking import results
from samexp.training.evaluation import evaluate
from tests.conftest import IMG_SIZE, compose_config, data_root

# 8 train images in batches of 4: epoch 1 takes 2 steps, epoch 2 stops after its first (max_steps),
# so both the per-epoch logging and the mid-epoch stop are exercised. The high learning rate makes
# the trained weights differ clearly from the base, so "reloaded == trained" cannot pass by accident.
# No validation split (val_fraction=0): no epoch is evaluated, the last one is tested once.
STEPS = ("trainer.epochs=2", "trainer.max_steps=3", "trainer.batch_size=4", "optim.lr=1e-2",
         "trainer.val_fraction=0", "trainer.restore_best=false")  # fmt: skip
TRAINED_EPOCHS = [1, 2]
TEST_NAMES = ["ring_test_1", "ring_test_2"]


@dataclass
class Finished:
    """What one `run()` left behind, and the trained model it saved (caught on its way to disk)."""

    cfg: DictConfig
    metrics: dict
    client: MlflowClient
    run: Run
    trained: BaseModel
    out_dir: Path
    downloads: Path

    def history(self, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(self.run_id, key))

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def download(self, artifact_path: str) -> Path:
        return Path(self.client.download_artifacts(self.run_id, artifact_path, str(self.downloads)))


def _config(tmp: Path, *overrides: str) -> DictConfig:
    return compose_config(
        [
            f"data_root={data_root()}",
            f"tracking.tracking_uri=sqlite:///{tmp}/mlruns/mlflow.db",
            f"tracking.artifact_root={tmp}/mlruns/artifacts",
            f"output_dir={tmp}/out",
            "model=tiny",
            "trainer.device=cpu",
            *STEPS,
            *overrides,
        ]
    )


def _finish(tmp: Path, adapter: str) -> Finished:
    cfg = _config(tmp, f"adapter={adapter}")
    saved: list[BaseModel] = []
    save_adapter = results.save_adapter

    def keep_model(path, base, adapter):
        saved.append(base)  # the trained model, as the runner hands it to be saved
        return save_adapter(path, base, adapter)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(results, "save_adapter", keep_model)
        done = runner.run(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    (downloads := tmp / "downloads").mkdir()
    return Finished(
        cfg, done.metrics, client, client.get_run(done.run_id), saved[0], tmp / "out", downloads
    )


@pytest.fixture(scope="module")
def lora_run(rings_root, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    return _finish(tmp_path_factory.mktemp("lora"), "lora")


@pytest.fixture(scope="module")
def decoder_run(rings_root, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    return _finish(tmp_path_factory.mktemp("decoder"), "decoder")


def _test_batch() -> Batch:
    ds = FolderDataset(str(data_root() / "rings"), "test", pipeline=Pipeline(IMG_SIZE))
    return collate([ds[i] for i in range(len(ds))])


@torch.no_grad()
def _low_res_logits(base: BaseModel, batch: Batch) -> torch.Tensor:
    sam = base.sam.eval()
    sizes = torch.tensor(batch.input_sizes)[batch.instance_image]
    prompts = BoxPrompt()(batch.masks, sizes, torch.Generator().manual_seed(0), train=False)
    embeddings = encode(sam, batch.images, batch.input_sizes)
    return decode(sam, embeddings, batch.instance_image, prompts)[0]


def test_run_returns_and_logs_consistent_baseline_final_and_delta_test_metrics(lora_run):
    logged = lora_run.run.data.metrics
    for name in ("iou", "dice"):
        baseline, final = logged[f"baseline/test/{name}"], logged[f"final/test/{name}"]
        assert 0.0 <= baseline <= 1.0 and 0.0 <= final <= 1.0
        assert logged[f"delta/test/{name}"] == pytest.approx(final - baseline, abs=1e-12)
        for key in (f"baseline/test/{name}", f"final/test/{name}", f"delta/test/{name}"):
            assert lora_run.metrics[key] == pytest.approx(logged[key], abs=1e-12)
    # numbers only, what a sweeper reads: the run id travels beside them (it found this run)
    assert all(isinstance(v, (int, float)) for v in lora_run.metrics.values())


def test_run_without_a_validation_split_evaluates_no_epoch_and_logs_train_loss_per_epoch(lora_run):
    # the test split is evaluated twice (zero-shot and final) and chooses nothing
    assert lora_run.history("test/iou") == [] and lora_run.history("val/iou") == []
    assert "best/test/iou" not in lora_run.run.data.metrics
    loss = lora_run.history("train/loss")
    assert [step for step, _ in loss] == TRAINED_EPOCHS
    assert all(value > 0 for _, value in loss)
    assert [v for _, v in lora_run.history("train/skipped_nonfinite")] == [0, 0]


def test_run_logs_parameter_counts_of_the_adapter(lora_run):
    logged = lora_run.run.data.metrics
    tiny, adapter = lora_run.cfg.model, lora_run.cfg.adapter
    # A (d×r) and B (r×d) for each of q and v in every encoder block
    lora = tiny.depth * len(adapter.qkv_parts) * 2 * tiny.embed_dim * adapter.rank
    assert logged["params/trainable"] == lora
    assert (
        logged["params/total"] == sum(p.numel() for p in build_tiny(seed=0).sam.parameters()) + lora
    )


def test_run_params_hold_the_flattened_resolved_config(lora_run):
    params = lora_run.run.data.params
    assert params["adapter.rank"] == "8"
    assert params["model._target_"] == "samexp.models.build.build_tiny"
    assert params["trainer.max_steps"] == "3"
    assert params["loss.mask_loss._target_"] == "monai.losses.DiceCELoss"
    # interpolations are resolved before logging: the path, not "${data_root}/rings"
    assert params["dataset.root"] == f"{data_root()}/rings"
    assert params["seed"] == params["trainer.seed"] == params["model.seed"] == "0"  # not "${seed}"


def test_run_tags_record_git_commit_package_versions_and_overrides(lora_run):
    tags = lora_run.run.data.tags
    assert len(tags["git_commit"]) == 40
    assert tags["git_dirty"] in {"true", "false"}
    assert tags["version.torch"] == version("torch")
    assert "overrides" in tags  # empty here: overrides come from Hydra's CLI (see test_cli)


@pytest.mark.parametrize(
    ("finished", "name"),
    [
        ("lora_run", "lora-r8-rings-tiny"),
        pytest.param("decoder_run", "decoder-rings-tiny", marks=pytest.mark.slow),
    ],
)
def test_run_is_named_adapter_dataset_model(request, finished, name):
    assert request.getfixturevalue(finished).run.info.run_name == name


def test_run_logs_its_resolved_config_as_yaml(lora_run):
    logged = yaml.safe_load(lora_run.download("config.yaml").read_text())
    assert logged == OmegaConf.to_container(lora_run.cfg, resolve=True)


def test_run_logs_the_files_of_its_test_split(lora_run):
    listed = lora_run.download("data/test_files.txt").read_text().split()
    assert listed == [f"test/images/{name}.jpg" for name in sorted(TEST_NAMES)]


def test_run_logs_a_four_panel_comparison_png_per_test_image(lora_run):
    listed = [a.path for a in lora_run.client.list_artifacts(lora_run.run_id, "comparisons")]
    assert sorted(listed) == [f"comparisons/{name}.png" for name in TEST_NAMES]
    for path in listed:
        strip = cv2.imread(str(lora_run.download(path)))
        assert strip is not None, f"{path} is not a readable PNG"
        height, width = strip.shape[:2]
        # square test images: four panels side by side, each as wide as it is tall (below its title)
        assert width > 3 * height


def test_run_logs_per_image_metrics_that_average_to_the_summary(lora_run):
    rows = json.loads(lora_run.download("metrics/per_image.json").read_text())
    assert [r["name"] for r in rows] == TEST_NAMES
    logged = lora_run.run.data.metrics
    for key in ("baseline_iou", "final_iou", "baseline_dice", "final_dice"):
        stage, name = key.split("_")
        mean = sum(r[key] for r in rows) / len(rows)
        assert mean == pytest.approx(logged[f"{stage}/test/{name}"], abs=1e-9)


@pytest.mark.parametrize(
    "finished", ["lora_run", pytest.param("decoder_run", marks=pytest.mark.slow)]
)
def test_logged_adapter_weights_reload_onto_a_fresh_base_with_identical_predictions(
    request, finished
):
    done: Finished = request.getfixturevalue(finished)
    weights = done.download("weights/adapter.safetensors")
    description = json.loads(done.download("weights/adapter.json").read_text())
    assert description["base"]["weights_id"] == "random:tiny:seed0"

    reloaded = build_tiny(seed=0)
    load_adapter(weights, reloaded)
    batch = _test_batch()
    logits = _low_res_logits(reloaded, batch)
    assert torch.equal(logits, _low_res_logits(done.trained, batch))
    # the comparison has teeth: training moved the predictions away from the base model's
    assert not torch.allclose(logits, _low_res_logits(build_tiny(seed=0), batch), atol=1e-4)

    loader = DataLoader(
        FolderDataset(str(data_root() / "rings"), "test", pipeline=Pipeline(IMG_SIZE)),
        batch_size=done.cfg.trainer.batch_size,
        collate_fn=collate,
    )
    result = evaluate(reloaded.sam, loader, BoxPrompt(), torch.device("cpu"), seed=0)
    assert result.metrics("final/test")["final/test/iou"] == done.run.data.metrics["final/test/iou"]


@pytest.mark.slow
def test_run_without_tracking_returns_metrics_and_writes_weights_to_output_dir(
    rings_root, tmp_path
):
    cfg = _config(tmp_path, "adapter=decoder", "tracking.enabled=false")
    done = runner.run(cfg)
    assert done.run_id is None
    metrics = done.metrics
    assert 0.0 <= metrics["final/test/iou"] <= 1.0
    assert metrics["delta/test/iou"] == pytest.approx(
        metrics["final/test/iou"] - metrics["baseline/test/iou"]
    )
    assert (tmp_path / "out" / "adapter.safetensors").is_file()
    assert (tmp_path / "out" / "adapter.json").is_file()
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_carved_validation_split_drives_per_epoch_eval_and_the_best_epoch_is_what_gets_tested(
    make_config,
):
    cfg = make_config("model=tiny", "adapter=decoder", "trainer.epochs=3", "trainer.batch_size=3",
                      "trainer.val_fraction=0.25", "optim.lr=1e-2")  # fmt: skip
    done = runner.run(cfg)
    metrics = done.metrics
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    run = client.get_run(done.run_id)
    assert run.data.metrics["data/val/loaded"] == 2 and run.data.metrics["data/train/loaded"] == 6
    val = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val/iou"))
    assert [s for s, _ in val] == [1, 2, 3]
    assert not client.get_metric_history(run.info.run_id, "test/iou")  # test is only touched twice
    best_epoch, best = max(val, key=lambda sv: (sv[1], -sv[0]))
    assert metrics["best/epoch"] == best_epoch and metrics["best/val/iou"] == pytest.approx(best)


@pytest.mark.slow
def test_eval_prompt_can_differ_from_the_training_prompt(make_config):
    def baseline(*overrides: str) -> float:
        cfg = make_config("model=tiny", "adapter=decoder", "trainer.epochs=1", "trainer.max_steps=1",
                          "trainer.val_fraction=0", "tracking.enabled=false", *overrides)  # fmt: skip
        return runner.run(cfg).metrics["baseline/test/iou"]

    box = baseline()
    assert baseline("+prompt@eval_prompt=box") == box  # same strategy, same fixed prompts
    assert baseline("+prompt@eval_prompt=points", "eval_prompt.center=true") != box


@pytest.mark.slow
def test_fast_attention_and_checkpointing_change_speed_not_results(make_config):
    def final_iou(*overrides: str) -> float:
        cfg = make_config("model=tiny", "adapter=lora", "trainer.epochs=1", "trainer.max_steps=2", "optim.lr=1e-2",
                          "trainer.val_fraction=0", "tracking.enabled=false", *overrides)  # fmt: skip
        return runner.run(cfg).metrics["final/test/iou"]

    stock = final_iou("trainer.attention=stock")
    for kernel in ("sdpa", "blocked"):
        fast = final_iou(f"trainer.attention={kernel}", "trainer.checkpointing=true")
        assert fast == pytest.approx(stock, abs=1e-4)


@pytest.mark.slow
def test_embedding_cache_gives_the_same_run_and_is_hit_after_the_first_pass(make_config, tmp_path):
    def run(*overrides: str) -> runner.RunResult:
        cfg = make_config(
            "model=tiny", "adapter=decoder", "trainer.epochs=3", "optim.lr=1e-2", *overrides
        )
        return runner.run(cfg)

    plain, cached = run("cache.enabled=false"), run(f"cache.dir={tmp_path}/emb")
    for key in ("final/test/iou", "best/val/iou"):
        assert cached.metrics[key] == pytest.approx(plain.metrics[key], abs=1e-6)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    stats = client.get_run(cached.run_id).data.metrics
    # 10 images are encoded once (6 train + 2 val + 2 test); epochs 2 and 3 hit all 6 + 2
    assert stats["cache/misses"] == 10 and stats["cache/hits"] == 16
    assert len(list((tmp_path / "emb").rglob("*.pt"))) == 10


@pytest.mark.slow
def test_vit_t_lora_run_trains_a_random_mobilesam_end_to_end_and_its_weights_reload(
    make_config, tmp_path
):
    """MobileSAM with random weights is a realistic model a CPU runs whole: one LoRA step."""
    from samexp.tracking.finetuned import load_finetuned
    from tests.conftest import write_shapes_dataset

    data = write_shapes_dataset(tmp_path / "shapes", {"train": 1, "test": 1})
    cfg = make_config("model=vit_t", "model.pretrained=false", "adapter=lora", f"dataset.root={data}",
                      "trainer.epochs=1", "trainer.max_steps=1", "trainer.batch_size=1",
                      "trainer.val_fraction=0", "optim.lr=1e-2")  # fmt: skip
    done = runner.run(cfg)
    assert done.metrics["train/steps"] == 1
    assert 0.0 <= done.metrics["final/test/iou"] <= 1.0
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    run = client.get_run(done.run_id)
    assert run.info.run_name.startswith("lora-r8-") and run.info.run_name.endswith("-vit_t")
    lora = 2 * 16 * (2 * 128 + 6 * 160 + 2 * 320)  # q and v of TinyViT's 10 attention blocks
    assert run.data.metrics["params/trainable"] == lora
    assert run.data.metrics["params/total"] == 10_130_092 + lora

    base, adapter, meta = load_finetuned(weights=str(tmp_path / "out" / "adapter.safetensors"))
    assert (meta["base"]["arch"], base.weights_id) == ("vit_t", "random:vit_t:seed0")
    lora_b = [p for n, p in base.sam.named_parameters() if "lora_B" in n]
    assert len(lora_b) == 20 and all(p.abs().sum() > 0 for p in lora_b), "the step trained LoRA"
