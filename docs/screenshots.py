"""The documentation's screenshots, taken from the real programs in headless Chromium.

Trains a few offline runs of the tiny SAM and a small Optuna sweep into a temporary
SAMEXP_HOME, serves them with `mlflow ui` and `optuna-dashboard` on free 127.0.0.1 ports and
writes docs/images/*.png. `make screenshots`, or:
    python docs/screenshots.py --only mlflow,comparison --out /tmp/images
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: tests.app.page
from tests.app.page import (  # noqa: E402 - the browser steps the demo's test takes too
    chromium,
    draw_box,
    free_port,
    launch,
    open_demo,
    wait_for_text,
)

log = logging.getLogger("screenshots")
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # mlflow and optuna-dashboard sit beside this python
VIEWPORT = {"width": 1400, "height": 900}  # fixed, so every run gives images of the same size
# --only name -> the image it writes under --out
SHOTS = {
    "mlflow": "mlflow-compare.png",
    "optuna": "optuna-dashboard.png",
    "comparison": "comparison.png",
    "demo": "demo.png",
}
# One run per adapter, long enough for the tiny random SAM to learn something visible
RUNS = {
    "decoder": ["adapter=decoder", "optim.lr=3e-3"],
    "lora": ["adapter=lora", "optim.lr=3e-3"],
    "full": ["adapter=full", "optim.lr=1e-3"],
}
COMPARED_RUN = "full-rings-tiny"  # the run whose comparison strip the docs show
SWEEP_EXPERIMENT = "samexp-sweeps"  # apart from RUNS, so the runs page shows just those three


def samexp(home: Path, *overrides: str) -> None:
    """Run `python -m samexp` into `home`, offline; its output goes to a log shown on failure."""
    logfile = home / "logs" / f"samexp-{time.monotonic_ns()}.log"
    logfile.parent.mkdir(exist_ok=True)
    with logfile.open("w") as out:
        # cwd=home: nothing a run or MLflow writes relative to the working folder lands in the repo
        done = subprocess.run(
            # the smoke experiment last: Hydra wants a `-m` among the overrides before them
            [sys.executable, "-m", "samexp", *overrides, "experiment=smoke"],
            cwd=home, env=os.environ, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"samexp {' '.join(overrides)} failed:\n{tail(logfile)}")


def make_runs(home: Path) -> None:
    """Three single runs (decoder, LoRA, full) of 40 epochs: what the MLflow page compares."""
    for name, overrides in RUNS.items():
        log.info("training the %s run", name)
        samexp(home, *overrides, "trainer.epochs=40")


def make_study(home: Path, trials: int) -> None:
    """A real Optuna sweep of a few trials: the study optuna-dashboard shows."""
    log.info("sweeping %d trials", trials)
    samexp(
        home, "-m", "hparams_search=lora_rank_lr", f"hydra.sweeper.n_trials={trials}",
        f"tracking.experiment={SWEEP_EXPERIMENT}", "trainer.epochs=3",  # trials of a few seconds
    )  # fmt: skip


def tail(path: Path, lines: int = 30) -> str:
    """The end of a log: where a failed run or a server that never came up says why."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def serve(cmd: list[str], url: str, logfile: Path, timeout: float = 90) -> Iterator[str]:
    """Start a server in its own process group, wait until `url` answers, always stop it all.

    The group matters: `mlflow ui` forks uvicorn workers, which would outlive a plain kill.
    """
    with logfile.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=logfile.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = "exited" if proc.poll() is not None else f"did not answer in {timeout}s"
                    raise RuntimeError(f"{cmd[0]} {why} ({url}):\n{tail(logfile)}") from None
                time.sleep(0.5)
        yield url
    finally:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(grace)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def mlflow_client(home: Path):
    """A client on the runs' store, read directly: the comparison image needs no server."""
    from mlflow.tracking import MlflowClient  # slow to import: only when a shot needs it

    return MlflowClient(f"sqlite:///{home}/mlruns/mlflow.db")


