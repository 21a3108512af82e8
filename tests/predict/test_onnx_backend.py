"""`python -m samexp.predict backend=onnx onnx=<export>`: prompt mode through the exported graphs
(onnxruntime) writes the masks the PyTorch backend writes on the same fine-tuned model, for SAM
and SAM 2.1, and records where they came from; what only the PyTorch model can do, and a folder
that is not an export, are refused in one line before any image is read."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.config.schema import AttentionKernel, Device
from samexp.data.base import read_image_rgb
from samexp.export import export
from samexp.models.seam import mask_threshold
from samexp.predict import PredictConfig, predict
from samexp.predict.config import Backend, PredictMode, PromptConfig
from samexp.predict.predictor import Predictor
from samexp.predict.prompted import decode_prompts
from samexp.predict.prompts import parse_prompts
from samexp.predict.run import load_model
from tests.conftest import TinyRun
from tests.predict.conftest import BOX, read_mask
from tests.predict.test_cli import one_error_line, output, samexp_predict

# pixels whose logit sits this close to the threshold may flip between two runtimes' float sums
LOGIT_TOLERANCE = 1e-3
CASES = {
    "two boxes": {"boxes": [BOX, [400.0, 420.0, 600.0, 600.0]]},
    "points, multimask": {"points": [[380.0, 470.0], [100.0, 100.0]], "labels": [1, 0]},
}
RUNS = {"tiny": "tiny_lora_run", "sam2_tiny": "tiny_sam2_run"}


@dataclass
class Exported:
    weights: Path  # the fine-tuned run's adapter file
    onnx: Path  # its ONNX export folder
    images: list[Path]

    def config(self, out: Path, backend: Backend, **fields) -> PredictConfig:
        where = {"onnx": str(self.onnx)} if backend is Backend.onnx else {"weights": str(self.weights)}  # fmt: skip
        return PredictConfig(backend=backend, out=str(out), **where, **fields)


@pytest.fixture(scope="module", params=list(RUNS))
def exported(request, rings_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The session's tiny SAM / SAM 2.1 LoRA run, exported once to ONNX."""
    run: TinyRun = request.getfixturevalue(RUNS[request.param])
    folder = tmp_path_factory.mktemp(f"onnx-{request.param}") / "export"
    export(weights=str(run.weights), format="onnx", out=str(folder))
    images = sorted((rings_root / "test" / "images").glob("*.jpg"))
    return Exported(run.weights, folder, images)


class LogitPredictor(Predictor):
    """The PyTorch backend's predictor answering logits where it answers masks."""

    def predict_torch(self, *args, **kwargs):
        return super().predict_torch(*args, **{**kwargs, "return_logits": True})


def torch_logits(exported: Exported, image: Path, prompt: dict, multimask: bool) -> tuple[np.ndarray, float]:  # fmt: skip
    """N×M×H×W logits of the PyTorch backend's model on `image`, and its mask threshold."""
    cfg = exported.config(Path("unused"), Backend.torch)
    sam, _ = load_model(cfg, torch.device("cpu"))
    predictor = LogitPredictor(sam)
    predictor.set_image(read_image_rgb(image, orient=True))
    pred = decode_prompts(predictor, parse_prompts(**prompt), multimask)
    return pred.masks, mask_threshold(sam)


def assert_same_masks(onnx_out: Path, torch_out: Path, logits: np.ndarray, threshold: float,
                      stem: str) -> None:  # fmt: skip
    """Every mask PNG of the torch run is written by the onnx run, equal but where the logit is
    within LOGIT_TOLERANCE of the threshold."""
    names = sorted(p.name for p in torch_out.glob(f"{stem}_mask*.png"))
    assert names and names == sorted(p.name for p in onnx_out.glob(f"{stem}_mask*.png"))
    flat = logits.reshape(-1, *logits.shape[-2:])  # file order: prompt k, candidate j
    for name, logit in zip(names, flat, strict=True):
        ours, theirs = read_mask(onnx_out / name), read_mask(torch_out / name)
        assert np.array_equal(theirs, logit > threshold), name  # the logits are the torch run's
        differ = ours != theirs
        assert np.all(np.abs(logit[differ] - threshold) < LOGIT_TOLERANCE), name
        assert differ.mean() < 1e-4, name


