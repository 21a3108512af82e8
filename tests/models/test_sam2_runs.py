"""Everything a SAM run can do, a SAM 2.1 run does (issue 25): every adapter, every prompt strategy,
the embedding cache of all three feature levels, activation checkpointing, the attention setting,
resume and torchrun, end to end on the tiny random SAM 2.1 (`model=sam2_tiny`).

One run per adapter (two epochs of two steps on four synthetic images), trained once per module,
is read by the table of tests below and is what the cache, checkpointing, resume and torchrun
tests repeat differently; only the torchrun test (three more interpreters) is `slow`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from samexp import runner
from samexp.adapters.lora import LoraAdapter, LoraLinear
from samexp.config.errors import Interrupted, SamexpError
from samexp.data.base import collate
from samexp.data.folder import FolderDataset
from samexp.models.attention import choose_kernel
from samexp.models.build import BaseModel
from samexp.models.checkpointing import enable_checkpointing
from samexp.models.roles import roles
from samexp.models.sam2 import build_sam2_tiny
from samexp.models.seam import decode, encode
from samexp.prompts.box import BoxPrompt
from samexp.tracking import results
from samexp.tracking.finetuned import load_finetuned
from tests.conftest import compose_config, data_root, write_shapes_dataset
from tests.models.conftest import randomize_lora_b

TRAIN_IMAGES, TEST_IMAGES = 4, 2
# two epochs of two steps; the high learning rate moves every trained tensor visibly. No
# validation split: the last epoch is tested once
RUN = ("model=sam2_tiny", "trainer.device=cpu", "trainer.epochs=2", "trainer.batch_size=2",
       "trainer.val_fraction=0", "optim.lr=1e-2")  # fmt: skip
# each adapter's run, and what the tests that repeat it need: LoRA with dropout (the global RNG)
# and a cosine schedule, for the resume test to bring back; the decoder with fixed prompts (no box
# jitter), for the torchrun test to reproduce on two processes
ADAPTERS = {"lora": ("adapter.dropout=0.1", "scheduler=cosine"), "decoder": ("prompt.jitter=0",),
            "full": ()}  # fmt: skip
# which parameters each adapter trains, by name
TRAINS = {
    "lora": lambda name: ".lora_A." in name or ".lora_B." in name,
    "decoder": lambda name: name.startswith("sam_mask_decoder."),
    "full": lambda name: True,
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(
        tmp_path_factory.mktemp("shapes"), {"train": TRAIN_IMAGES, "test": TEST_IMAGES}
    )


def _config(home: Path, data: Path, *overrides: str):
    return compose_config([f"data_root={data_root()}", f"dataset.root={data}",
                           f"tracking.tracking_uri=sqlite:///{home}/mlruns/mlflow.db",
                           f"tracking.artifact_root={home}/mlruns/artifacts",
                           f"output_dir={home}/out", f"cache.dir={home}/cache", *RUN,
                           *overrides])  # fmt: skip


@dataclass
class Sam2Run:
    """One finished `run()` and the trained model it saved (caught on its way to disk)."""

    adapter: str
    home: Path
    metrics: dict[str, float]  # as MLflow logged them
    trained: BaseModel

    @property
    def weights(self) -> Path:
        return self.home / "out" / "adapter.safetensors"


def _train(home: Path, data: Path, adapter: str, *overrides: str) -> Sam2Run:
    saved: list[BaseModel] = []
    save_adapter = results.save_adapter

    def keep_model(path, base, adapter):
        saved.append(base)
        return save_adapter(path, base, adapter)

    cfg = _config(home, data, f"adapter={adapter}", *ADAPTERS[adapter], *overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(results, "save_adapter", keep_model)
        done = runner.run(cfg)
    logged = MlflowClient(cfg.tracking.tracking_uri).get_run(done.run_id).data.metrics
    return Sam2Run(adapter, home, logged, saved[0])


@pytest.fixture(scope="module")
def runs(shapes, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Sam2Run]:
    """The run of each adapter, trained when a test first asks for it (its cache in its folder)."""
    done: dict[str, Sam2Run] = {}

    def run(adapter: str) -> Sam2Run:
        if adapter not in done:
            home = tmp_path_factory.mktemp(adapter)
            done[adapter] = _train(home, shapes, adapter)
        return done[adapter]

    return run


@pytest.fixture(params=ADAPTERS)
def adapter_run(request, runs) -> Sam2Run:
    return runs(request.param)


def _test_batch(data: Path):
    pipeline = build_sam2_tiny().pipeline
    split = FolderDataset(str(data), "test", pipeline=pipeline)
    return collate([split[i] for i in range(len(split))])


@torch.no_grad()
def _low_res_logits(base: BaseModel, data: Path) -> torch.Tensor:
    sam, batch = base.sam.eval(), _test_batch(data)
    sizes = torch.tensor(batch.input_sizes)[batch.instance_image]
    prompts = BoxPrompt()(batch.masks, sizes, torch.Generator().manual_seed(0), train=False)
    features = encode(sam, batch.images, batch.input_sizes)
    return decode(sam, features, batch.instance_image, prompts)[0]


# --- adapters -------------------------------------------------------------------------------------


def test_a_sam2_run_logs_baseline_final_and_delta_test_figures(adapter_run):
    logged = adapter_run.metrics
    for name in ("iou", "dice"):
        baseline, final = logged[f"baseline/test/{name}"], logged[f"final/test/{name}"]
        assert 0.0 <= baseline <= 1.0 and 0.0 <= final <= 1.0
        assert logged[f"delta/test/{name}"] == pytest.approx(final - baseline, abs=1e-12)
    assert logged["train/steps"] == 4 and logged["data/test/loaded"] == TEST_IMAGES


def test_a_sam2_run_changes_only_its_adapters_parameters(adapter_run):
    trains = TRAINS[adapter_run.adapter]
    base = build_sam2_tiny(seed=0).sam.state_dict()
    trained = dict(adapter_run.trained.sam.named_parameters())
    assert {n for n, p in trained.items() if p.requires_grad} == {n for n in trained if trains(n)}
    changed = set()
    for name, p in trained.items():
        stock = name.replace(".qkv.base.", ".qkv.")  # LoRA wraps the stock Linear as `base`
        # a LoRA tensor has no stock twin: B, which starts at zero, shows it trained
        before = base.get(stock, torch.zeros_like(p) if ".lora_B." in name else p)
        if not torch.equal(p.detach(), before):
            changed.add(name)
    assert changed and all(trains(n) for n in changed), sorted(changed)[:5]
    # what trained is what the family calls the decoder side of the cache: conv_s0/s1 included
    if adapter_run.adapter != "lora":
        assert {"sam_mask_decoder.conv_s0.weight", "sam_mask_decoder.conv_s1.weight"} <= changed
    if adapter_run.adapter == "full":
        assert any(n.startswith("image_encoder.trunk.") for n in changed)
        assert "no_mem_embed" in changed


def test_saved_sam2_weights_reload_onto_a_fresh_base_with_identical_predictions(
    adapter_run, shapes
):
    reloaded, _, meta = load_finetuned(weights=str(adapter_run.weights))
    assert (meta["base"]["arch"], reloaded.weights_id) == ("sam2_tiny", "random:sam2_tiny:seed0")
    logits = _low_res_logits(reloaded, shapes)
    assert torch.equal(logits, _low_res_logits(adapter_run.trained, shapes))
    # the comparison has teeth: training moved the predictions away from the base model's
    assert not torch.allclose(logits, _low_res_logits(build_sam2_tiny(seed=0), shapes), atol=1e-4)


def test_lora_adapts_the_q_and_v_rows_of_every_hiera_qkv_by_default(runs):
    lora_run = runs("lora")
    sam = lora_run.trained.sam
    attention = roles(sam).attention
    assert len(attention) == 5  # Hiera stages [1, 1, 2, 1]
    expected = 0
    for a in attention:
        qkv = sam.get_submodule(f"{a.name}.qkv")
        assert isinstance(qkv, LoraLinear)
        third = qkv.base.out_features // 3  # [q | k | v]
        assert qkv.out_slices == [slice(0, third), slice(2 * third, 3 * third)]
        expected += 2 * 8 * (qkv.base.in_features + third)  # rank 8: A and B of q and of v
    assert lora_run.metrics["params/trainable"] == expected


# --- prompts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["points", "box_points", "mask", "iterative"])
def test_every_prompt_strategy_trains_and_evaluates_sam2(prompt, shapes, tmp_path):
    # (box, the default, is what the adapter runs above use)
    done = runner.run(_config(tmp_path, shapes, f"prompt={prompt}", "adapter=decoder",
                              "trainer.epochs=1", "tracking.enabled=false"))  # fmt: skip
    assert done.metrics["train/steps"] == 2
    assert 0.0 <= done.metrics["baseline/test/iou"] <= 1.0
    assert 0.0 <= done.metrics["final/test/iou"] <= 1.0
    assert done.metrics["final/test/iou"] != done.metrics["baseline/test/iou"]


def test_class_tokens_train_on_sam2_and_reload_with_their_classes(tmp_path):
    from tests.data.test_labelmap import write_labelmap
    from tests.prompts.test_class_tokens import CLASSES

    (tmp_path / "labels").mkdir()
    root = write_labelmap(tmp_path / "labels", {"train": {"i0": (1, 2, 3), "i1": (2,)},
                                                "test": {"t0": (1, 3)}})  # fmt: skip
    done = runner.run(_config(tmp_path, root, "dataset=labelmap", "dataset.name=blocks",
                              "prompt=class_tokens", "prompt.tokens_per_class=2",
                              "adapter=decoder", "trainer.epochs=1",
                              "tracking.enabled=false"))  # fmt: skip
    for stage in ("baseline", "final"):
        assert {f"{stage}/test/iou/{c}" for c in CLASSES} <= set(done.metrics)
    base, _, meta = load_finetuned(weights=str(tmp_path / "out" / "adapter.safetensors"))
    assert meta["class_prompts"] == {"classes": CLASSES, "tokens": 2}
    tokens = base.sam.class_prompts.tokens
    assert tokens.shape == (3, 2, 32)  # classes × tokens × the SAM 2 decoder's width


# --- embedding cache ------------------------------------------------------------------------------


def test_the_embedding_cache_holds_every_sam2_feature_level_and_is_hit_from_the_second_epoch(runs):
    decoder_run = runs("decoder")
    # every image is encoded once (train and test split); epoch 2 reads all the train ones
    assert decoder_run.metrics["cache/misses"] == TRAIN_IMAGES + TEST_IMAGES
    assert decoder_run.metrics["cache/hits"] == TRAIN_IMAGES
    files = sorted((decoder_run.home / "cache").rglob("*.pt"))
    assert len(files) == TRAIN_IMAGES + TEST_IMAGES
    entry = torch.load(files[0], weights_only=True)
    assert {k: tuple(v.shape) for k, v in entry.items()} == {
        "fpn0": (32, 64, 64), "fpn1": (32, 32, 32), "image_embed": (32, 16, 16)
    }  # fmt: skip


def test_a_cached_sam2_decoder_run_trains_as_one_without_the_cache(runs, shapes, tmp_path):
    """The cache holds the raw levels, and conv_s0/conv_s1 train from them as from the encoder's."""
    decoder_run, plain = runs("decoder"), _train(tmp_path, shapes, "decoder", "cache.enabled=false")
    assert "cache/misses" not in plain.metrics
    for key in ("final/test/iou", "final/test/dice", "train/loss"):
        assert decoder_run.metrics[key] == plain.metrics[key], key
    a, b = load_file(decoder_run.weights), load_file(plain.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = build_sam2_tiny(seed=0).sam.state_dict()
    for conv in ("sam_mask_decoder.conv_s0.weight", "sam_mask_decoder.conv_s1.weight"):
        assert (a[conv] - base[conv]).abs().max() > 1e-3, f"{conv} did not train"


# --- speed settings -------------------------------------------------------------------------------


def _lora_loss_and_grads(sam) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = torch.randint(0, 256, (1, 3, 256, 256), generator=torch.Generator().manual_seed(0))
    loss = sum(f.square().mean() for f in encode(sam, x.to(torch.uint8), [(256, 256)]).values())
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in sam.named_parameters() if p.requires_grad}


