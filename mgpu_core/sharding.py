"""Which samples each rank sees: per-epoch shuffled shards for training, exact disjoint shards for evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def shard_indices(n: int, epoch: int, seed: int, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s training indices for `epoch`, exactly as DistributedSampler(shuffle=True, drop_last=False)
    yields them: one seeded permutation per epoch, padded by wrap-around to a multiple of world_size, strided."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    order = torch.randperm(n, generator=g)
    total = math.ceil(n / world_size) * world_size
    order = order.repeat(math.ceil(total / n))[:total]
    return order[rank:total:world_size]


def eval_indices(n: int, rank: int, world_size: int) -> torch.Tensor:
    """Disjoint strided shards with no padding, so every test sample is counted exactly once across ranks."""
    return torch.arange(rank, n, world_size)


class EpochShardSampler(Sampler[int]):
    """shard_indices as a Sampler, so the DataLoader pipeline visits the very samples the device pipeline does."""

    def __init__(self, n: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(shard_indices(self.n, self.epoch, self.seed, self.rank, self.world_size).tolist())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)
