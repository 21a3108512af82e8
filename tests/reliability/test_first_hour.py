"""The first hour of a new user: a misspelt key, a value of the wrong type or an option that does
not exist is one line naming the key and the closest valid ones (the CLI prints it and exits 2:
tests/config/test_cli.py), never Hydra's block, and `+key=value` is no way around the schema; and the
quick start installs first, with CPU-only PyTorch a flag away."""

from __future__ import annotations

import subprocess

import pytest
from hydra import compose, initialize_config_dir

import samexp.predict.config  # noqa: F401  (registers predict_schema)
from samexp.config.cli import one_line
from samexp.config.schema import undeclared
from tests.conftest import CONF_DIR, REPO


def refusal(config_name: str, overrides: list[str]) -> str:
    """What the command says of `overrides`: `hydra_main`'s words, without starting a process."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as e:  # noqa: BLE001  (whatever Hydra raises is what the CLI words)
        return one_line(e)
    return "; ".join(undeclared(cfg))


# command, overrides -> the one line it now prints (after "[time][samexp][ERROR] - ")
CASES = [
    pytest.param("config", "adapter.rnak=4", "adapter.rnak: adapter=lora has no key rnak; did you mean rank?", id="key-typo"),
    pytest.param("config", "+adapter.rnak=4", "adapter.rnak: adapter=lora has no key rnak; did you mean rank?", id="key-typo-added-with-plus"),
    pytest.param("config", "model=tiny model.depht=3", "model.depht: model=tiny has no key depht; did you mean depth?", id="model-key-typo"),
    pytest.param("config", "trainr.epochs=3", "trainr.epochs: the config has no key trainr; did you mean trainer or tracking?", id="group-typo"),
    pytest.param("config", "+trainer.epoch=3", "trainer.epoch: trainer has no key epoch; did you mean epochs?", id="setting-added-with-plus"),
    pytest.param("config", "adapter=decoder adapter.rnak=4", "adapter.rnak: adapter=decoder has no key rnak; valid: train_prompt_encoder", id="key-typo-nothing-close"),
    pytest.param("config", "adapter=full adapter.rnak=4", "adapter.rnak: adapter=full has no key rnak; it takes no keys", id="key-of-an-option-without-keys"),
    pytest.param("config", "adapter=lorra", "adapter=lorra: no such adapter option; did you mean lora or lokr or loha?", id="option-typo"),
    pytest.param("config", "adapter.rank=abc", "adapter.rank='abc': must be an integer", id="bad-type-int"),
    pytest.param("config", "trainer.epochs=1.5", "trainer.epochs=1.5: must be an integer", id="bad-type-float-for-int"),
    pytest.param("config", "trainer.max_steps=x", "trainer.max_steps='x': must be an integer or null", id="bad-type-optional"),
    pytest.param("config", "trainer.device=gpu", "trainer.device='gpu': must be one of auto, cpu, cuda, mps", id="bad-type-enum"),
    pytest.param("config", "trainer.restore_best=maybe", "trainer.restore_best='maybe': must be true or false", id="bad-type-bool"),
    pytest.param("config", "trainer.epochs=[1", "cannot read the overrides: no viable alternative at input '[1' (quote values with spaces or brackets)", id="unparsable-override"),
    pytest.param("predict", "+prompt.bx=[1,2,3,4]", "prompt.bx: prompt has no key bx; did you mean box?", id="predict-key-added-with-plus"),
    pytest.param("predict", "mode=automatic", "mode='automatic': must be one of prompt, auto, classes", id="predict-bad-mode"),
    pytest.param("evaluate", "dataset=ringz", "dataset=ringz: no such dataset option; did you mean rings?", id="evaluate-option-typo"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "overrides", "message"), CASES)
def test_a_config_mistake_is_one_line_naming_the_closest_valid_keys(command, overrides, message):
    assert refusal(command, overrides.split()) == message


def test_the_quick_start_installs_first_and_offers_cpu_only_torch():
    quick_start = (REPO / "README.md").read_text().split("## Quick start", 1)[1]
    assert quick_start.split("```bash\n", 1)[1].startswith("make install")
    assert "make install TORCH=cpu" in quick_start


@pytest.mark.parametrize(
    ("torch", "index"),
    [("cpu", "--extra-index-url https://download.pytorch.org/whl/cpu"), ("", None)],
)
def test_make_install_torch_cpu_takes_pytorchs_cpu_index_and_the_default_pypi(torch, index):
    # a dry run (-n) of the install rule, forced (-B): prints the commands, downloads nothing
    plan = subprocess.run(["make", "-n", "-B", ".venv/.installed", f"TORCH={torch}"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    install = next(line for line in plan.splitlines() if "pip install --quiet -e" in line)
    assert (index in install) if index else ("--extra-index-url" not in install)