def shoot_mlflow(page: Page, home: Path, out: Path) -> None:
    """The three runs side by side in MLflow's chart view: final test IoU and Dice per run."""
    experiment = mlflow_client(home).get_experiment_by_name("samexp").experiment_id
    port = free_port()
    cmd = [str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{home}/mlruns/mlflow.db",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with serve(cmd, f"http://127.0.0.1:{port}/health", home / "mlflow-ui.log"):
        # MLflow 3 opens its assistant panel on a first visit; a returning user has closed it
        page.add_init_script(
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
        )
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?compareRunsMode=CHART")
        page.get_by_placeholder("Search metric charts").fill("final/test")
        # a React app: the page loads long before the bars are drawn
        page.get_by_text("final/test/iou", exact=True).first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .bars path").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # plotly animates the bars in
        page.screenshot(path=out, clip={"x": 200, "y": 0, "width": 1200, "height": 670})
    log.info("wrote %s", out)


def shoot_optuna(page: Page, home: Path, out: Path) -> None:
    """The study's page: optimisation history and hyperparameter importance of the sweep."""
    port = free_port()
    cmd = [str(BIN / "optuna-dashboard"), f"sqlite:///{home}/mlruns/optuna.db",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serve(cmd, f"http://127.0.0.1:{port}/api/studies", home / "optuna-dashboard.log"):
        page.goto(f"http://127.0.0.1:{port}/dashboard/studies/1")  # a fresh store: the only study
        page.get_by_text("Hyperparameter Importance").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .bars path").first.wait_for(timeout=60_000)
        for _ in range(3):  # bigger markers: a handful of trials reads better in a small image
            page.get_by_role("slider").first.press("ArrowRight")
        page.evaluate("document.activeElement.blur()")  # no focus ring on the slider
        page.wait_for_timeout(1500)
        page.screenshot(
            path=out, full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": 1225}
        )
    log.info("wrote %s", out)


def find_run(client, name: str):
    experiment = client.get_experiment_by_name("samexp").experiment_id
    return client.search_runs([experiment], f"attributes.run_name = '{name}'")[0]


def copy_comparison(home: Path, out: Path) -> None:
    """The real comparison strip samexp logged (image | truth | zero-shot | fine-tuned)."""
    client = mlflow_client(home)
    run = find_run(client, COMPARED_RUN)
    strips = sorted(a.path for a in client.list_artifacts(run.info.run_id, "comparisons"))
    got = client.download_artifacts(run.info.run_id, strips[0], str(home / "download"))
    shutil.copyfile(got, out)
    log.info("wrote %s (from run %s, %s)", out, COMPARED_RUN, strips[0])


def demo(page: Page, home: Path, out: Path = REPO / "docs" / "images" / "demo.png") -> None:
    """The demo app over the full fine-tune (the run that learned most): a test image picked from
    the run's examples, a box drawn around the rings, both answers side by side."""
    run_id = find_run(mlflow_client(home), COMPARED_RUN).info.run_id
    port = free_port()
    cmd = [sys.executable, "-m", "samexp.app", "--run-id", run_id, "--port", str(port),
           "--device", "cpu"]  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    with serve(cmd, url, home / "app.log"):
        open_demo(page, url)
        page.locator("#examples img").first.click()
        wait_for_text(page, "#picked", "×")
        draw_box(page, (0.08, 0.36), (0.92, 0.68))  # around both rings of ring_test_1
        wait_for_text(page, "#timing", "Time per answer")
        page.locator("#fine-tuned img").wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # the answer's images load after the text
        page.screenshot(path=out, full_page=True)
    log.info("wrote %s", out)


def main(argv: list[str] | None = None) -> None:
    """Make only the data the chosen shots need, then take each in a fresh browser page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--only", default=",".join(SHOTS), help=f"comma list of {SHOTS}")
    parser.add_argument("--trials", type=int, default=8, help="trials of the Optuna sweep")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only - set(SHOTS):
        parser.error(f"--only: unknown {sorted(only - set(SHOTS))}; choose from {SHOTS}")
    if "demo" in only and not (REPO / "samexp" / "app" / "__main__.py").exists():
        log.info("demo: skipped, samexp/app/__main__.py does not exist yet")
        only.discard("demo")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="samexp-screenshots-") as tmp:
        home = Path(tmp)
        os.environ.update(
            SAMEXP_HOME=str(home), SAMEXP_CACHE=str(home / "cache"), SAMEXP_OFFLINE="1",
            SAMEXP_DATA=os.environ.get("SAMEXP_DATA", str(REPO.parent / "shared" / "datasets")),
            # nothing phones home; MLflow's background job runners are 7 idle processes here
            MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        )  # fmt: skip
        if only & {"mlflow", "comparison", "demo"}:
            make_runs(home)
        if "optuna" in only:
            make_study(home, args.trials)
        if "comparison" in only:
            copy_comparison(home, args.out / SHOTS["comparison"])
        browser_shots = {"mlflow": shoot_mlflow, "optuna": shoot_optuna, "demo": demo}
        todo = [name for name in SHOTS if name in only and name in browser_shots]
        if todo:
            with sync_playwright() as pw:
                browser = launch(pw, chromium() or "/usr/bin/chromium")
                try:
                    for name in todo:  # a fresh page each: no state leaks from one app to the next
                        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
                        browser_shots[name](page, home, args.out / SHOTS[name])
                        page.close()
                finally:
                    browser.close()
    log.info("done in %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