def test_checkpointing_hieras_blocks_gives_identical_loss_and_gradients():
    plain = build_sam2_tiny(seed=0).sam.train()
    LoraAdapter(rank=4).apply(plain)
    randomize_lora_b(plain)
    checkpointed = copy.deepcopy(plain)
    assert enable_checkpointing(checkpointed) == 5  # every MultiScaleBlock
    loss, grads = _lora_loss_and_grads(plain)
    ck_loss, ck_grads = _lora_loss_and_grads(checkpointed)
    torch.testing.assert_close(ck_loss, loss, atol=1e-6, rtol=0)
    assert grads.keys() == ck_grads.keys() and len(grads) == 20  # A and B of q and v, 5 blocks
    for name, g in grads.items():
        torch.testing.assert_close(ck_grads[name], g, atol=1e-6, rtol=0, msg=name)


def test_a_checkpointed_sam2_lora_run_ends_as_the_plain_one(runs, shapes, tmp_path):
    plain = runs("lora")
    checkpointed = _train(tmp_path, shapes, "lora", "trainer.checkpointing=true")
    for key in ("final/test/iou", "final/test/dice", "train/loss"):
        assert checkpointed.metrics[key] == pytest.approx(plain.metrics[key], abs=1e-6), key
    a, b = load_file(plain.weights), load_file(checkpointed.weights)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_attention_auto_keeps_hieras_own_and_a_named_kernel_is_refused_in_one_line(
    shapes, tmp_path
):
    # auto, the default every run above used, is Hiera's own attention (SDPA already), as is stock
    sam = build_sam2_tiny().sam
    for kernel in ("auto", "stock"):
        assert choose_kernel(sam, kernel, torch.device("cpu"), "trainer.attention") == "stock"
    with pytest.raises(SamexpError) as refused:
        runner.run(_config(tmp_path, shapes, "trainer.attention=blocked"))
    said = str(refused.value)
    assert said.startswith("trainer.attention=blocked: ") and "\n" not in said
    assert "ImageEncoder" in said and "trainer.attention=auto" in said


