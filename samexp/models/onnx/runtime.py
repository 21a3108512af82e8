"""Running an ONNX export through onnxruntime: the two sessions and the manifest's geometry, with
tensors in and out as the seam has them (a `Features` dict, low-res logits and IoU), so the
predictor built on it (`samexp.predict.onnx_predictor`) reuses the one image pipeline unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from samexp.config.errors import SamexpError
from samexp.data.frame import Frame, Pipeline
from samexp.models.family import Features
from samexp.models.onnx.manifest import DECODER_FILE, ENCODER_FILE, read_manifest


def session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session; a graph it cannot load is one line naming the file."""
    import onnxruntime as ort  # imported when used: the PyTorch paths never need it

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its shape-merge warnings are about the graph, not the user
    # its idle threads block rather than spin: the predictor runs torch (pipeline, upscaling)
    # between sessions on the same cores, which spinning threads starve (bench_onnx: tiny 4x)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # no memory pattern: onnxruntime would otherwise reserve one block for every intermediate
    # tensor of the plan at once; vit_b's encoder peaks at 3.9 GB instead of 6.9 GB, as fast
    options.enable_mem_pattern = False
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / ...
        first = (str(e).strip().splitlines() or [""])[0]
        raise SamexpError(
            f"{path}: onnxruntime cannot load it ({type(e).__name__}: {first})"
        ) from None


class OnnxModel:
    """An export folder's encoder and decoder sessions and what feeding them takes."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        spec = self.manifest["input"]
        self.geometry = Pipeline(spec["size"], stretch=spec["stretch"])
        self.mask_threshold = float(spec["mask_threshold"])
        self.pad_with_box = spec["pad_with_box"]  # ModelFamily.pads_boxed_prompts
        self.encoder = session(self.folder / ENCODER_FILE, threads)
        self.decoder = session(self.folder / DECODER_FILE, threads)
        self.levels = [o.name for o in self.encoder.get_outputs()]
        self._encoder_inputs = {i.name for i in self.encoder.get_inputs()}

    def encode(self, model_input: torch.Tensor, frame: Frame) -> Features:
        """The uint8 3×S×S model input of one image -> its feature levels (batch 1)."""
        feed = {"image": model_input[None].numpy(),
                "input_size": np.asarray(frame.input_size, dtype=np.int64)}  # fmt: skip
        # a stretched family's graph has no use for input_size, and the exporter drops it
        outputs = self.encoder.run(
            None, {k: v for k, v in feed.items() if k in self._encoder_inputs}
        )
        return {name: torch.from_numpy(a) for name, a in zip(self.levels, outputs, strict=True)}

    def decode(self, features: Features, coords: np.ndarray, labels: np.ndarray,
               mask_input: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """SAM's ONNX prompt convention (B×N points, labels 1/0/2/3/-1) -> every mask token's
        low-res logits (B×4×h×w) and IoU (B×4)."""
        # onnxruntime computes every output, asked or not: the graph's own full-size `masks`
        # (this runtime upscales low-res logits with `Frame.logits`, the one pipeline) is made
        # 1×1 rather than the photo's size for every token
        feed = self.feed(features, coords, labels, mask_input, image_size=(1, 1))
        iou, low_res = self.decoder.run(["iou_predictions", "low_res_masks"], feed)
        return torch.from_numpy(low_res), torch.from_numpy(iou)

    def feed(self, features: Features, coords: np.ndarray, labels: np.ndarray,
             mask_input: np.ndarray | None, image_size: tuple[int, int]) -> dict[str, np.ndarray]:  # fmt: skip
        """The decoder graph's inputs; `image_size` (H, W) is what its `masks` come back at."""
        has_mask = mask_input is not None
        if mask_input is None:
            side = self.geometry.size // 4
            mask_input = np.zeros((len(coords), 1, side, side), np.float32)
        return {**{k: v.numpy() for k, v in features.items()},
                "point_coords": coords.astype(np.float32),
                "point_labels": labels.astype(np.float32),
                "mask_input": mask_input.astype(np.float32),
                "has_mask_input": np.array([float(has_mask)], np.float32),
                "orig_im_size": np.asarray(image_size, np.float32)}  # fmt: skip
