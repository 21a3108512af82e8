"""A lower encoder input size (`model.encoder_size`): what changes, what stays equal, what is
refused, and that a run at that size trains, saves, reloads and exports at that size."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from samexp import runner
from samexp.adapters.io import load_adapter
from samexp.config.errors import CheckpointError, SamexpError
from samexp.data.base import collate
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.export import export
from samexp.export.pth import how_to_load
from samexp.models.build import BaseModel, build_official, build_tiny, tiny_sam
from samexp.models.cached_encoder import CachedEncoder
from samexp.models.embedding_cache import EmbeddingCache
from samexp.models.resolution import resize_encoder
from samexp.models.seam import Prompts, decode, encode, upscale
from samexp.prompts.box import BoxPrompt
from samexp.tracking import results
from samexp.tracking.finetuned import build_base, load_finetuned
from tests.conftest import compose_config, data_root

NATIVE, SMALL = (
    256,
    128,
)  # the tiny model's input size, and half of it (8×8 tokens instead of 16×16)
GLOBAL, WINDOWED = (
    1,
    0,
)  # the tiny encoder's blocks: block 1 attends globally, block 0 in 4×4 windows


def _images(size: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _with_random_rel_pos(sam: Sam) -> Sam:
    with torch.no_grad():  # SAM zero-inits the tables, which would make every table comparison pass
        for block in sam.image_encoder.blocks:
            block.attn.rel_pos_h.normal_(generator=torch.Generator().manual_seed(1))
            block.attn.rel_pos_w.normal_(generator=torch.Generator().manual_seed(2))
    return sam


# --- what resizing does to a model ------------------------------------------------------------


def test_the_native_size_leaves_the_model_bit_identical():
    before = build_tiny(seed=0)
    after = build_tiny(seed=0, encoder_size=NATIVE)
    assert after.img_size == NATIVE
    assert after.build_kwargs == before.build_kwargs  # nothing recorded: it is the default model
    state = after.sam.state_dict()
    for name, value in before.sam.state_dict().items():
        assert torch.equal(value, state[name]), name


@pytest.mark.parametrize(
    "size, says",
    [
        (120, "not a multiple of the 16 px patch size; the nearest valid values are 112 and 128"),
        (8, "the nearest valid value is 16$"),
        (0, "must be a multiple of 16 from 16 to this model's native 256 px"),
        (-16, "must be a multiple of 16 from 16"),
        (512, "native 256 px .*leave it unset"),
    ],
)
def test_an_invalid_size_is_refused_naming_the_key(size, says):
    with pytest.raises(SamexpError, match=f"^model.encoder_size={size} ") as e:
        build_tiny(seed=0, encoder_size=size)
    assert e.match(says)


def test_an_official_size_is_checked_before_any_checkpoint_is_looked_for():
    # were the checkpoint resolved first, download=False and an empty cache would fail differently
    with pytest.raises(
        SamexpError, match="encoder_size=500 .* nearest valid values are 496 and 512"
    ):
        build_official("vit_b", download=False, encoder_size=500)


def test_a_build_records_the_size_and_encodes_a_quarter_of_the_native_tokens():
    base = build_tiny(seed=0, encoder_size=SMALL)
    assert base.img_size == SMALL
    assert base.build_kwargs["encoder_size"] == SMALL and base.build_kwargs["img_size"] == NATIVE
    small = encode(base.sam, _images(SMALL), [(SMALL, SMALL)])["image_embed"]
    native = encode(build_tiny(seed=0).sam, _images(NATIVE), [(NATIVE, NATIVE)])["image_embed"]
    assert small.shape[-2:] == (SMALL // 16, SMALL // 16)  # 8×8 tokens
    assert native.shape[-2:].numel() == 4 * small.shape[-2:].numel()  # ~4x less encoder work


def test_a_resized_model_has_the_shapes_of_one_built_at_that_size():
    resized = build_tiny(seed=0, encoder_size=SMALL).sam
    built = build_tiny(seed=0, img_size=SMALL).sam
    assert {k: v.shape for k, v in resized.state_dict().items()} == {
        k: v.shape for k, v in built.state_dict().items()
    }
    for attr in ("input_image_size", "image_embedding_size", "mask_input_size"):
        assert getattr(resized.prompt_encoder, attr) == getattr(built.prompt_encoder, attr), attr


def test_a_resized_model_encodes_and_decodes_at_the_new_size_with_mask_prompts_of_that_size():
    sam = build_tiny(seed=0, encoder_size=SMALL).sam
    tokens = SMALL // 16
    embeddings = encode(sam, _images(SMALL, n=2), [(SMALL, SMALL), (SMALL, 96)])
    assert embeddings["image_embed"].shape == (2, 32, tokens, tokens)
    assert sam.prompt_encoder.get_dense_pe().shape == (1, 32, tokens, tokens)

    g = torch.Generator().manual_seed(0)
    prompts = Prompts(
        boxes=torch.tensor([[10.0, 10, 90, 100], [0, 0, 60, 40], [30, 20, 120, 90]]),
        mask_inputs=torch.randn(3, 1, 4 * tokens, 4 * tokens, generator=g),
    )
    low_res, iou = decode(sam, embeddings, torch.tensor([0, 1, 1]), prompts)
    assert low_res.shape == (3, 1, 4 * tokens, 4 * tokens) and iou.shape == (3, 1)
    assert upscale(sam, low_res).shape[-2:] == (SMALL, SMALL)
    assert torch.isfinite(low_res).all()


def test_rel_pos_tables_resized_once_give_what_get_rel_pos_interpolates_at_every_forward():
    native = _with_random_rel_pos(build_tiny(seed=0).sam)
    resized = resize_encoder(copy.deepcopy(native), SMALL)
    old, new = native.image_encoder.blocks, resized.image_encoder.blocks
    assert new[GLOBAL].attn.rel_pos_h.shape == (2 * (SMALL // 16) - 1, 16)
    assert torch.equal(new[WINDOWED].attn.rel_pos_h, old[WINDOWED].attn.rel_pos_h)

    # the same model with the global block's native-length tables, left to get_rel_pos
    on_the_fly = copy.deepcopy(resized)
    on_the_fly.image_encoder.blocks[GLOBAL].attn.rel_pos_h = old[GLOBAL].attn.rel_pos_h
    on_the_fly.image_encoder.blocks[GLOBAL].attn.rel_pos_w = old[GLOBAL].attn.rel_pos_w
    images, sizes = _images(SMALL, n=2), [(SMALL, SMALL), (SMALL, 80)]
    with torch.no_grad():
        assert torch.equal(encode(resized, images, sizes)["image_embed"],
                           encode(on_the_fly, images, sizes)["image_embed"])  # fmt: skip


def test_a_constant_position_grid_stays_constant_per_channel():
    sam = build_tiny(seed=0).sam
    with torch.no_grad():
        sam.image_encoder.pos_embed.copy_(torch.arange(32.0).expand(1, 16, 16, 32))
    resize_encoder(sam, SMALL)
    expected = torch.arange(32.0).expand(1, 8, 8, 32)
    torch.testing.assert_close(sam.image_encoder.pos_embed.data, expected)


def test_resized_parameters_train_or_stay_frozen_as_before():
    sam = build_tiny(seed=0).sam
    sam.image_encoder.pos_embed.requires_grad_(False)
    resize_encoder(sam, SMALL)
    assert not sam.image_encoder.pos_embed.requires_grad
    assert sam.image_encoder.blocks[GLOBAL].attn.rel_pos_h.requires_grad


def test_a_cached_embedding_is_not_reused_at_another_encoder_size():
    native, small = build_tiny(seed=0), build_tiny(seed=0, encoder_size=SMALL)
    assert native.weights_id == small.weights_id  # same weights: only the input tells them apart
    image = _images(NATIVE)
    smaller = F.interpolate(image.float(), size=(SMALL, SMALL), mode="area").round().byte()
    cache = EmbeddingCache(None)

    at_native = CachedEncoder(cache, native.weights_id)(native.sam, image, [(NATIVE, NATIVE)])
    at_small = CachedEncoder(cache, small.weights_id)(small.sam, smaller, [(SMALL, SMALL)])
    assert (cache.hits, cache.misses) == (0, 2)
    assert at_native["image_embed"].shape[-1] == NATIVE // 16
    assert at_small["image_embed"].shape[-1] == SMALL // 16

    again = CachedEncoder(cache, small.weights_id)(small.sam, smaller, [(SMALL, SMALL)])
    assert cache.hits == 1 and torch.equal(again["image_embed"], at_small["image_embed"])


# --- rebuilding from saved metadata ------------------------------------------------------------


def test_build_base_rebuilds_a_random_official_model_at_the_saved_encoder_size():
    kwargs = {"arch": "vit_b", "seed": 3, "encoder_size": 512}
    base = build_base({"base": {"arch": "vit_b", "weights_id": "random:vit_b:seed3",
                                "build_kwargs": kwargs}})  # fmt: skip
    assert (base.arch, base.img_size, base.weights_id) == ("vit_b", 512, "random:vit_b:seed3")


def test_build_base_fetches_a_pretrained_base_from_where_the_reader_says(monkeypatch):
    asked: list[dict] = []

    def offline(arch, **where):
        asked.append({"arch": arch, **where})
        raise CheckpointError("offline")

    monkeypatch.setattr("samexp.models.checkpoints.resolve_checkpoint", offline)
    meta = {"base": {"arch": "vit_b", "weights_id": "ab" * 32,
                     "build_kwargs": {"arch": "vit_b", "encoder_size": 512}}}  # fmt: skip
    with pytest.raises(CheckpointError, match="offline"):  # the reader's problem, said as such
        build_base(meta, checkpoint="/mine.pth", download=False)
    assert asked == [{"arch": "vit_b", "checkpoint": "/mine.pth", "cache_dir": None,
                      "mirror": None, "download": False}]  # fmt: skip


@pytest.mark.slow
def test_a_checkpoint_is_loaded_at_its_native_size_then_resized(tmp_path: Path):
    native = build_official("vit_b", pretrained=False, seed=3)
    path = tmp_path / "vit_b.pth"
    torch.save(native.sam.state_dict(), path)
    loaded = build_official("vit_b", checkpoint=str(path), encoder_size=512)
    meta = {"base": {"arch": "vit_b", "weights_id": loaded.weights_id,
                     "build_kwargs": loaded.build_kwargs}}  # fmt: skip
    rebuilt = build_base(meta, checkpoint=str(path))
    expected = resize_encoder(native.sam, 512).image_encoder.pos_embed
    for base in (loaded, rebuilt):
        assert base.img_size == 512 and base.weights_id == loaded.weights_id
        assert torch.equal(base.sam.image_encoder.pos_embed, expected)


# --- a run at a lower size, end to end ---------------------------------------------------------


@dataclass
class SmallRun:
    metrics: dict
    trained: BaseModel  # the model as the runner handed it to be saved
    weights: Path
    tmp: Path


@pytest.fixture(scope="module")
def small_run(rings_root, tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    tmp = tmp_path_factory.mktemp("encoder-size")
    cfg = compose_config([
        f"data_root={data_root()}", "model=tiny", f"model.encoder_size={SMALL}", "adapter=lora",
        "trainer.epochs=1", "trainer.max_steps=2", "trainer.val_fraction=0", "trainer.device=cpu",
        "optim.lr=1e-2", "tracking.enabled=false", f"output_dir={tmp}/out",
    ])  # fmt: skip
    saved: list[BaseModel] = []
    save_adapter = results.save_adapter

    def keep_model(path, base, adapter):
        saved.append(base)
        return save_adapter(path, base, adapter)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(results, "save_adapter", keep_model)
        metrics = runner.run(cfg).metrics
    return SmallRun(metrics, saved[0], tmp / "out" / "adapter.safetensors", tmp)


@torch.no_grad()
def _test_logits(sam: Sam) -> torch.Tensor:
    """Low-res logits on the rings test split, read at the model's own input size."""
    size = sam.image_encoder.img_size
    ds = FolderDataset(str(data_root() / "rings"), "test", pipeline=Pipeline(size))
    batch = collate([ds[i] for i in range(len(ds))])
    sizes = torch.tensor(batch.input_sizes)[batch.instance_image]
    prompts = BoxPrompt()(batch.masks, sizes, torch.Generator().manual_seed(0), train=False)
    embeddings = encode(sam.eval(), batch.images, batch.input_sizes)
    return decode(sam, embeddings, batch.instance_image, prompts)[0]


