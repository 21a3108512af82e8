"""ONNX export: SAM's two graphs (image encoder; prompt-to-mask decoder) of a fine-tuned model of
every family, checked against PyTorch with onnxruntime in the same command, written whole or not
at all, and refused in one line naming the operator when ONNX cannot express it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from samexp.adapters.adaptformer import AdaptFormerAdapter
from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.config.errors import SamexpError, UntrustedFileError
from samexp.export import export
from samexp.export.onnx import export_graphs
from samexp.models.build import BaseModel, build_tiny
from samexp.models.onnx.manifest import MANIFEST_FILE, OPSET, read_manifest
from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.onnx_predictor import OnnxPredictor
from samexp.predict.predictor import Predictor
from samexp.tracking.finetuned import load_finetuned

RING = "test/images/ring_test_1.jpg"


def _trained_file(base: BaseModel, adapter, folder: Path) -> Path:
    """`adapter` on `base`, its parameters drawn as if trained (so the export differs from SAM)."""
    adapter.apply(base.sam)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in base.sam.parameters():
            if p.requires_grad:
                p.normal_(std=0.05, generator=g)
    return save_adapter(folder / "adapter.safetensors", base, adapter)


def _families() -> dict[str, object]:
    from samexp.models.sam2 import build_sam2_tiny

    return {"tiny": build_tiny, "sam2_tiny": build_sam2_tiny}


@pytest.mark.parametrize("family", ["tiny", "sam2_tiny"])
def test_onnx_export_of_a_run_reproduces_pytorch_on_its_own_test_photo(
    family, tiny_lora_run, tiny_sam2_run, rings_root, tmp_path
):
    run = tiny_lora_run if family == "tiny" else tiny_sam2_run
    out = export(run_id=run.run_id, tracking_uri=run.tracking_uri, format="onnx",
                 out=str(tmp_path / "onnx"))  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.onnx", "encoder.onnx", "parity.json", MANIFEST_FILE]  # fmt: skip
    manifest = read_manifest(out)
    parity = json.loads((out / "parity.json").read_text())
    # the run's own test image, found where the run read it, with every decoder input exercised
    assert parity["image"] == str(rings_root / RING)
    assert set(parity["cases"]) == {"box", "points", "box+points", "points, multimask",
                                    "box + mask input"}  # fmt: skip
    assert parity["passed"] and manifest["parity"]["passed"]
    assert parity["max_logits"] < 1e-4 and parity["max_iou"] < 1e-4
    assert parity["graph_masks"] < 1e-4  # the decoder graph's own full-size masks, too
    assert manifest["opset"] == OPSET and manifest["source"] == run.run_id
    assert manifest["input"]["stretch"] is (family == "sam2_tiny")
    assert manifest["encoder"]["outputs"] == (
        ["fpn0", "fpn1", "image_embed"] if family == "sam2_tiny" else ["image_embed"])  # fmt: skip


@pytest.mark.parametrize("family", ["tiny", "sam2_tiny"])
def test_onnx_predictor_answers_as_the_pytorch_predictor_for_many_prompts_and_another_size(
    family, tmp_path
):
    """The graphs are traced once at one size; prompts (B boxes × N clicks) and images vary."""
    base = _families()[family]()
    weights = _trained_file(base, LoraAdapter(rank=4), tmp_path)
    out = export(weights=str(weights), format="onnx", out=str(tmp_path / "onnx"))
    sam = load_finetuned(weights=str(weights))[0].sam
    reference, runtime = Predictor(sam.eval()), OnnxPredictor(OnnxModel(out))
    image = np.random.default_rng(1).integers(0, 256, (173, 419, 3), dtype=np.uint8)
    for predictor in (reference, runtime):
        predictor.set_image(image)
    boxes = reference.frame.boxes(torch.tensor([[10.0, 20, 200, 150], [150, 5, 400, 170],
                                                [0, 0, 418, 172]]))  # fmt: skip
    clicks = reference.frame.points(torch.tensor([[[100.0, 80], [300, 90], [5, 160]]] * 3))
    labels = torch.tensor([[1, 0, 1]] * 3)
    for args in ((clicks, labels, boxes), (None, None, boxes), (clicks[:1], labels[:1], None)):
        for multimask in (False, True):
            want = reference.predict_torch(*args, multimask_output=multimask, return_logits=True)
            got = runtime.predict_torch(*args, multimask_output=multimask, return_logits=True)
            assert got[0].shape == want[0].shape == (len(args[2] if args[2] is not None else
                                                         args[0]), 3 if multimask else 1, 173, 419)  # fmt: skip
            for g, w in zip(got, want, strict=True):
                assert torch.allclose(g, w, atol=1e-4)
    # stock SamPredictor's numpy API runs on it unchanged
    masks, scores, _ = runtime.predict(box=np.array([10, 20, 200, 150]), multimask_output=False)
    assert masks.shape == (1, 173, 419) and scores.shape == (1,)


@pytest.mark.slow
def test_mobile_sam_exports_to_onnx_with_lora_merged(vit_t, vit_t_lora_file, rings_root, tmp_path):
    out = export(weights=str(vit_t_lora_file), format="onnx", out=str(tmp_path / "onnx"),
                 image=str(rings_root / RING))  # fmt: skip
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["max_logits"] < 1e-3
    assert read_manifest(out)["adapter"]["kind"] == "lora"


def test_an_adapter_that_cannot_merge_exports_as_the_modules_it_adds(tmp_path):
    """AdaptFormer's bottlenecks cannot fold into a stock checkpoint (format=pth refuses it); the
    graph simply holds them, and it still answers as the PyTorch model does."""
    weights = _trained_file(build_tiny(), AdaptFormerAdapter(), tmp_path)
    out = export(weights=str(weights), format="onnx", out=str(tmp_path / "onnx"))
    assert json.loads((out / "parity.json").read_text())["passed"]
    with pytest.raises(SamexpError, match="adaptformer"):
        export(weights=str(weights), out=str(tmp_path / "sam.pth"))


def test_a_failed_parity_check_leaves_no_export_behind(tmp_path):
    weights = _trained_file(build_tiny(), LoraAdapter(rank=4), tmp_path)
    with pytest.raises(SamexpError, match=r"do not reproduce the PyTorch model within atol=1e-12.*"
                                          r"nothing was written"):  # fmt: skip
        export(weights=str(weights), format="onnx", out=str(tmp_path / "onnx"), atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.json", "adapter.safetensors"]


def test_an_earlier_export_is_replaced_whole_and_other_folders_are_refused(tmp_path):
    weights = _trained_file(build_tiny(), LoraAdapter(rank=4), tmp_path)
    out = tmp_path / "onnx"
    export(weights=str(weights), format="onnx", out=str(out))
    (out / "stale.txt").write_text("from an earlier export")
    export(weights=str(weights), format="onnx", out=str(out))
    assert not (out / "stale.txt").exists() and (out / "encoder.onnx").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SamexpError, match="holding other files"):
        export(weights=str(weights), format="onnx", out=str(tmp_path / "mine"))
    with pytest.raises(SamexpError, match="is a file: format=onnx writes a folder"):
        export(weights=str(weights), format="onnx", out=str(tmp_path / "mine" / "notes.txt"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    """One tiny LoRA export, for the tests that break a copy of it."""
    folder = tmp_path_factory.mktemp("tiny-export")
    weights = _trained_file(build_tiny(), LoraAdapter(rank=4), folder)
    return export(weights=str(weights), format="onnx", out=str(folder / "onnx"))


class _Opaque(nn.Module):
    """An image encoder wrapped in an operator ONNX has no translation for."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.img_size = encoder, encoder.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.samexp_test.opaque(self.encoder(x))


