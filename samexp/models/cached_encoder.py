"""The image encoder behind the embedding cache, for runs whose encoder does not train.

Keys cover the base weights and architecture, the exact model input and the attention kernel, so cached
features (every level the family's decoder reads) are only ever reused where the encoder would
have computed the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from samexp.config import distributed
from samexp.config.distributed import World
from samexp.models.embedding_cache import EmbeddingCache, cache_key
from samexp.models.family import Features
from samexp.models.seam import encode


class CachedEncoder:
    def __init__(self, cache: EmbeddingCache, base_identity: str, extra: str = "") -> None:
        self.cache = cache
        self.base_identity = base_identity  # BaseModel.identity: weights and architecture
        self.extra = extra

    def __call__(
        self, sam: nn.Module, images: torch.Tensor, input_sizes: list[tuple[int, int]]
    ) -> Features:
        host = images.cpu()
        keys = [
            cache_key(self.base_identity, host[i], input_sizes[i], extra=self.extra)
            for i in range(len(host))
        ]

        def compute(index: list[int]) -> Features:
            with torch.no_grad():
                features = encode(sam, images[index], [input_sizes[i] for i in index])
            return {k: v.cpu() for k, v in features.items()}

        return self.cache.get_or_compute(keys, compute, device=images.device, dtype=torch.float32)

    def fill(
        self,
        sam: nn.Module,
        share: DataLoader,
        device: torch.device,
        world: World,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        """Encode this rank's `share` of a split into the disk cache, then wait for the others.

        Under torchrun each epoch deals the train images out afresh, so without this a rank
        would encode images another rank is encoding at the same moment; after it, every epoch
        reads every image from the shared cache, whichever rank draws it.
        """
        for batch in tqdm(share, desc="encoding", leave=False, disable=not world.is_main):
            batch = batch.to(device)
            with autocast():
                self(sam, batch.images, batch.input_sizes)
        distributed.barrier(world)
