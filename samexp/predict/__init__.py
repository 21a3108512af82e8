"""Predict with a fine-tuned SAM through the stock segment_anything API (`SamPredictor` for prompts,
`SamAutomaticMaskGenerator` for everything): `python -m samexp.predict run_id=<id> image=a.jpg ...`."""

from samexp.predict.config import PredictConfig
from samexp.predict.run import predict

__all__ = ["PredictConfig", "predict"]