# --- resume and torchrun --------------------------------------------------------------------------


def test_an_interrupted_sam2_run_resumes_to_the_weights_and_figures_of_a_straight_one(
    runs, shapes, tmp_path, monkeypatch
):
    from tests.tracking.test_resume import _signal_after_steps

    straight = runs("lora")
    setting = ("adapter=lora", *ADAPTERS["lora"])
    _signal_after_steps(monkeypatch, 3)  # mid epoch 2
    with pytest.raises(Interrupted) as stopped:
        runner.run(_config(tmp_path, shapes, *setting))
    monkeypatch.undo()
    assert stopped.value.where == "epoch 2 step 3"
    run_id = stopped.value.resume_hint.rsplit("trainer.resume=", 1)[1]
    resumed = runner.run(_config(tmp_path, shapes, *setting, f"trainer.resume={run_id}"))
    assert resumed.run_id == run_id
    for key, value in resumed.metrics.items():
        assert straight.metrics[key] == value, key
    a, b = load_file(straight.weights), load_file(tmp_path / "out" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_sam2_processes_under_torchrun_train_what_one_process_would(runs, shapes, tmp_path):
    from tests.config.test_distributed import TOLERANCE, _only_run, _run

    one = runs("decoder")  # on one process, in batches of 2
    # _run's own settings are the decoder run's (adapter=decoder, prompt.jitter=0, 2 epochs, no
    # validation split); the rest of it is named here
    _run(tmp_path, "two", 2, "model=sam2_tiny", f"dataset.root={shapes}", "trainer.device=cpu",
         "optim.lr=1e-2", "trainer.batch_size=1")  # fmt: skip
    a, b = load_file(one.weights), load_file(tmp_path / "two" / "adapter.safetensors")
    assert a.keys() == b.keys() and "sam_mask_decoder.conv_s0.weight" in a
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE
    two = _only_run(tmp_path, "two")
    assert two.info.status == "FINISHED" and two.info.run_name.endswith("-sam2_tiny")
    for key in ("baseline/test/iou", "final/test/iou", "final/test/dice", "train/steps"):
        assert two.data.metrics[key] == pytest.approx(one.metrics[key], abs=1e-6), key
    # each rank encoded its share of the three-level features into the shared cache, once
    assert two.data.metrics["cache/misses"] == TRAIN_IMAGES + TEST_IMAGES
    assert len(list((tmp_path / "two-cache").glob("*/*.pt"))) == TRAIN_IMAGES + TEST_IMAGES
