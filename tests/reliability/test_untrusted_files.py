"""Hostile adapter files: whatever an adapter file's metadata says, it never chooses what code runs.

Each row crafts an `adapter.safetensors` (from a real one saved on the tiny model) and hands it to
`python -m samexp.predict` and `python -m samexp.export`: both end with exit code 2 and one line
naming the file and the offending key, no traceback, and nothing written or touched. The same
table runs in-process through `load_finetuned`, which both CLIs call (fast); the CLI runs are
subprocesses of a few seconds each, so they are all `slow`.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from samexp.adapters.io import META_KEY, load_adapter, save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.adapters.meta import check_class_prompts
from samexp.config.errors import ConfigValueError, SamexpError, UntrustedFileError
from samexp.models.build import build_tiny
from samexp.prompts.class_tokens import ClassTokenPrompt
from samexp.tracking.finetuned import load_finetuned
from tests.conftest import REPO

VICTIM_TEXT = "precious"
SECRET = "s3cr3t-from-the-environment"  # in the CLI's environment; no output may show it


@dataclass
class Crafted:
    """An adapter file being forged: its metadata, its tensors, or raw metadata text."""

    meta: dict
    tensors: dict[str, torch.Tensor]
    files: Path  # the folder the CLI must leave as it found it
    text: str | None = None  # metadata used verbatim instead of json.dumps(meta)

    @property
    def victim(self) -> Path:
        return self.files / "victim.txt"

    @property
    def marker(self) -> Path:
        return self.files / "marker"


class Payload:
    """A pickle whose loading creates `marker`: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def opens_victim_for_writing(f: Crafted) -> None:
    f.meta["adapter"] = {"_target_": "builtins.open", "file": str(f.victim), "mode": "w"}


def unpickles_a_payload(f: Crafted) -> None:
    payload = f.files / "payload.pkl"
    payload.write_bytes(pickle.dumps(Payload(f.marker)))
    f.meta["adapter"] = {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(payload)}


def calls_a_samexp_function(f: Crafted) -> None:
    good = f.files / "good.safetensors"
    save_file(f.tensors, str(good), metadata={META_KEY: json.dumps(f.meta)})
    f.meta["adapter"] = {"_target_": "samexp.export.export", "weights": str(good),
                         "out": str(f.marker)}  # fmt: skip


def unknown_kind(f: Crafted) -> None:
    f.meta["adapter"] = {"kind": "evil"}


def rank_as_text(f: Crafted) -> None:
    f.meta["adapter"]["rank"] = "eight"


def rank_out_of_range(f: Crafted) -> None:
    f.meta["adapter"]["rank"] = 0


def reads_the_environment(f: Crafted) -> None:
    f.meta["adapter"]["target_modules"] = "${oc.env:SAMEXP_TEST_SECRET}"


def depth_as_text(f: Crafted) -> None:
    f.meta["base"]["build_kwargs"]["depth"] = "two"


def unknown_build_argument(f: Crafted) -> None:
    f.meta["base"]["build_kwargs"]["checkpoint"] = str(f.victim)


def first_tensor(f: Crafted) -> str:
    return sorted(f.tensors)[0]


def wrong_shape(f: Crafted) -> None:
    t = f.tensors[first_tensor(f)]
    f.tensors[first_tensor(f)] = torch.zeros(t.shape[0] + 1, *t.shape[1:])


def wrong_dtype(f: Crafted) -> None:
    f.tensors[first_tensor(f)] = f.tensors[first_tensor(f)].double()


def invalid_json(f: Crafted) -> None:
    f.text = '{"adapter": {"kind": "lora",'


def no_class_prompt_tokens(f: Crafted) -> None:
    f.meta["class_prompts"] = {"classes": ["ring"], "tokens": 0}


def a_billion_class_prompt_tokens(f: Crafted) -> None:
    # built from these counts, the prompts would take 10**9 x 32 floats: held to the file first
    f.meta["class_prompts"] = {"classes": ["ring"], "tokens": 10**9}


TENSOR = "image_encoder.blocks.0.attn.qkv.lora_A.0.weight"  # first_tensor of the tiny LoRA file
# (how the file is forged, the key the one-line error must name)
CASES = [
    pytest.param(opens_victim_for_writing, "adapter._target_", id="target-open-empties-a-file"),
    pytest.param(unpickles_a_payload, "adapter._target_", id="target-read-pickle-runs-payload"),
    pytest.param(calls_a_samexp_function, "adapter._target_", id="target-samexp-function"),
    pytest.param(unknown_kind, "adapter.kind", id="unknown-adapter-kind"),
    pytest.param(rank_as_text, "adapter.rank", id="lora-rank-as-text"),
    pytest.param(rank_out_of_range, "adapter.rank", id="lora-rank-out-of-range"),
    pytest.param(reads_the_environment, "adapter.target_modules", id="interpolation-reads-env"),
    pytest.param(depth_as_text, "base.build_kwargs.depth", id="build-kwarg-of-wrong-type"),
    pytest.param(unknown_build_argument, "base.build_kwargs.checkpoint", id="unknown-build-kwarg"),
    pytest.param(wrong_shape, TENSOR, id="tensor-of-wrong-shape"),
    pytest.param(wrong_dtype, TENSOR, id="tensor-of-wrong-dtype"),
    pytest.param(invalid_json, f"metadata key {META_KEY}", id="invalid-json-metadata"),
    pytest.param(no_class_prompt_tokens, "class_prompts.tokens", id="class-prompts-of-no-token"),
    pytest.param(
        a_billion_class_prompt_tokens,
        "metadata key class_prompts says 1 classes x 1000000000",
        id="class-prompts-count-the-file-lacks",
    ),
]
# Every row is refused by the loader (in-process, below). Both CLIs reach the loader the same way
# whatever the row, so three kinds go through them: one refused before anything is built (code
# named in the file), one refused while the adapter is configured (an interpolation), and one
# refused after the model is built (a tensor of the wrong shape).
CLI_CASES = [CASES[0], CASES[6], CASES[9]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, torch.Tensor]]:
    """A real LoRA adapter file of the tiny model: (its metadata, its tensors)."""
    base = build_tiny(seed=0)
    adapter = LoraAdapter(rank=2)
    adapter.apply(base.sam)
    path = save_adapter(tmp_path_factory.mktemp("saved") / "adapter.safetensors", base, adapter)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    return meta, load_file(str(path))


