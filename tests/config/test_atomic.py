"""Files written whole or not at all (`samexp.config.atomic`) get the mode any new file gets under the
umask: safetensors writes through a temporary file of its own, created 0600, and adapter weights
came out private under umask 022 while checkpoints were 0644."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.config.atomic import atomic_path
from samexp.models.build import build_tiny


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_adapter_files_and_checkpoints_get_the_umasks_mode(tmp_path: Path, umask: int, mode: int):
    base = build_tiny(seed=0)
    adapter = LoraAdapter(rank=2)
    adapter.apply(base.sam)
    old = os.umask(umask)
    try:
        weights = save_adapter(tmp_path / "adapter.safetensors", base, adapter)
        with atomic_path(tmp_path / "last.pt") as tmp:  # as checkpoints are written
            torch.save({"step": 1}, tmp)
    finally:
        os.umask(old)
    written = [weights, weights.with_suffix(".json"), tmp_path / "last.pt"]
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(mode) for p in written}


def test_a_file_asked_private_stays_private_whatever_the_umask(tmp_path: Path):
    old = os.umask(0o000)
    try:
        with atomic_path(tmp_path / "secret", mode=0o600) as tmp:
            tmp.write_text("s3cr3t")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret") == 0o600