@pytest.mark.parametrize("case", CASES)
def test_onnx_backend_writes_the_torch_backends_masks_and_scores(exported, tmp_path, case):
    image, multimask = exported.images[0], "multimask" in case
    prompt = PromptConfig(**CASES[case])
    for backend in Backend:
        predict(exported.config(tmp_path / backend.value, backend, image=str(image),
                                prompt=prompt, multimask=multimask))  # fmt: skip
    logits, threshold = torch_logits(exported, image, CASES[case], multimask)
    assert_same_masks(tmp_path / "onnx", tmp_path / "torch", logits, threshold, image.stem)
    onnx_json, torch_json = (json.loads((tmp_path / b / f"{image.stem}.json").read_text())
                             for b in ("onnx", "torch"))  # fmt: skip
    ours = [m["score"] for m in onnx_json["masks"]]
    assert ours == pytest.approx([m["score"] for m in torch_json["masks"]], abs=1e-4)


def test_the_index_records_the_backend_the_export_and_where_it_came_from(exported, tmp_path):
    folder = exported.images[0].parent
    index = predict(exported.config(tmp_path, Backend.onnx, images=str(folder),
                                    prompt=PromptConfig(box=BOX)))  # fmt: skip
    assert index == json.loads((tmp_path / "predictions.json").read_text())
    assert index["backend"] == "onnx" and index["mode"] == "prompt"
    assert index["source"] == {"run_id": None, "weights": None, "onnx": str(exported.onnx),
                               "exported_from": str(exported.weights)}  # fmt: skip
    assert index["adapter"]["kind"] == "lora" and index["base"]["arch"] in RUNS
    assert [Path(e["image"]).name for e in index["images"]] == [p.name for p in exported.images]
    torch_index = predict(exported.config(tmp_path / "torch", Backend.torch, image=str(exported.images[0]),
                                          prompt=PromptConfig(box=BOX)))  # fmt: skip
    assert torch_index["backend"] == "torch" and torch_index["source"]["onnx"] is None


@pytest.mark.slow
def test_the_command_line_writes_what_predict_writes_through_the_graphs(exported, tmp_path):
    image = exported.images[1]
    result = samexp_predict(tmp_path, "backend=onnx", f"onnx={exported.onnx}", f"image={image}",
                            "prompt.box=[60,300,700,650]", f"out={tmp_path}/cli")  # fmt: skip
    assert result.returncode == 0, output(result)
    assert "through onnxruntime" in output(result)
    predict(exported.config(tmp_path / "torch", Backend.torch, image=str(image),
                            prompt=PromptConfig(box=BOX)))  # fmt: skip
    logits, threshold = torch_logits(exported, image, {"box": BOX}, False)
    assert_same_masks(tmp_path / "cli", tmp_path / "torch", logits, threshold, image.stem)
    assert json.loads((tmp_path / "cli" / "predictions.json").read_text())["backend"] == "onnx"


# --- refusals: one line each, before any image is read or model built (no image= is given)


