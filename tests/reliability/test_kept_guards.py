"""Guards that were already right stay so: a pickled checkpoint cannot run code on load (only
tensors are read, `weights_only=True`). COCO paths escaping the dataset root and mismatched
mask sizes are specified in tests/data (test_coco.py, test_folder.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from samexp.errors import CheckpointError
from samexp.models.checkpoints import load_state_dict


class _Payload:
    """Unpickling this would create the marker file: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickled_checkpoint_payload_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    hostile = tmp_path / "sam_vit_b.pth"
    torch.save({"weight": _Payload(marker)}, hostile)  # a real .pth, its pickle carrying code
    with pytest.raises(CheckpointError, match="is not a readable PyTorch checkpoint"):
        load_state_dict(hostile)
    assert not marker.exists()
