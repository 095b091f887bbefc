"""The trainer's configuration: one typed dataclass, validated on construction; the CLI is derived from it."""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

from .errors import ConfigError
from .names import DISTRIBUTED_MODES, Mode, check_model
from .recipe import RECIPE_FIELDS, Recipe, resolve_recipe

CommHook = Literal["none", "bf16", "fp16", "powersgd"]
FsdpWrap = Literal["layer", "model"]
Pipeline = Literal["device", "dataloader"]
DatasetName = Literal["auto", "cifar10", "synthetic"]
DeviceKind = Literal["auto", "cuda", "cpu"]
Precision = Literal["fp32", "bf16"]
OptimizerName = Literal["adam", "adamw", "sgd"]
RecipeName = Literal["reference", "classic"]
Schedule = Literal["constant", "cosine", "linear"]
LrScaling = Literal["none", "linear", "sqrt"]


@dataclass(frozen=True)
class TrainConfig:
    mode: Mode = "single"
    """Parallel mode: single (one device, no wrapper), dp (nn.DataParallel, one process driving --dp-gpus GPUs),
    ddp (DistributedDataParallel, one process per device, started by torchrun), fsdp (FSDP2's fully_shard:
    parameters, gradients and optimizer state sharded over the ranks, started by torchrun)."""

    dp_gpus: int = field(default=1, metadata={"aliases": ("--devices",)})
    """GPUs driven by the one nn.DataParallel process (dp only). single uses 1; ddp takes its world size from
    torchrun."""

    device: DeviceKind = "auto"
    """Device type: auto (CUDA when available, else CPU), cuda or cpu."""

    model: str = "simplecnn"
    """simplecnn (the classic experiment, 32x32 only), a torchvision classifier (resnet18, resnet50,
    mobilenet_v3_small, vit_b_16; untrained) or your own factory as package.module:callable (called with
    num_classes, must return an nn.Module)."""

    image_size: int = 32
    """Input height and width. CIFAR-10 is resized on the device when it differs from 32; the synthetic set is
    generated at this size (224 for ImageNet-like studies without a download)."""

    sync_bn: bool = field(default=False, metadata={"only": ("ddp",), "axis": ("ddp",), "label": "sync-bn"})
    """ddp only: convert BatchNorm layers to SyncBatchNorm, so every rank normalizes over the global batch rather
    than its own (recorded, and drawn as its own series). torch's SyncBatchNorm syncs the host once per BatchNorm
    layer in every forward, and that cost is part of these rows; a model without BatchNorm is refused (a sweep
    skips it): it would be plain ddp under another label."""

    grad_accum: int = field(default=1, metadata={"axis": DISTRIBUTED_MODES, "label": "accum {}"})
    """Micro-batches per optimizer step: gradients of K batches accumulate (under ddp all but the last under
    no_sync, under fsdp without gradient sync), so one step communicates once; the global batch is batch_size x
    devices x K and the learning rate scales with it."""

    ddp_bucket_mb: float = field(default=25.0, metadata={"only": ("ddp",), "axis": ("ddp",), "label": "bucket {:g}MB"})
    """ddp only: DistributedDataParallel's bucket_cap_mb, the size of the gradient buckets all-reduced together."""

    ddp_static_graph: bool = field(default=False, metadata={"only": ("ddp",), "axis": ("ddp",),
                                                            "label": "static-graph"})
    """ddp only: DistributedDataParallel's static_graph (the set of used parameters never changes)."""

    ddp_grad_as_bucket_view: bool = field(default=False, metadata={"only": ("ddp",), "axis": ("ddp",),
                                                                   "label": "bucket-view"})
    """ddp only: gradient_as_bucket_view (gradients are views into the buckets: one copy less per step)."""

    ddp_comm_hook: CommHook = field(default="none", metadata={"only": ("ddp",), "axis": ("ddp",), "label": "{} hook"})
    """ddp only: gradient compression with torch's own hooks: bf16 or fp16 (all-reduce in half precision), or
    powersgd (low-rank, error feedback; rank powersgd_rank, warm-started)."""

    powersgd_rank: int = field(default=2, metadata={"only": ("ddp",), "label": "rank {}"})
    """PowerSGD's matrix approximation rank (ddp_comm_hook powersgd)."""

    fsdp_wrap: FsdpWrap = field(default="layer", metadata={"only": ("fsdp",), "axis": ("fsdp",), "label": "{}-wrap"})
    """fsdp only: shard every layer that owns parameters, then the root (layer), or the whole model as one unit
    (model)."""

    dataset: DatasetName = "auto"
    """auto: CIFAR-10 when found or downloadable, else synthetic with a notice; cifar10: CIFAR-10 or an error;
    synthetic: a learnable CIFAR-shaped set generated from the seed."""

    data_dir: str | None = None
    """CIFAR-10 location: a folder with cifar-10-batches-py/, or with train/<class>/ and test/<class>/ images, or a
    .tar.gz of such a tree. Default ~/.cache/mgpu-bench/cifar10, where downloads also land."""

    cache_dir: str | None = None
    """Where decoded image folders are cached as uint8 arrays. Default ~/.cache/mgpu-bench."""

    download: bool = True
    """Try torchvision's CIFAR-10 download (bounded by a short timeout) when no local copy is found."""

    synthetic_train_size: int = 50_000
    """Training samples of the synthetic set."""

    synthetic_test_size: int = 10_000
    """Test samples of the synthetic set."""

    train_samples: int | None = None
    """Train on a seeded random subset of this many samples (default: the whole training set)."""

    pipeline: Pipeline = "device"
    """device: uint8 data resident on the training device, augmentation per batch there; dataloader: the classic
    torch DataLoader over PIL images with ToTensor + Normalize."""

    workers: int = 2
    """DataLoader worker processes per rank (dataloader pipeline only)."""

    persistent_workers: bool = False
    """Keep DataLoader workers alive across epochs. Off by default, as in the classic tutorial: workers then start
    anew inside every timed epoch, and that start-up is part of the epoch time."""

    batch_size: int = 128
    """Samples per device per step: single 128, dp 128 x devices split across replicas, ddp 128 on each rank."""

    eval_batch_size: int = 1000
    """Samples per device per evaluation step."""

    epochs: int = 1
    """Timed training epochs."""

    warmup_steps: int = 10
    """Untimed warm-up steps run first (kernel selection, allocator, workers); the model and optimizer are
    restored afterwards, so warm-up changes timings only, never the trained weights."""

    warmup_epochs: int = 0
    """Untimed whole epochs of warm-up, run before warmup_steps; restored the same way. (Not the learning-rate
    ramp: that is lr_ramp_epochs.)"""

    recipe: RecipeName = "reference"
    """Training recipe: reference (tuned for >= 80% at global batch 128-512, see docs/recipes.md) or classic (the
    seed experiment: Adam 1e-3, no augmentation). The fields below left unset (None) take the recipe's values;
    the resolved values are `hparams`."""

    optimizer: OptimizerName | None = None
    """adam, adamw, or sgd (momentum 0.9, Nesterov)."""

    lr: float | None = None
    """Peak learning rate at global batch 128; lr_scaling adapts it to the run's global batch."""

    lr_scaling: LrScaling | None = None
    """How the learning rate follows the global batch B: none, linear (x B/128) or sqrt (x sqrt(B/128))."""

    schedule: Schedule | None = None
    """Learning-rate shape after warm-up: constant, cosine or linear decay to zero at the last step."""

    lr_ramp_epochs: float | None = field(default=None, metadata={"aliases": ("--lr-warmup-epochs",)})
    """Epochs of the learning-rate ramp: linear from near zero to the peak (not the untimed warm-up steps)."""

    weight_decay: float | None = None
    """Weight decay on weights (not biases)."""

    label_smoothing: float | None = None
    """Label smoothing of the training loss."""

    augment: bool | None = None
    """Random crop (reflect padding 4) and horizontal flip of training images."""

    precision: Precision = "fp32"
    """Training arithmetic: fp32, or bf16 autocast (CUDA; on CPU only fast with AMX, see the README)."""

    channels_last: bool = True
    """Keep activations and weights in channels_last memory format: faster in every CPU measurement (README), and
    the layout cuDNN's tensor-core convolutions want."""

    fused: bool = field(default=True, metadata={"label": "unfused"})  # fsdp's sharded parameters take no fused step
    """Fused optimizer step: one kernel over all parameters instead of a loop of small ones."""

    cudnn_benchmark: bool = True
    """Let cuDNN time its convolution algorithms once and keep the fastest (CUDA only)."""

    flush_denormal: bool = True
    """CPU: flush denormal floats to zero (torch.set_flush_denormal), in every process alike, so timings measure
    arithmetic, not the microcode assists x86 takes on denormals, which depend on the weights and can dominate CPU
    timings (docs/trust.md). No effect on CUDA kernels."""

    keep_freed_memory: bool = True
    """CPU: glibc malloc keeps the blocks a step frees for the next step (mgpu_core.host_memory: fixed mmap and trim
    thresholds), in every process alike, so an epoch's time does not depend on what the process allocated before it
    (a first epoch on real CIFAR-10 page-faulted its activations every step: 46 against 33 ms, docs/trust.md).
    No effect on CUDA memory, nor where the C library is not glibc."""

    compile: bool = False
    """torch.compile the model. Compilation happens in warm-up and is reported as compile_s, never inside an epoch;
    every step has the same shape (training never runs a partial batch: pipelines.LAST_BATCH_POLICY)."""

    threads: int | None = None
    """CPU threads per process (default: usable cores divided by the processes on this node)."""

    seed: int = 0
    """Seed for weights, shuffling, augmentation and the synthetic set."""

    dist_timeout_s: float = 600.0
    """Timeout of collectives, so a dead or stuck rank ends the run instead of hanging it."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        if self.recipe not in RECIPE_NAMES:
            _fail("recipe", f"must be one of {', '.join(RECIPE_NAMES)}", self.recipe)
        for f in fields(self):
            value = getattr(self, f.name)
            hint = hints[f.name]
            if typing.get_origin(hint) in (typing.Union, types.UnionType) and value is not None:
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            allowed = typing.get_args(hint)
            if typing.get_origin(hint) is Literal and value not in allowed:
                _fail(f.name, f"must be one of {', '.join(allowed)}", value)
            if isinstance(value, float) and not math.isfinite(value):
                _fail(f.name, "must be a finite number", value)
        for name in ("dp_gpus", "synthetic_train_size", "synthetic_test_size", "batch_size", "eval_batch_size",
                     "epochs", "image_size", "grad_accum", "powersgd_rank"):
            _at_least(name, getattr(self, name), 1)
        for name in ("workers", "warmup_steps", "warmup_epochs", "seed"):
            _at_least(name, getattr(self, name), 0)
        for name in ("train_samples", "threads"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        check_model(self.model, self.image_size)
        if not self.ddp_bucket_mb > 0:
            _fail("ddp_bucket_mb", "must be > 0", self.ddp_bucket_mb)
        for name, modes in MODE_ONLY.items():
            if getattr(self, name) != DEFAULTS[name] and self.mode not in modes:
                _fail(name, f"applies to {' and '.join(modes)} only, not {self.mode}", getattr(self, name))
        if self.dataset == "synthetic" and self.data_dir is not None:  # a flag that changes nothing is refused
            _fail("data_dir", "has no effect with --dataset synthetic (drop one of them)", self.data_dir)
        if self.persistent_workers and (self.pipeline != "dataloader" or self.workers == 0):  # nothing to keep alive
            _fail("persistent_workers", "has no effect without DataLoader workers (the dataloader pipeline with "
                  f"--workers > 0; got --pipeline {self.pipeline}, --workers {self.workers})", True)
        if self.seed >= 2**63:
            _fail("seed", "must be below 2**63", self.seed)
        hp = self.hparams
        if not hp.lr > 0:
            _fail("lr", "must be > 0", hp.lr)
        if not hp.lr_ramp_epochs >= 0:
            _fail("lr_ramp_epochs", "must be >= 0", hp.lr_ramp_epochs)
        if not hp.weight_decay >= 0:
            _fail("weight_decay", "must be >= 0", hp.weight_decay)
        if not 0 <= hp.label_smoothing < 1:
            _fail("label_smoothing", "must be in [0, 1)", hp.label_smoothing)
        if not 0 < self.dist_timeout_s <= MAX_DIST_TIMEOUT_S:
            _fail("dist_timeout_s", f"must be in (0, {MAX_DIST_TIMEOUT_S:g}] seconds", self.dist_timeout_s)
        if self.mode != "dp" and self.dp_gpus != 1:
            _fail("dp_gpus", f"only dp drives several devices from one process; {self.mode} needs 1", self.dp_gpus)
        if self.fused and self.mode == "fsdp":
            _fail("fused", "fused optimizers do not take FSDP's sharded parameters; use --no-fused", self.fused)
        if self.compile and self.mode in ("dp", "fsdp"):
            _fail("compile", f"torch.compile of {self.mode} is not supported here; use single or ddp", self.compile)
        if self.compile and self.warmup_steps + self.warmup_epochs == 0:
            _fail("warmup_steps", "compile needs at least one warm-up step, so that compiling stays off the clock", 0)
        if self.mode == "dp" and self.device == "cpu":
            _fail("mode", "dp needs CUDA devices (nn.DataParallel does nothing on CPU); use ddp", self.mode)
        if self.ddp_static_graph and self.grad_accum > 1:  # a fix would silently stop all-reducing
            _fail("ddp_static_graph", "does not work with grad_accum > 1 (pytorch/pytorch#143580: static_graph "
                  f"breaks no_sync); got grad_accum {self.grad_accum}", self.ddp_static_graph)

    @functools.cached_property
    def hparams(self) -> Recipe:
        """The recipe's values with this config's overrides applied (works on a frozen dataclass: cached_property
        writes the instance dict directly)."""
        return resolve_recipe(self.recipe, {name: getattr(self, name) for name in RECIPE_FIELDS})

    def for_mode(self, mode: str, **changes) -> TrainConfig:
        """This configuration in `mode`: the settings of other modes' wrappers go back to their defaults (a sweep
        template carries every mode's settings)."""
        reset = {name: DEFAULTS[name] for name, modes in MODE_ONLY.items() if mode not in modes}
        if mode == "fsdp":
            reset["fused"] = False  # fused optimizers do not take fsdp's sharded parameters
        return replace(self, mode=mode, **(reset | changes))

    def unchecked_for_mode(self, mode: str, **changes) -> TrainConfig:
        """for_mode without validation: only for the record of a configuration the sweep refuses before it runs
        (its ConfigError is the skip reason), so that record keeps its place, label and study."""
        cfg = object.__new__(TrainConfig)
        values = asdict(self) | {"mode": mode} | {name: DEFAULTS[name] for name, modes in MODE_ONLY.items()
                                                  if mode not in modes}
        values |= {"fused": False} if mode == "fsdp" else {}
        for name, value in (values | changes).items():
            object.__setattr__(cfg, name, value)
        return cfg

    @property
    def devices_per_process(self) -> int:
        return self.dp_gpus if self.mode == "dp" else 1

    def to_dict(self) -> dict:
        """Every field, with the recipe's values resolved: what a result record stores."""
        return asdict(self) | asdict(self.hparams)


RECIPE_NAMES: tuple[str, ...] = typing.get_args(RecipeName)
DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
MODE_ONLY = {f.name: f.metadata["only"] for f in fields(TrainConfig) if "only" in f.metadata}
"""Settings that belong to one mode's wrapper (field metadata "only"): another mode refuses a value other than the
default."""
AXES = {f.name: f.metadata["axis"] for f in fields(TrainConfig) if "axis" in f.metadata}
"""The study axes (field metadata "axis"): settings a sweep takes as comma lists, each value its own configuration
of the modes named (bench.run.axes)."""
VARIANT_LABELS = {f.name: f.metadata["label"] for f in fields(TrainConfig) if "label" in f.metadata}
"""Settings that set a series apart within one study (field metadata "label": the axes, and what a mode implies),
with how a value other than the default reads in tables, legends and file names: a bool's words, or a format of
the value."""
MAX_DIST_TIMEOUT_S = 7 * 24 * 3600.0
"""A week: longer is surely a typo (and beyond what timedelta arithmetic in the process group accepts)."""


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(name, f"must be an integer >= {low}", value)


def _fail(name: str, why: str, value: object) -> typing.NoReturn:
    raise ConfigError(f"{name}: {why} (got {value!r})")
