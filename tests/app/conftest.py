"""The demo's fixtures: adapter files made without training (a decoder fine-tune with learned
classes, a LoRA), one real tiny training run in its own MLflow store, and the app itself started
as users start it, `python -m samexp.app`, on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.models.build import BaseModel, build_tiny
from samexp.models.sam2 import build_sam2_tiny
from samexp.prompts.class_tokens import attach_class_prompts
from tests.app.page import free_port
from tests.conftest import REPO, TinyRun

CLASSES = ["ring", "stone"]
# a test runs on SAM 2.1 too with @pytest.mark.parametrize("decoder_file", FAMILIES, indirect=True)
TINY_MODELS = {"tiny": build_tiny, "sam2_tiny": build_sam2_tiny}
FAMILIES = list(TINY_MODELS)
STARTUP_S = 120  # gradio's import and first page build, on a busy 2-core CI machine


def _perturb(sam: torch.nn.Module, match: str) -> None:
    """Trainable tensors whose name holds `match` drawn as if trained, so the models differ."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if p.requires_grad and match in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _tiny_of(request: pytest.FixtureRequest) -> BaseModel:
    """The tiny model of the family a test names (`indirect` parametrisation; default: SAM)."""
    return TINY_MODELS[getattr(request, "param", "tiny")](seed=0)


@pytest.fixture
def decoder_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A tiny decoder fine-tune with learned class prompts: the encoder is left as it was."""
    base = _tiny_of(request)
    DecoderAdapter().apply(base.sam)
    torch.manual_seed(0)
    attach_class_prompts(base.sam, CLASSES, tokens=2)
    _perturb(base.sam, "mask_decoder")
    return save_adapter(tmp_path / "decoder.safetensors", base, DecoderAdapter())


@pytest.fixture
def lora_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A tiny LoRA on the image encoder, B drawn as if trained: the encoder differs."""
    base = _tiny_of(request)
    adapter = LoraAdapter(rank=4)
    adapter.apply(base.sam)
    _perturb(base.sam, "lora_B")
    return save_adapter(tmp_path / "lora.safetensors", base, adapter)


@dataclass
class Store:
    tracking_uri: str
    run_id: str
    home: Path


@pytest.fixture(scope="package")
def store(tiny_lora_run: TinyRun) -> Store:
    """The session's real tiny LoRA run on the rings data, in a store of its own."""
    return Store(tiny_lora_run.tracking_uri, tiny_lora_run.run_id, tiny_lora_run.home)


@dataclass
class App:
    url: str
    log: Path


@pytest.fixture(scope="package")
def app(store: Store, tmp_path_factory: pytest.TempPathFactory) -> App:
    """`python -m samexp.app` over `store`, as a user starts it; stopped after the package."""
    port = free_port()
    log = tmp_path_factory.mktemp("app-log") / "app.log"
    env = {**os.environ, "SAMEXP_HOME": str(store.home), "SAMEXP_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "samexp.app", "--port", str(port), "--device", "cpu",
             "--tracking-uri", store.tracking_uri, "--max-upload-mb", "2"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_S
        while "the demo answers on" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield App(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