def test_an_operator_onnx_cannot_express_is_refused_naming_it(tmp_path):
    if not hasattr(torch.ops.samexp_test, "opaque"):
        lib = torch.library.Library("samexp_test", "DEF")  # noqa: F841 (kept by the registry)
        torch.library.define("samexp_test::opaque", "(Tensor x) -> Tensor", lib=lib)
        torch.library.impl("samexp_test::opaque", "CompositeExplicitAutograd", lambda x: x * 1,
                           lib=lib)  # fmt: skip
        _Opaque.lib = lib
    sam = build_tiny().sam.eval()
    sam.image_encoder = _Opaque(sam.image_encoder)
    with pytest.raises(SamexpError, match=r"operator samexp_test::opaque has no ONNX translation"):
        export_graphs(sam, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["input"].update(size=10**9),
            r"input.size=1000000000 is not a side in 64..4096",
        ),
        (lambda m: m["input"].update(stretch="yes"), r"input.stretch='yes' is not true or false"),
        (
            lambda m: m["input"].update(mask_threshold="nan"),
            "input.mask_threshold='nan' is not a number",
        ),
        (lambda m: m.update(format="other/9"), "format is not 'samexp-onnx/1'"),
    ],
    ids=["size", "stretch", "threshold", "format"],
)
def test_a_manifest_off_its_schema_is_refused_naming_the_key(
    change, message, tiny_export, tmp_path
):
    out = Path(shutil.copytree(tiny_export, tmp_path / "onnx"))
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    change(manifest)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(UntrustedFileError, match=message):
        OnnxModel(out)
    (out / "decoder.onnx").unlink()
    with pytest.raises(UntrustedFileError, match="holds no decoder.onnx"):
        OnnxModel(out)
