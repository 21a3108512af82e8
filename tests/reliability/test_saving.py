"""Trained weights survive a failed write: a full disk ends the run with one line naming the path
and the size needed, no partial file is left behind, and the weights are kept where they can be
recovered (the system temp folder and the MLflow run). NaN weights are never written."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from samexp import runner
from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import load_adapter, save_adapter
from samexp.config.errors import SamexpError, WeightsWriteError
from samexp.models.build import build_tiny


@pytest.fixture
def full_disk(tmp_path: Path):
    """A real 64 KiB filesystem: a tiny decoder adapter (~160 KB) does not fit on it."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mounting a 64 KiB tmpfs needs root (CI runs as root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_no_partial_file_and_says_what_was_needed(full_disk):
    base = build_tiny(seed=0)
    DecoderAdapter().apply(base.sam)
    with pytest.raises(WeightsWriteError) as refused:
        save_adapter(full_disk / "adapter.safetensors", base, DecoderAdapter())
    message = str(refused.value)
    assert f"cannot write the trained weights to {full_disk}/adapter.safetensors" in message
    assert re.search(r"No space left on device.*; 0\.2 MB needed, 0\.\d MB free there\)$", message)
    assert list(full_disk.iterdir()) == []  # no half-written file for a later run to trust


@pytest.mark.slow
def test_a_run_whose_output_disk_is_full_keeps_its_weights_in_temp_and_mlflow(
    make_config, full_disk
):
    cfg = make_config("model=tiny", "adapter=decoder", "trainer.epochs=1", "trainer.max_steps=1",
                      f"output_dir={full_disk}/out")  # fmt: skip
    with pytest.raises(SamexpError) as failed:
        runner.run(cfg)
    message = str(failed.value)
    assert "\n" not in message and f"{full_disk}/out/adapter.safetensors" in message
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    kept = Path(tempfile.gettempdir()) / f"samexp-rescue-{run.info.run_id}" / "adapter.safetensors"
    assert f"kept in {kept} and logged to MLflow run {run.info.run_id}" in message
    assert run.info.status == "FAILED"
    # both copies hold the trained weights: they load onto a fresh base
    load_adapter(kept, build_tiny(seed=0))
    logged = client.download_artifacts(
        run.info.run_id, "weights/adapter.safetensors", str(full_disk.parent)
    )
    load_adapter(logged, build_tiny(seed=0))
    assert not list((full_disk / "out").glob("*.safetensors"))


def test_nan_weights_are_refused_not_written(tmp_path):
    base = build_tiny(seed=0)
    DecoderAdapter().apply(base.sam)
    with torch.no_grad():
        next(p for p in base.sam.parameters() if p.requires_grad).fill_(float("nan"))
    with pytest.raises(SamexpError, match="refusing to save non-finite weights"):
        save_adapter(tmp_path / "adapter.safetensors", base, DecoderAdapter())
    assert not list(tmp_path.iterdir())
