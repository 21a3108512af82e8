"""Guards that were already right stay so: a pickled checkpoint cannot run code on load (only
tensors are read, `weights_only=True`). COCO paths escaping the dataset root and mismatched
mask sizes are specified in tests/data (test_coco.py, test_folder.py)."""

from __future__ import annotations

import pytest
import torch

from samexp.config.errors import CheckpointError
from samexp.models.checkpoints import load_state_dict
from tests.reliability.test_untrusted_files import Payload


def test_a_pickled_checkpoint_payload_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    hostile = tmp_path / "sam_vit_b.pth"
    torch.save({"weight": Payload(marker)}, hostile)  # a real .pth, its pickle carrying code
    with pytest.raises(CheckpointError, match="is not a readable PyTorch checkpoint"):
        load_state_dict(hostile)
    assert not marker.exists()
