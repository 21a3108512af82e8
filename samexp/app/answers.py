"""What the page asks of the models, as plain functions of an image (so the API and the tests call
them without a browser): a prompt through both models, automatic masks, the learned classes. Each
answer carries its pictures and the time it took, the encoder's share apart (0 once cached)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from samexp.app.models import CachedPredictor, Pair, synchronize
from samexp.config.errors import SamexpError
from samexp.predict.auto import generate, mask_generator, paint_auto
from samexp.predict.classes import decode_classes, paint_classes
from samexp.predict.config import AutoConfig, OverlayConfig
from samexp.predict.outputs import draw_prompts
from samexp.predict.prompted import Prediction, decode_prompts, panel
from samexp.predict.prompts import Prompts, check_inside, parse_prompts

MODELS = ("zero-shot", "fine-tuned")


def style(alpha: float) -> dict:
    """The overlay palette of `python -m samexp.predict`, at the page's opacity."""
    return {"colors": OverlayConfig().colors, "alpha": float(alpha)}


@dataclass
class Timing:
    encode_s: float  # 0 when the image's embedding was kept from an earlier answer
    decode_s: float

    def text(self) -> str:
        encoder = (
            "encoder cached" if self.encode_s == 0 else f"encoder {self.encode_s * 1e3:.0f} ms"
        )
        return f"{self.decode_s * 1e3:.0f} ms ({encoder})"


@dataclass
class Segmented:
    """Both models' answer to the same prompts on the same image."""

    prompts: Prompts
    predictions: dict[str, Prediction]
    timings: dict[str, Timing] = field(default_factory=dict)

    def pictures(self, image: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
        return {m: panel(image, p, self.prompts, style(alpha)) for m, p in self.predictions.items()}

    def scores(self) -> dict[str, list[float]]:
        """Each prompt's predicted IoU, per model."""
        return {m: [round(float(s), 4) for s in p.best()[1]] for m, p in self.predictions.items()}


def _predictors(pair: Pair) -> dict[str, CachedPredictor]:
    return {"zero-shot": pair.zero_shot, "fine-tuned": pair.finetuned}


def _encoded(predictor: CachedPredictor, image: np.ndarray, key: str | None) -> float:
    predictor.set_image(image, key=key)
    return predictor.last_encode_s


def segment(pair: Pair, image: np.ndarray, prompts: Prompts, key: str | None = None) -> Segmented:
    """`prompts` (original-image pixels) through zero-shot SAM and the fine-tuned model."""
    prompts = check_inside(prompts, "the image", *image.shape[:2])  # near-miss boxes clipped
    answer = Segmented(prompts, {})
    with pair.lock:
        for name, predictor in _predictors(pair).items():
            encode_s = _encoded(predictor, image, key)
            start = time.perf_counter()
            answer.predictions[name] = decode_prompts(predictor, prompts)
            synchronize(pair.device)
            answer.timings[name] = Timing(encode_s, time.perf_counter() - start)
    return answer


def auto_masks(pair: Pair, image: np.ndarray, points_per_side: int,
               alpha: float) -> tuple[dict[str, np.ndarray], dict[str, str]]:  # fmt: skip
    """Everything the family's automatic mask generator finds, per model: pictures and a summary
    line each.

    A photo larger than 1024 px is searched on a 1024 px copy (`auto.max_side` of predict: the
    stock generator would upscale every candidate to the photo first); the copy's embedding is
    kept like any image's, so the tab encodes once per photo and model too.
    """
    cfg = AutoConfig(points_per_side=points_per_side, max_side=1024)
    pictures, lines = {}, {}
    with pair.lock:
        for name, predictor in _predictors(pair).items():
            # its set_image: the kept embedding, not a new pass
            generator = mask_generator(predictor.model, cfg, predictor)
            start = time.perf_counter()
            anns = generate(generator, image, cfg.max_side)
            total = time.perf_counter() - start
            took = Timing(predictor.last_encode_s, total - predictor.last_encode_s)
            pictures[name] = paint_auto(image, anns, style(alpha))
            lines[name] = f"{len(anns)} masks · {took.text()}"
    return pictures, lines


def classes(pair: Pair, image: np.ndarray, alpha: float,
            key: str | None = None) -> tuple[np.ndarray, str]:  # fmt: skip
    """The fine-tuned model's learned classes, no prompt: a picture with its legend and a line of
    each class found with its predicted IoU."""
    if not pair.classes:
        raise SamexpError(f"{pair.source} was not trained with prompt=class_tokens: it has no "
                          "learned classes (give it a box or points, or use automatic masks)")  # fmt: skip
    with pair.lock:
        encode_s = _encoded(pair.finetuned, image, key)
        start = time.perf_counter()
        ids, scores = decode_classes(pair.finetuned)
        took = Timing(encode_s, time.perf_counter() - start)
    masks = [ids == k + 1 for k in range(len(pair.classes))]
    found = [
        f"{c} (pred. IoU {scores[k]:.3f})" for k, c in enumerate(pair.classes) if masks[k].any()
    ]
    line = f"{', '.join(found) or 'no class found'} · {took.text()}"
    return paint_classes(image, masks, pair.classes, style(alpha)), line


def prompts_drawn(
    image: np.ndarray, prompts: Prompts | None, corner: list[float] | None
) -> np.ndarray:
    """The image with the prompts so far, and a half-drawn box's first corner."""
    out = draw_prompts(image, prompts, style(0.5)["colors"]) if prompts is not None else image
    if corner is not None:
        out = draw_prompts(out, parse_prompts(points=[corner], labels=[1]), style(0.5)["colors"])
    return out
