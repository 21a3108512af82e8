"""A run's folder is its own: two runs started in the same second never share (and overwrite)
one, because the folder ends in a suffix unique to the process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from samexp.config.paths import run_suffix
from tests.conftest import CONF_DIR, REPO


def test_the_run_suffix_is_one_value_per_process_and_another_in_each_process():
    show = "from samexp.config.paths import run_suffix; print(run_suffix(), run_suffix())"
    started = [
        subprocess.Popen([sys.executable, "-c", show], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in started]
    assert all(len(set(out)) == 1 for out in outputs), outputs  # stable within a process
    suffixes = {out[0] for out in outputs} | {run_suffix()}
    assert len(suffixes) == 3  # and new in each


def test_the_run_folder_is_date_time_and_the_process_suffix():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    folder = cfg.hydra.run.dir
    assert cfg.hydra.run.dir == folder  # every interpolation in the process agrees
    date, name = Path(folder).parts[-2:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", date)
    assert re.fullmatch(rf"\d\d-\d\d-\d\d_{run_suffix()}", name)
