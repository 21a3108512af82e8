"""`python -m samexp` as a user runs it: config errors name the key, user errors print one line and
exit 2 without a traceback, and a real run leaves its outputs where it was told to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, data_root

VIT_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
# every test starts `python -m samexp` (seconds of imports each); tests/reliability/test_first_hour.py
# checks the same messages in-process, in the fast suite
pytestmark = pytest.mark.slow


def samexp(
    tmp: Path, *overrides: str, flags: tuple[str, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the CLI from the repo root with every output (MLflow, Hydra's run folder) inside `tmp`."""
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "samexp",
            *flags,  # Hydra's argparse wants its flags before the overrides
            f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"tracking.artifact_root={tmp}/art",
            f"hydra.run.dir={tmp}/hydra",
            *overrides,
        ],
        cwd=REPO,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = samexp(tmp_path, "adapter=full", flags=("--cfg", "job"))
    assert result.returncode == 0, output(result)
    assert "_target_: samexp.adapters.full.FullAdapter" in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("adapter.rnak=4", "adapter.rnak: adapter=lora has no key rnak; did you mean rank?"),
        # Hydra's own advice for a typo: the constructor failed on it with a TypeError
        ("+adapter.rnak=4", "adapter.rnak: adapter=lora has no key rnak; did you mean rank?"),
        ("trainer.epochs=abc", "trainer.epochs='abc': must be an integer"),
        (
            "adapter=lorra",
            "adapter=lorra: no such adapter option; did you mean lora or lokr or loha?",
        ),
    ],
)
def test_a_config_mistake_is_one_line_with_the_closest_valid_keys_and_exit_2(
    tmp_path, override, message
):
    result = samexp(tmp_path, override)
    assert result.returncode == 2
    lines = output(result).strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"[ERROR] - {message}"), output(result)


def test_missing_dataset_root_exits_2_with_one_line_saying_how_to_set_it(tmp_path):
    missing = tmp_path / "nothing"
    result = samexp(tmp_path, f"data_root={missing}", "model=tiny")
    assert result.returncode == 2, output(result)
    errors = [line for line in output(result).splitlines() if "ERROR" in line]
    assert len(errors) == 1, output(result)
    assert str(missing / "rings") in errors[0]
    assert "SAMEXP_DATA" in errors[0]
    assert "Traceback" not in output(result)


def test_offline_vit_b_without_a_checkpoint_exits_2_saying_where_to_get_it(tmp_path):
    cache = tmp_path / "cache"
    result = samexp(
        tmp_path,
        "model=vit_b",
        f"data_root={data_root()}",
        SAMEXP_OFFLINE="1",
        SAMEXP_CACHE=str(cache),
        SAMEXP_CHECKPOINT_MIRROR="",
        # belt and braces: were the offline switch ignored, urllib would fail here, not download
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
    )
    assert result.returncode == 2, output(result)
    text = output(result)
    assert VIT_B_URL in text
    assert "model.checkpoint=" in text
    assert "Traceback" not in text
    assert not cache.exists() or not any(cache.iterdir()), "nothing is fetched offline"


def test_tiny_decoder_run_exits_0_and_records_its_overrides(rings_root, tmp_path):
    result = samexp(
        tmp_path,
        f"data_root={data_root()}",
        "adapter=decoder",
        "model=tiny",
        "trainer.epochs=1",
        "trainer.max_steps=2",
    )
    assert result.returncode == 0, output(result)
    assert "Traceback" not in output(result)
    # weights default to Hydra's run folder, which we pointed into tmp
    assert (tmp_path / "hydra" / "adapter.safetensors").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    assert run.info.run_name == "decoder-rings-tiny"
    assert "adapter=decoder" in run.data.tags["overrides"].split()
    assert "final/test/iou" in run.data.metrics