def run_cli(module: str, weights: Path, out: Path, image: Path, hydra_dir: Path):
    args = {"predict": [f"image={image}", "prompt.box=[2,2,40,40]", f"out={out}", "device=cpu"],
            "export": [f"out={out / 'sam.pth'}"]}[module]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environ["SAMEXP_TEST_SECRET"] = SECRET
    return subprocess.run(
        [sys.executable, "-m", f"samexp.{module}", f"hydra.run.dir={hydra_dir}",
         f"weights={weights}", *args],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def forged(saved, files: Path, forge: Callable[[Crafted], None]) -> tuple[Crafted, Path]:
    """A folder holding the victim file, a photo and the forged `crafted.safetensors`."""
    meta, tensors = saved
    files.mkdir()
    crafted = Crafted(json.loads(json.dumps(meta)), dict(tensors), files)
    crafted.victim.write_text(VICTIM_TEXT)
    cv2.imwrite(str(files / "photo.png"), np.full((48, 64, 3), 120, np.uint8))
    forge(crafted)
    weights = files / "crafted.safetensors"
    text = crafted.text if crafted.text is not None else json.dumps(crafted.meta)
    save_file(crafted.tensors, str(weights), metadata={META_KEY: text})
    return crafted, weights


@pytest.mark.parametrize("forge, key", CASES)
def test_a_crafted_adapter_file_is_refused_by_the_loader_naming_the_key_and_touches_nothing(
    saved, tmp_path: Path, monkeypatch, forge: Callable[[Crafted], None], key: str
):
    monkeypatch.setenv("SAMEXP_TEST_SECRET", SECRET)
    crafted, weights = forged(saved, tmp_path / "files", forge)
    before = snapshot(crafted.files)
    with pytest.raises(SamexpError) as refused:
        load_finetuned(weights=str(weights))
    message = str(refused.value)
    assert weights.name in message and key in message and "\n" not in message, message
    assert not crafted.marker.exists() and snapshot(crafted.files) == before
    assert SECRET not in message  # an interpolation is never resolved


@pytest.mark.slow
@pytest.mark.parametrize("cli", ["predict", "export"])
@pytest.mark.parametrize("forge, key", CLI_CASES)
def test_a_crafted_adapter_file_is_refused_in_one_line_and_touches_nothing(
    saved, tmp_path: Path, cli: str, forge: Callable[[Crafted], None], key: str
):
    crafted, weights = forged(saved, tmp_path / "files", forge)
    files, image = crafted.files, crafted.files / "photo.png"
    before = snapshot(files)

    result = run_cli(cli, weights, files / "out", image, tmp_path / "hydra")

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    assert weights.name in errors[0] and key in errors[0], errors[0]
    assert not (files / "out").exists() and not crafted.marker.exists()
    assert snapshot(files) == before  # the victim file too: neither emptied nor rewritten
    assert SECRET not in output  # an interpolation is never resolved


def test_a_files_token_count_is_held_to_the_range_prompt_class_tokens_declares():
    # one declaration (TokensPerClass): a file's class_prompts.tokens and the option's
    # tokens_per_class are refused in the same words
    with pytest.raises(UntrustedFileError) as from_file:
        check_class_prompts({"classes": ["ring"], "tokens": 0}, "x.safetensors")
    with pytest.raises(ConfigValueError) as from_config:
        ClassTokenPrompt(tokens_per_class=0)
    words = "must be >= 1 (sparse tokens per class)"
    assert str(from_file.value) == f"x.safetensors: metadata key class_prompts.tokens: 0 {words}"
    assert str(from_config.value) == f"prompt.tokens_per_class=0: {words}"


def test_saved_metadata_names_the_adapter_by_kind_not_by_import_path(saved):
    meta, _ = saved
    assert meta["adapter"]["kind"] == "lora" and "_target_" not in meta["adapter"]


def without_kind(adapter: dict) -> None:
    adapter.pop("kind")


def with_import_path_instead_of_kind(adapter: dict) -> None:
    adapter.pop("kind")
    adapter["_target_"] = "samexp.adapters.lora.LoraAdapter"  # how files were saved before kinds


@pytest.mark.parametrize("forge, key", [
    pytest.param(without_kind, "adapter.kind", id="no-kind"),
    pytest.param(with_import_path_instead_of_kind, "adapter._target_", id="saved-before-kinds"),
])  # fmt: skip
def test_an_adapter_file_without_a_kind_is_refused_in_one_line_that_says_to_re_save_it(
    saved, tmp_path: Path, forge: Callable[[dict], None], key: str
):
    meta, tensors = saved
    old = json.loads(json.dumps(meta))
    forge(old["adapter"])
    path = tmp_path / "old.safetensors"
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(old)})

    with pytest.raises(SamexpError) as refused:
        load_adapter(path, build_tiny(seed=0))
    message = str(refused.value)
    assert str(path) in message and key in message and "\n" not in message, message
    assert "re-save the file from its run" in message, message
