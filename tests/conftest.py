"""Shared fixtures: the tiny SAM, the real rings data (read in place), synthetic folder datasets,
and config composition. Nothing here touches the network."""

from __future__ import annotations

import contextlib
import copy
import os
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import samexp.config.schema  # noqa: F401  (registers the schemas)
from samexp.models.build import BaseModel, build_tiny

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
IMG_SIZE = 256  # the tiny model's input size; small keeps the real-data tests fast
# The repo lives next to shared/ (e.g. /work/main and /work/shared; CI clones beside ../shared).
DEFAULT_DATA = REPO.parent / "shared" / "datasets"

# One thread per test process, and per process it starts (CLI, torchrun, sweep workers, servers):
# the tiny model's operations are too small to split across cores, and with torch's default of a
# thread per core, two xdist workers on 2 cores wait on each other's threads (tenfold slower on a
# busy machine). Set OMP_NUM_THREADS to choose another count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`, `make test-fast`: `-n 2 --dist loadgroup`) the tests that
    share a session- or package-scoped fixture (the tiny training runs below, the demo's server)
    go to one worker, which builds it once instead of once per worker."""
    for item in items:
        group = SHARED_FIXTURE_PACKAGES.get(item.path.parent.name)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    # xdist hands out single tests in collection order: one of minutes collected last runs alone
    # on one core while the other idles, so the modules of the longest ones go first (whole, so
    # their module fixtures are still built once)
    items.sort(key=lambda item: item.path.name not in LONGEST_MODULES)  # stable


# the packages whose tests read `tiny_lora_run` / `tiny_decoder_run` / `tiny_sam2_run`
SHARED_FIXTURE_PACKAGES = dict.fromkeys(("app", "predict", "evaluate", "export"), "tiny_runs")
# `make test`'s --durations: a server and two sweep workers (2 min), torchrun jobs, benchmarks
LONGEST_MODULES = ("test_server.py", "test_distributed.py", "test_sweeps.py", "test_submitit.py",
                   "test_run_lease.py", "test_bench.py", "test_bench_gpu.py", "test_resume.py",
                   "test_sweeper.py", "test_adapter_study.py", "test_sam2_runs.py")  # fmt: skip


def data_root() -> Path:
    return Path(os.environ.get("SAMEXP_DATA", DEFAULT_DATA)).resolve()


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Checkpoints and downloaded run weights go to a temporary cache, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAMEXP_CACHE", str(tmp_path_factory.mktemp("samexp-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def migrated_mlflow_store(tmp_path_factory: pytest.TempPathFactory):
    """A fresh sqlite MLflow store opened in this process gets its tables as a copy of one that
    MLflow's own migrations made once this session, instead of running them again (~0.7 s of CPU a
    store, a few hundred stores a suite). Every store still holds exactly what the migrations
    make; the migrations themselves run in every subprocess the tests start (CLI, sweeps, servers).
    """
    import mlflow.store.db.utils as db_utils
    import sqlalchemy

    migrate = db_utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{template}")
    with warnings.catch_warnings():  # SQLAlchemy's deprecations in MLflow's migration scripts
        warnings.simplefilter("ignore", DeprecationWarning)
        migrate(engine)
    engine.dispose()

    def copy_template(engine: sqlalchemy.engine.Engine) -> None:
        path = engine.url.database
        if engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return migrate(engine)
        with contextlib.closing(sqlite3.connect(template)) as source:
            with contextlib.closing(sqlite3.connect(path)) as store:
                source.backup(store)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db_utils, "_initialize_tables", copy_template)
        yield


@pytest.fixture(scope="session")
def rings_root() -> Path:
    """The real rings dataset; missing data is a failure, not a skip (CI always has it)."""
    root = data_root() / "rings"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.fail(
            f"rings dataset not found at {root}: set SAMEXP_DATA to the folder that holds rings/"
        )
    return root


@pytest.fixture
def tiny() -> BaseModel:
    return build_tiny(seed=0)


@pytest.fixture(scope="session")
def vit_t_base() -> BaseModel:
    """A random MobileSAM (vit_t, ~10M parameters), built once per session: read it, or copy it."""
    from samexp.models.mobile import build_mobile

    return build_mobile(pretrained=False, seed=0)


@pytest.fixture
def vit_t(vit_t_base: BaseModel) -> BaseModel:
    """A copy of the random vit_t to change (adapters, weights, modes)."""
    return copy.deepcopy(vit_t_base)


@pytest.fixture
def vit_t_lora_file(vit_t: BaseModel, tmp_path: Path) -> Path:
    """A LoRA r=4 adapter file of `vit_t` (which then carries it), B drawn as if trained."""
    from samexp.adapters.io import save_adapter
    from samexp.adapters.lora import LoraAdapter

    adapter = LoraAdapter(rank=4)
    adapter.apply(vit_t.sam)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in vit_t.sam.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05, generator=g)
    return save_adapter(tmp_path / "adapter.safetensors", vit_t, adapter)


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real config with tracking and outputs redirected into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(
            [
                f"data_root={data_root()}",
                f"tracking.tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
                f"tracking.artifact_root={tmp_path}/mlruns/artifacts",
                f"output_dir={tmp_path}/out",
                *overrides,
            ]
        )

    return make


def write_shapes_dataset(
    root: Path, splits: dict[str, int], size: tuple[int, int] = (96, 128), seed: int = 0
) -> Path:
    """A folder dataset of bright ellipses on textured dark backgrounds: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, count in splits.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), dtype=np.uint8)
            centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
            axes = (int(rng.integers(w // 8, w // 4)), int(rng.integers(h // 8, h // 4)))
            cv2.ellipse(mask, centre, axes, float(rng.integers(0, 180)), 0, 360, 255, -1)
            colour = rng.integers(150, 256, 3)
            image[mask > 0] = colour
            cv2.imwrite(str(root / split / "images" / f"shape{i}.png"), image[:, :, ::-1])
            cv2.imwrite(str(root / split / "masks" / f"shape{i}.png"), mask)
    return root


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 8, "test": 4})


@dataclass(frozen=True)
class TinyRun:
    """A finished tiny training run on the rings, in a store of its own under `home`."""

    home: Path  # mlruns/ (the store and its artifacts) and out/ (the weights)
    run_id: str
    tracking_uri: str
    metrics: dict[str, float]

    @property
    def weights(self) -> Path:
        return self.home / "out" / "adapter.safetensors"


# two optimizer steps; the high learning rate makes the fine-tuned model differ visibly from the
# zero-shot one
TINY_RUN = ("model=tiny", "trainer.epochs=1", "trainer.max_steps=2", "optim.lr=1e-2")


def train_tiny(home: Path, *overrides: str) -> TinyRun:
    from samexp import runner

    cfg = compose_config([f"data_root={data_root()}",
                          f"tracking.tracking_uri=sqlite:///{home}/mlruns/mlflow.db",
                          f"tracking.artifact_root={home}/mlruns/artifacts",
                          f"output_dir={home}/out", *TINY_RUN, *overrides])  # fmt: skip
    done = runner.run(cfg)
    return TinyRun(home, done.run_id, cfg.tracking.tracking_uri, done.metrics)


@pytest.fixture(scope="session")
def tiny_lora_run(rings_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """One real tiny LoRA run, trained once a session: the prediction, demo and export tests read
    it (none adds a run to its store, which the demo's run picker lists)."""
    return train_tiny(
        tmp_path_factory.mktemp("tiny-lora-run"), "adapter=lora", "trainer.device=cpu"
    )


@pytest.fixture(scope="session")
def tiny_decoder_run(rings_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """One real tiny decoder run without a validation split (the evaluate tests reproduce its test
    figures and hold out its test split), trained once a session for them and the export tests."""
    return train_tiny(
        tmp_path_factory.mktemp("tiny-decoder-run"), "adapter=decoder", "trainer.val_fraction=0"
    )


@pytest.fixture(scope="session")
def tiny_sam2_run(rings_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """One real tiny SAM 2.1 LoRA run (`model=sam2_tiny`, on Hiera's qkv), trained once a session:
    predict, the demo, evaluate and export read it to show each works on SAM 2.1 (~10 s)."""
    return train_tiny(tmp_path_factory.mktemp("tiny-sam2-run"), "model=sam2_tiny",
                      "adapter=lora", "trainer.device=cpu")  # fmt: skip
