"""Predict with a fine-tuned SAM through the segment_anything API (`SamPredictor`'s, over the image
pipeline training and evaluation use, for prompts; `SamAutomaticMaskGenerator` for everything):
`python -m samexp.predict run_id=<id> image=a.jpg ...`."""

from samexp.predict.config import PredictConfig
from samexp.predict.run import predict

__all__ = ["PredictConfig", "predict"]