REFUSED = {
    "onnx without a folder": ({"backend": Backend.onnx}, "backend=onnx needs onnx=<folder>"),
    "a folder with backend=torch": ({"onnx": "x"}, "onnx=x needs backend=onnx"),
    "weights as well": (
        {"backend": Backend.onnx, "onnx": "x", "weights": "w.safetensors"},
        "runs the graphs in onnx=x, not weights=w.safetensors",
    ),  # fmt: skip
    "mode=auto": (
        {"backend": Backend.onnx, "onnx": "x", "mode": PredictMode.auto},
        "mode=auto needs backend=torch: the automatic mask generators run the PyTorch",
    ),  # fmt: skip
    "mode=classes": (
        {"backend": Backend.onnx, "onnx": "x", "mode": PredictMode.classes},
        "mode=classes needs backend=torch: the learned class prompts are not in",
    ),  # fmt: skip
    "compare=true": (
        {"backend": Backend.onnx, "onnx": "x", "compare": True},
        "compare=true needs backend=torch: the zero-shot side rebuilds",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_the_onnx_backend_cannot_do_is_refused_naming_why(tmp_path, case):
    fields, message = REFUSED[case]
    with pytest.raises(SamexpError) as refused:
        predict(PredictConfig(out=str(tmp_path), **fields))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def written_export(folder: Path, edit: Callable[[dict], object] = dict.copy,
                   then: Callable[[Path], object] = Path.exists) -> Path:  # fmt: skip
    """A folder shaped like an export (a sound manifest, placeholder graphs) with `edit` applied
    to its manifest and `then` to the folder: the checks it meets come before a graph loads."""
    folder.mkdir()
    for graph in ("encoder.onnx", "decoder.onnx"):
        (folder / graph).write_bytes(b"")
    found = {"format": "samexp-onnx/1",
             "input": {"size": 256, "stretch": False, "mask_threshold": 0.0, "pad_with_box": False}}  # fmt: skip
    edit(found)
    (folder / "samexp_onnx.json").write_text(json.dumps(found))
    then(folder)
    return folder


HOSTILE = {
    "no manifest": (
        {"then": lambda f: (f / "samexp_onnx.json").unlink()},
        "holds no samexp_onnx.json",
    ),  # fmt: skip
    "no decoder": ({"then": lambda f: (f / "decoder.onnx").unlink()}, "holds no decoder.onnx"),
    "another format": (
        {"edit": lambda m: m.update(format="other/9")},
        "format is not 'samexp-onnx/1'",
    ),  # fmt: skip
    "a manifest that is a list": (
        {"then": lambda f: (f / "samexp_onnx.json").write_text("[1]")},
        "format is not 'samexp-onnx/1'",
    ),  # fmt: skip
    "a huge input side": (
        {"edit": lambda m: m["input"].update(size=10**9)},
        "input.size=1000000000 is not a side in 64..4096",
    ),  # fmt: skip
    "a threshold that is text": (
        {"edit": lambda m: m["input"].update(mask_threshold="0")},
        "input.mask_threshold='0' is not a number",
    ),  # fmt: skip
    "a graph that is not ONNX": (
        {"then": lambda f: (f / "encoder.onnx").write_bytes(b"\x00junk")},
        "encoder.onnx: onnxruntime cannot load it",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_folder_that_is_not_a_sound_export_is_refused_in_one_line(rings_root, tmp_path, case):
    change, message = HOSTILE[case]
    folder = written_export(tmp_path / "export", **change)
    image = sorted((rings_root / "test" / "images").glob("*.jpg"))[0]
    cfg = PredictConfig(backend=Backend.onnx, onnx=str(folder), image=str(image),
                        prompt=PromptConfig(box=BOX), out=str(tmp_path / "out"))  # fmt: skip
    with pytest.raises(SamexpError) as refused:
        predict(cfg)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_command_refuses_a_hostile_manifest_with_exit_2_and_one_line(tmp_path):
    folder = written_export(tmp_path / "export", **HOSTILE["a huge input side"][0])
    result = samexp_predict(tmp_path, "backend=onnx", f"onnx={folder}", "image=never-read.jpg",
                            "prompt.box=[60,300,700,650]")  # fmt: skip
    assert "input.size=1000000000 is not a side" in one_error_line(result)


def test_settings_of_the_pytorch_model_are_said_not_to_apply(exported, tmp_path, caplog):
    cfg = exported.config(tmp_path, Backend.onnx, image=str(exported.images[0]),
                          prompt=PromptConfig(box=BOX), device=Device.cuda,
                          attention=AttentionKernel.stock, merge=False)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="samexp.predict.run"):
        predict(cfg)  # runs: onnxruntime on the CPU, whatever device= says
    said = [r.getMessage() for r in caplog.records if "do not apply" in r.getMessage()]
    assert len(said) == 1 and all(k in said[0] for k in ("device=cuda", "attention=stock",
                                                          "merge=false"))  # fmt: skip
    assert read_mask(tmp_path / f"{exported.images[0].stem}_mask0.png").any()