@pytest.mark.slow
def test_a_run_trains_at_the_encoder_size_and_its_adapter_remembers_it(small_run):
    assert small_run.trained.img_size == SMALL  # the data was resized to it: encode would fail else
    assert 0.0 <= small_run.metrics["final/test/iou"] <= 1.0
    description = json.loads(small_run.weights.with_suffix(".json").read_text())
    assert description["base"]["build_kwargs"]["encoder_size"] == SMALL
    assert description["base"]["img_size"] == SMALL


@pytest.mark.slow
def test_the_saved_adapter_reloads_at_its_encoder_size_and_predicts_as_trained(small_run):
    base, _, _ = load_finetuned(weights=str(small_run.weights))
    assert base.img_size == SMALL
    assert torch.equal(_test_logits(base.sam), _test_logits(small_run.trained.sam))


@pytest.mark.slow
def test_the_saved_adapter_is_refused_on_a_native_size_base(small_run):
    with pytest.raises(SamexpError, match=f"at {SMALL} px.*model.encoder_size={SMALL}"):
        load_adapter(small_run.weights, build_tiny(seed=0))


@pytest.mark.slow
def test_an_export_at_a_lower_size_warns_of_its_size_and_loads_only_at_that_size(small_run, caplog):
    with caplog.at_level(logging.WARNING, logger="samexp.export"):
        out = export(weights=str(small_run.weights), out=str(small_run.tmp / "sam.pth"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"model.encoder_size={SMALL}" in message for message in warnings)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["img_size"] == SMALL and info["build_kwargs"]["encoder_size"] == SMALL
    assert "resize_encoder(" in how_to_load(small_run.trained, out)

    state = torch.load(out, weights_only=True)
    constructor = {
        k: v for k, v in info["build_kwargs"].items() if k not in ("seed", "encoder_size")
    }
    with pytest.raises(RuntimeError, match="pos_embed"):
        tiny_sam(**constructor).load_state_dict(state)
    stock = resize_encoder(tiny_sam(**constructor), info["build_kwargs"]["encoder_size"])
    stock.load_state_dict(state)  # strict: every key, every shape
    torch.testing.assert_close(
        _test_logits(stock), _test_logits(small_run.trained.sam), atol=1e-5, rtol=0
    )
