"""Export: the fine-tuned model as a plain checkpoint that stock segment_anything loads and runs
exactly like the fine-tuned model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.config.errors import SamexpError
from samexp.export import export
from samexp.models.build import build_official, build_tiny, tiny_sam
from samexp.models.seam import Prompts, decode, encode
from samexp.tracking.finetuned import load_finetuned
from tests.conftest import REPO

BOXES = torch.tensor([[30.0, 40, 200, 220], [10, 10, 120, 90]])


@pytest.fixture(scope="module", params=["lora", "decoder"])
def trained(request, tmp_path_factory):
    """The session's tiny run of that adapter; the exports go to a folder of their own."""
    run = request.getfixturevalue(f"tiny_{request.param}_run")
    tmp = tmp_path_factory.mktemp(f"export-{request.param}")
    return {"run_id": run.run_id, "uri": run.tracking_uri, "tmp": tmp}


def _logits(sam) -> torch.Tensor:
    images = torch.randint(
        0, 256, (1, 3, 256, 256), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    with torch.no_grad():
        emb = encode(sam, images, [(256, 256)])
        return decode(sam, emb, torch.tensor([0, 0]), Prompts(boxes=BOXES))[0]


@pytest.mark.slow
def test_exported_checkpoint_loads_in_the_stock_builder_and_reproduces_the_fine_tuned_model(
    trained,
):
    out = export(
        run_id=trained["run_id"], tracking_uri=trained["uri"], out=str(trained["tmp"] / "sam.pth")
    )
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["arch"] == "tiny" and info["source"] == trained["run_id"]

    stock = tiny_sam(**{k: v for k, v in info["build_kwargs"].items() if k != "seed"})
    stock.load_state_dict(
        torch.load(out, weights_only=True)
    )  # strict: every key, no LoRA leftovers
    fine_tuned, _, _ = load_finetuned(run_id=trained["run_id"], tracking_uri=trained["uri"])
    assert torch.allclose(_logits(stock), _logits(fine_tuned.sam), atol=1e-5)
    base = build_tiny(**info["build_kwargs"]).sam
    assert not torch.allclose(_logits(stock), _logits(base), atol=1e-3), (
        "export must carry the training"
    )


@pytest.mark.slow
def test_stock_sam_predictor_runs_on_the_exported_model(trained, rings_root):
    from samexp.data.base import read_image_rgb

    out = export(
        run_id=trained["run_id"], tracking_uri=trained["uri"], out=str(trained["tmp"] / "p.pth")
    )
    info = json.loads(out.with_suffix(".json").read_text())
    sam = tiny_sam(**{k: v for k, v in info["build_kwargs"].items() if k != "seed"})
    sam.load_state_dict(torch.load(out, weights_only=True))
    predictor = SamPredictor(sam)
    image = read_image_rgb(rings_root / "test" / "images" / "ring_test_1.jpg")
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=BOXES[0].numpy(), multimask_output=False)
    assert masks.shape == (1, *image.shape[:2]) and scores.shape == (1,)


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
def test_lora_export_of_an_official_arch_loads_with_sam_model_registry(tmp_path):
    base = build_official("vit_b", pretrained=False)
    adapter = LoraAdapter(rank=4)
    adapter.apply(base.sam)
    with torch.no_grad():
        for name, p in base.sam.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.01)
    path = tmp_path / "vit_b.pth"
    torch.save(adapter.plain_state_dict(base.sam), path)
    stock = sam_model_registry["vit_b"](checkpoint=str(path))  # strict load inside segment_anything
    qkv = base.sam.image_encoder.blocks[0].attn.qkv
    expected = qkv.base.weight + torch.nn.functional.pad(qkv.delta_weight(0), (0, 0, 0, 2 * 768))
    assert torch.allclose(
        stock.image_encoder.blocks[0].attn.qkv.weight[:768], expected[:768], atol=1e-6
    )
    assert not qkv.merged  # exporting leaves the live model as it was


def test_export_needs_exactly_one_source(tmp_path):
    with pytest.raises(SamexpError, match="exactly one"):
        export(out=str(tmp_path / "x.pth"))
    with pytest.raises(SamexpError, match="no such file"):
        export(weights=str(tmp_path / "missing.safetensors"), out=str(tmp_path / "x.pth"))


