"""State behind the page: the models loaded for the runs people picked (shared by every browser
tab, a few at a time), and per tab the image and the prompts its clicks made."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from samexp.app.answers import Segmented
from samexp.app.models import Pair, load_pair
from samexp.predict.prompts import Prompts, parse_prompts

log = logging.getLogger(__name__)


class ClickMode(str, Enum):
    box = "box: click two corners"
    positive = "positive point"
    negative = "negative point"


@dataclass
class Clicks:
    """A box from two clicks (either diagonal) and any number of points; SAM takes both at once."""

    box: list[float] | None = None
    corner: list[float] | None = None  # a box's first click, waiting for the second
    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def click(self, x: float, y: float, mode: ClickMode) -> bool:
        """Add a click; whether the prompts are now complete enough to answer."""
        if mode is ClickMode.box:
            if self.corner is None:
                self.corner = [x, y]
                return False
            (x0, y0), self.corner = self.corner, None
            self.box = [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]
        else:
            self.points.append([x, y])
            self.labels.append(1 if mode is ClickMode.positive else 0)
        return self.prompts() is not None

    def prompts(self) -> Prompts | None:
        if self.box is None and not self.points:
            return None
        return parse_prompts(box=self.box, points=self.points or None,
                             labels=self.labels or None)  # fmt: skip


@dataclass
class Tab:
    """One browser tab's picture and prompts (gradio keeps one per session)."""

    source: Source | None = None  # the run or file whose models answer
    image: np.ndarray | None = None
    key: str | None = None  # the image's digest: its embedding's name in the cache
    name: str = ""
    clicks: Clicks = field(default_factory=Clicks)
    last: Segmented | None = None  # redrawn, not recomputed, when the opacity moves
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """A run of the store, or an adapter file."""

    run_id: str | None = None
    weights: str | None = None

    def __str__(self) -> str:
        return f"run {self.run_id}" if self.run_id else f"file {self.weights}"


class Models:
    """The pairs of models of the last `keep` sources picked, loaded once, shared by every tab."""

    def __init__(self, tracking_uri: str, checkpoint: str | None, device: str, attention: str,
                 keep: int = 2) -> None:  # fmt: skip
        self.tracking_uri, self.checkpoint = tracking_uri, checkpoint
        self.device, self.attention, self.keep = device, attention, keep
        self._pairs: OrderedDict[Source, Pair] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: Source) -> Pair:
        with self._lock:  # two tabs picking the same run load it once
            if source not in self._pairs:
                self._pairs[source] = load_pair(source.run_id, source.weights, self.tracking_uri,
                                                self.checkpoint, self.device, self.attention)  # fmt: skip
                while len(self._pairs) > self.keep:
                    dropped, _ = self._pairs.popitem(last=False)
                    log.info("unloaded %s (keeping the last %d picked)", dropped, self.keep)
            self._pairs.move_to_end(source)
            return self._pairs[source]
