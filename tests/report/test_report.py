"""`python -m samexp.report` on a study logged through samexp.tracking: it finds the runs by study
name, parent run id or experiment, writes the table, verdict and plots as markdown and as one
HTML page with the plots inline, logs them to the parent run, and refuses in one line a name that
selects nothing."""

from __future__ import annotations

import numpy as np
import pytest

from samexp.report.__main__ import main
from samexp.tracking import store
from tests.report.study_runs import log_study, per_image

N = 12
RNG = np.random.default_rng(1)
ZERO = RNG.uniform(0.2, 0.5, N)
CLASSES = ["ring", "disc"] * (N // 2)
COSTS = {"lora": {"params/trainable": 4_096, "train/wall_s": 30.0, "train/seconds_per_step": 0.5,
                  "train/peak_memory_mb": 900.0},
         "decoder": {"params/trainable": 400_000, "train/wall_s": 20.0,
                     "train/seconds_per_step": 0.3, "train/peak_memory_mb": 700.0}}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    runs = {("lora", seed): per_image(ZERO, ZERO + 0.3 + RNG.normal(0, 0.01, N), CLASSES)
            for seed in (0, 1)}  # fmt: skip
    runs |= {("decoder", seed): per_image(ZERO, ZERO + RNG.normal(0, 0.01, N), CLASSES)
             for seed in (0, 1)}  # fmt: skip
    return log_study(tmp_path_factory.mktemp("study"), "rings-adapters", runs, COSTS)


def test_the_report_of_a_study_has_a_row_per_method_a_verdict_and_inline_plots(study, tmp_path, capsys):  # fmt: skip
    uri, parent = study
    assert main(["rings-adapters", "--out", str(tmp_path), "--tracking-uri", uri]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "lora-r4 is best (IoU 0.6" in md and "zero-shot and decoder are worse" in md
    rows = {line.split(" | ")[0][2:]: line for line in md.splitlines() if line.startswith("| ")}
    assert set(rows) == {"method", "lora-r4", "decoder", "zero-shot"}
    assert rows["lora-r4"].startswith("| lora-r4 | 2 | 4,096 | 0.6") and "| (best) |" in rows["lora-r4"]  # fmt: skip
    assert "IoU disc | IoU ring" in rows["method"] and "| 900 | 30.0 |" in rows["lora-r4"]
    assert "![iou_vs_params](iou_vs_params.png)" in md and (tmp_path / "iou_vs_time.png").is_file()
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "<td>lora-r4</td>" in page
    logged = {f.path for f in store.client(uri).list_artifacts(parent, "report")}
    assert logged == {"report/report.html", "report/report.md", "report/iou_vs_params.png",
                      "report/iou_vs_time.png"}  # fmt: skip
    assert "lora-r4 is best" in capsys.readouterr().out


def test_a_study_is_found_by_its_parent_run_id_and_by_its_experiment(study, tmp_path):
    uri, parent = study
    for name in (parent, "studies"):
        assert main([name, "--out", str(tmp_path / name), "--tracking-uri", uri, "--no-log"]) == 0
        table = (tmp_path / name / "report.md").read_text().split("\n", 1)[1]
        assert "lora-r4 is best" in table and "| decoder | 2 |" in table


def test_a_name_that_selects_no_runs_is_one_line(study, tmp_path, capsys):
    uri, _ = study
    assert main(["no-such-study", "--out", str(tmp_path), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'no-such-study' is no parent run id" in err


@pytest.mark.slow
def test_a_report_of_real_tiny_runs_reads_the_figures_they_logged(rings_root, tmp_path):
    """Two adapters × two seeds of the real pipeline (tiny SAM, two steps each) under one study
    parent: the report's means are the runs' own logged means, nothing evaluated again."""
    from samexp.tracking.sweep_parent import find_or_create_parent
    from samexp.tracking.tracker import Tracker
    from tests.conftest import train_tiny

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = Tracker(uri, str(tmp_path / "mlruns" / "artifacts")).client()
    parent = find_or_create_parent(client, client.get_experiment_by_name("samexp").experiment_id,
                                   "study:tiny-study")  # fmt: skip
    done = {(adapter, seed): train_tiny(tmp_path, f"adapter={adapter}", f"trainer.seed={seed}",
                                        f"tracking.parent_run_id={parent}")
            for adapter in ("lora", "decoder") for seed in (0, 1)}  # fmt: skip
    assert main(["tiny-study", "--out", str(tmp_path / "report"), "--tracking-uri", uri]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    iou = {line.split(" | ")[0][2:]: float(line.split(" | ")[3].split()[0])
           for line in md.splitlines() if line.startswith("| ") and "|---" not in line
           and not line.startswith("| method")}  # fmt: skip
    assert set(iou) == {"lora-r8", "decoder", "zero-shot"}
    for method, adapter in (("lora-r8", "lora"), ("decoder", "decoder")):
        logged = [done[adapter, s].metrics["final/test/iou"] for s in (0, 1)]
        assert iou[method] == pytest.approx(sum(logged) / 2, abs=6e-4)
    zero_shot = [r.metrics["baseline/test/iou"] for r in done.values()]
    assert iou["zero-shot"] == pytest.approx(sum(zero_shot) / 4, abs=6e-4)
    assert (tmp_path / "report" / "iou_vs_params.png").is_file()