def test_unknown_run_id_is_a_clear_error(tmp_path):
    with pytest.raises(SamexpError, match="not a run"):
        export(
            run_id="0" * 32, tracking_uri=f"sqlite:///{tmp_path}/m.db", out=str(tmp_path / "x.pth")
        )


@pytest.mark.slow
def test_vit_t_lora_export_loads_in_stock_mobile_sam_and_gives_the_same_masks(
    vit_t, vit_t_lora_file, tmp_path
):
    import mobile_sam

    from samexp.data.base import read_image_rgb
    from samexp.export.pth import how_to_load
    from tests.conftest import data_root

    weights = vit_t_lora_file
    out = export(weights=str(weights), out=str(tmp_path / "mobile_sam_rings.pt"))
    assert json.loads(out.with_suffix(".json").read_text())["arch"] == "vit_t"
    assert how_to_load(vit_t, out) == (
        f"mobile_sam.sam_model_registry['vit_t'](checkpoint={str(out)!r}).eval()"
    )

    # the documented line: a strict load inside mobile_sam, so no LoRA tensor is left over
    stock = mobile_sam.sam_model_registry["vit_t"](checkpoint=str(out)).eval()
    qkv = vit_t.sam.image_encoder.layers[2].blocks[0].attn.qkv
    merged = qkv.base.weight.clone().index_add_(0, qkv.out_index, torch.cat(
        [qkv.delta_weight(i) for i in range(len(qkv.lora_B))]))  # fmt: skip
    assert torch.allclose(
        stock.image_encoder.layers[2].blocks[0].attn.qkv.weight, merged, atol=1e-6
    )

    fine_tuned, _, _ = load_finetuned(weights=str(weights))  # samexp's model: LoRA unmerged
    image = read_image_rgb(data_root() / "rings" / "test" / "images" / "ring_test_2.jpg")
    box = np.array([60.0, 300.0, 700.0, 650.0])
    results = []
    for predictor in (mobile_sam.SamPredictor(stock), SamPredictor(fine_tuned.sam)):
        predictor.set_image(image)
        results.append(predictor.predict(box=box, multimask_output=False, return_logits=True))
    (stock_logits, stock_iou, _), (logits, iou, _) = results  # at the image's size
    assert np.allclose(stock_logits, logits, atol=1e-4) and np.allclose(stock_iou, iou, atol=1e-5)
    masks, differ = logits > 0, (stock_logits > 0) != (logits > 0)
    assert masks.any() and not masks.all()
    # merged and unmerged LoRA round differently: a pixel may flip only right at the threshold
    assert np.all(np.abs(logits[differ]) < 1e-4)


def export_guide_snippet() -> str:
    """The loading snippet of docs/tasks/predict-export.md: the first Python block under its
    export heading, as a reader copies it."""
    page = (REPO / "docs" / "tasks" / "predict-export.md").read_text()
    section = page[page.index("## Export into stock") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_export_guides_loading_snippet_loads_a_tiny_export(tiny, tmp_path, monkeypatch):
    # the tiny model is the only one an offline newcomer has: the guide's snippet must load it
    adapter = DecoderAdapter()
    adapter.apply(tiny.sam)
    with torch.no_grad():
        for p in tiny.sam.mask_decoder.parameters():
            p.add_(0.01)  # as if trained: the export must carry it
    weights = save_adapter(tmp_path / "adapter.safetensors", tiny, adapter)
    monkeypatch.chdir(tmp_path)
    out = export(weights=str(weights), out="ring_sam_vit_b.pth")  # the guide's file names
    namespace: dict = {}
    exec(export_guide_snippet(), namespace)  # noqa: S102  (our own docs, the point of the test)
    loaded, exported = namespace["sam"].state_dict(), torch.load(out, weights_only=True)
    assert loaded.keys() == exported.keys()
    assert all(torch.equal(loaded[k], exported[k]) for k in exported)
    assert namespace["predictor"].model is namespace["sam"]
