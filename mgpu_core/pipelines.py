"""The two input pipelines, with the same samples in the same order and the same augmentation semantics:

- DevicePipeline: the whole uint8 dataset on the training device; gather, crop/flip and normalize per batch there.
- DataLoaderPipeline: the classic torch DataLoader over PIL images with ToTensor + Normalize, the reference.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from .augment import random_crop_flip
from .config import TrainConfig
from .distributed import DistEnv
from .image_arrays import ImageArrays
from .sharding import EpochShardSampler, eval_indices, shard_indices

CROP_PADDING = 4
LAST_BATCH_POLICY = ("full steps only: each rank trains whole batches of batch_size and whole optimizer steps of "
                     "grad_accum batches; its shard's last partial batch, and batches that do not fill a step, are "
                     "left out, the same way at every device count")
"""The one last-batch policy of training (docs/reliability.md). A rank's shard is ceil(samples / world_size), so a
partial last batch would change size with the device count (down to 1 sample, which BatchNorm refuses) and make
epochs of different counts unequal; the samples actually trained are recorded per epoch instead."""


@dataclass(frozen=True)
class BatchSpec:
    """What both pipelines share for one split on one rank."""
    device: torch.device
    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool
    rank: int
    world_size: int
    seed: int
    train: bool
    augment: bool
    drop_last: bool = False
    """Skip the last partial batch. Training always does (LAST_BATCH_POLICY); evaluation never does."""
    image_size: int | None = None
    """Resize batches to this height and width (bilinear, after augmentation); None keeps the data's size."""

    def batch_starts(self, n: int) -> range:
        return range(0, n - self.batch_size + 1 if self.drop_last else n, self.batch_size)

    def augment_seed(self, epoch: int) -> int:
        """The seed of one epoch's augmentation on this rank: the same in every process and Python version."""
        return int(np.random.SeedSequence([self.seed, epoch, self.rank]).generate_state(1)[0]) & 0x7FFF_FFFF

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class DevicePipeline:
    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: BatchSpec) -> None:
        self.spec = spec
        self.images = torch.from_numpy(images).to(spec.device).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
        self.labels = torch.from_numpy(labels).to(spec.device)
        self.shift = torch.tensor(spec.mean, device=spec.device).view(1, 3, 1, 1) * 255
        self.scale = 1 / (torch.tensor(spec.std, device=spec.device).view(1, 3, 1, 1) * 255)
        self.generator = torch.Generator(device=spec.device)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Prepare the epoch's indices on the device here, so the timed loop issues no host-to-device copy."""
        s = self.spec
        n = len(self.labels)
        idx = shard_indices(n, epoch, s.seed, s.rank, s.world_size) if s.train else eval_indices(n, s.rank,
                                                                                                   s.world_size)
        self.order = idx.to(s.device)
        self.generator.manual_seed(s.augment_seed(epoch))

    def __len__(self) -> int:
        return len(self.spec.batch_starts(len(self.order)))

    @property
    def samples(self) -> int:
        """Samples this rank visits per epoch."""
        return len(self.order)

    @property
    def resident_bytes(self) -> int:
        """Bytes of the dataset held on the training device (uint8 images and int64 labels)."""
        return sum(t.numel() * t.element_size() for t in (self.images, self.labels))

    def __iter__(self):
        s = self.spec
        for start in s.batch_starts(len(self.order)):
            idx = self.order[start:start + s.batch_size]
            x = self.images[idx]
            if s.augment:
                x = random_crop_flip(x, self.generator, CROP_PADDING)
            x = (x.float() - self.shift) * self.scale
            if s.image_size is not None and x.shape[-1] != s.image_size:
                x = F.interpolate(x, size=(s.image_size, s.image_size), mode="bilinear", align_corners=False)
            yield s.layout(x), self.labels[idx]


