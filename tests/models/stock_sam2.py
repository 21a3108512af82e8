"""Stock sam2 objects for tests that hold samexp's SAM 2.1 path against the package's own."""

from __future__ import annotations

import warnings


def stock_predictor(sam):
    """Stock SAM2ImagePredictor on `sam`; it hard-codes the feature sizes of a 1024 px model, so
    they are set for the model's own size (the tiny one runs at 256 px)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    with warnings.catch_warnings():  # SAM2Transforms uses torch.jit.script (deprecated in torch)
        warnings.simplefilter("ignore")
        predictor = SAM2ImagePredictor(sam)
    s = sam.image_size
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return predictor