class PILImages(Dataset):
    """uint8 arrays served as PIL images through torchvision transforms, as the classic tutorial does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


WORKER_TIMEOUT_S = 300.0
"""The longest a DataLoader worker may take for one batch (a batch takes well under a second of PIL work): beyond it
the run fails in one line (StuckWorkerError) instead of hanging while the other ranks wait in a collective."""
WORKER_PRELOAD = ["torch", "torchvision.transforms", "mgpu_core.pipelines"]
"""What the forkserver imports once, so that each worker it forks starts in milliseconds."""


class StuckWorkerError(RuntimeError):
    """A DataLoader worker produced no batch within WORKER_TIMEOUT_S; one line."""


def worker_context(distributed: bool):
    """How DataLoader workers start. In a process group, from a forkserver: a worker forked from the training
    process inherits locks that gloo's and the store's threads held at that instant (they run beside the main
    thread once a group exists), and such a worker can hang forever on its first lock, leaving its rank in
    evaluate and the others in the next all-reduce (about 1 run in 40 on CPU). The forkserver is a clean
    single-threaded process started once; workers fork from it. Without a group (single, dp): plain fork, as the
    classic tutorial on Linux does."""
    if not distributed or "forkserver" not in mp.get_all_start_methods():
        return None
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


class DataLoaderPipeline:
    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: BatchSpec, workers: int,
                 persistent_workers: bool = False, distributed: bool = False) -> None:
        self.spec = spec
        steps = []
        if spec.augment:
            steps = [transforms.RandomCrop(images.shape[1], padding=CROP_PADDING, padding_mode="reflect"),
                     transforms.RandomHorizontalFlip()]
        steps += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
        if spec.image_size is not None and spec.image_size != images.shape[1]:  # as the device pipeline resizes
            steps.append(transforms.Resize((spec.image_size, spec.image_size), antialias=False))
        tf = transforms.Compose(steps)
        n = len(labels)
        self.sampler = (EpochShardSampler(n, spec.seed, spec.rank, spec.world_size) if spec.train
                        else eval_indices(n, spec.rank, spec.world_size).tolist())
        self.generator = torch.Generator()
        self.workers = workers
        # By default not persistent, as in the classic tutorial: each epoch starts its workers (inside the timed
        # epoch) seeded from self.generator, so an epoch's augmentation depends on the seed and epoch only.
        # Persistent workers are seeded once and carry their random state from epoch to epoch (warm-up included).
        self.loader = DataLoader(PILImages(images, labels, tf), batch_size=spec.batch_size, sampler=self.sampler,
                                 num_workers=workers, pin_memory=spec.device.type == "cuda",
                                 drop_last=spec.drop_last, generator=self.generator,
                                 persistent_workers=persistent_workers and workers > 0,
                                 timeout=WORKER_TIMEOUT_S if workers else 0,
                                 multiprocessing_context=worker_context(distributed) if workers else None)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if self.spec.train:
            self.sampler.set_epoch(epoch)
        epoch_seed = self.spec.augment_seed(epoch)
        self.generator.manual_seed(epoch_seed)
        if self.workers == 0 and self.spec.augment:
            torch.manual_seed(epoch_seed)  # without workers the transforms draw from the global RNG

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def samples(self) -> int:
        """Samples this rank visits per epoch."""
        return len(self.sampler)

    resident_bytes = 0
    """The DataLoader keeps the dataset in host memory: nothing of it resides on the training device."""

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            try:
                x, y = next(batches)
            except StopIteration:
                return
            except RuntimeError as exc:
                if "timed out" not in str(exc):
                    raise
                raise StuckWorkerError(f"a DataLoader worker gave no batch within {WORKER_TIMEOUT_S:g} s (stuck "
                                       "worker); the configuration fails rather than hang") from None
            yield (self.spec.layout(x.to(self.spec.device, non_blocking=True)),
                   y.to(self.spec.device, non_blocking=True))


def last_batch_size(pipeline: DevicePipeline | DataLoaderPipeline) -> int | None:
    """Samples in an epoch's last batch when it is smaller than the others (its own shape for cuDNN's autotuner and
    the allocator), else None."""
    starts = pipeline.spec.batch_starts(pipeline.samples)
    if not starts:
        return None
    size = min(pipeline.spec.batch_size, pipeline.samples - starts[-1])
    return size if size < pipeline.spec.batch_size else None


def build_pipelines(cfg: TrainConfig, data: ImageArrays, env: DistEnv):
    """(train, test) pipelines for this rank. The process batch is batch_size x devices_per_process (dp splits it)."""
    mean, std = data.channel_stats()

    def spec(train: bool, batch: int) -> BatchSpec:
        return BatchSpec(device=env.device, batch_size=batch * cfg.devices_per_process, mean=mean, std=std,
                         channels_last=cfg.channels_last, rank=env.rank, world_size=env.world_size, seed=cfg.seed,
                         train=train, augment=cfg.hparams.augment and train, drop_last=train,  # LAST_BATCH_POLICY
                         image_size=cfg.image_size)

    if cfg.pipeline == "device":
        return (DevicePipeline(data.train_x, data.train_y, spec(True, cfg.batch_size)),
                DevicePipeline(data.test_x, data.test_y, spec(False, cfg.eval_batch_size)))
    return (DataLoaderPipeline(data.train_x, data.train_y, spec(True, cfg.batch_size), cfg.workers,
                               cfg.persistent_workers, env.distributed),
            DataLoaderPipeline(data.test_x, data.test_y, spec(False, cfg.eval_batch_size), cfg.workers,
                               cfg.persistent_workers, env.distributed))
