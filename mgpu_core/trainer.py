"""Training and evaluation: the timed epoch, exact distributed evaluation, warm-up kept off the clock."""

from __future__ import annotations

import copy
import math
import resource
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .config import ConfigError, TrainConfig
from .distributed import DistEnv, all_gather_to_host, all_reduce_to_host, barrier, device_synchronize
from .hardware import bf16_supported, device_name
from .image_arrays import DataError, ImageArrays
from .model_check import ModelCheck, build_and_check, logits_of
from .models import flops_per_sample, gradient_bytes, parameter_count, peak_tflops
from .overlap import ddp_overlap
from .parallel import gradient_sync, reset_comm_hook_state, unwrap, wrap_model
from .pipelines import build_pipelines, last_batch_size
from .recipe import global_batch, lr_multiplier, lr_scale, make_optimizer


class DivergedError(RuntimeError):
    """The training loss became non-finite (NaN or inf); the run is a failure, not a result."""


@dataclass
class EpochRecord:
    epoch: int
    time_s: float
    """Wall time of the timed loop on the slowest rank (MAX over ranks)."""
    samples: int
    """Samples actually trained, summed over ranks: whole steps only (pipelines.LAST_BATCH_POLICY); includes
    DistributedSampler's wrap-around padding."""
    steps: int
    """Optimizer steps (the same on every rank)."""
    samples_per_s: float
    samples_per_s_per_device: float
    loss: float
    """Mean training loss per sample."""
    train_acc: float
    rank_times_s: list[float] = field(default_factory=list)
    """Each rank's own wall time of the timed loop, in rank order (time_s is their MAX)."""
    rank_data_wait_s: list[float] = field(default_factory=list)
    """Each rank's host time inside the data fetch (next batch) during the timed loop: on CUDA with the device
    pipeline this is launch time, not device work; with DataLoader workers it is the wait for their batches."""


@dataclass
class EvalRecord:
    epoch: int
    accuracy: float
    loss: float
    correct: int
    samples: int
    """Test samples counted, summed over ranks: each exactly once."""
    time_s: float


@dataclass
class RunResult:
    config: dict
    dataset: dict
    device_type: str
    device_name: str
    devices: int
    """Devices trained on: world_size x devices per process."""
    world_size: int
    nodes: int
    """Hosts the process group spans (torchrun's WORLD_SIZE / LOCAL_WORLD_SIZE)."""
    backend: str | None
    threads: int
    global_batch: int
    """Samples per optimizer step, over all devices."""
    lr_peak: float
    """The recipe's learning rate after scaling to global_batch."""
    model: str
    parameters: int
    gradient_bytes: int
    """What DDP all-reduces each step."""
    flops_per_sample: float
    """FLOPs of one training sample, forward and backward (torch's FlopCounterMode)."""
    peak_tflops: float | None
    """The device's datasheet peak for this precision (None: unknown GPU, or CPU)."""
    setup_s: float
    """Model, optimizer and pipeline construction (data to the device included)."""
    compile_s: float
    """torch.compile's first step (0 without --compile), kept out of warmup_s and of every epoch."""
    warmup_s: float
    warmup_steps: int
    epochs: list[EpochRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    peak_memory_bytes: list[int] = field(default_factory=list)
    """Per rank: the peak of the timed training epochs (reset after warm-up and before each epoch, so neither the
    FLOP-counting probe, warm-up nor evaluation counts): CUDA's max allocated memory on its device(s), or on CPU
    the process's peak resident set size. The resident dataset is included (resident_data_bytes)."""
    resident_data_bytes: int = 0
    """Bytes of the dataset (train and test) held on the training device by this rank (device pipeline); 0 when
    the DataLoader keeps it in host memory."""
    ddp_overlap: dict | None = None
    """ddp: DDP's own averages of backward compute, communication and their overlap (mgpu_core.overlap)."""
    model_check: dict = field(default_factory=dict)
    """The up-front model check (mgpu_core.model_check.ModelCheck): how the factory was called, which output rule
    gave the logits, parameters without gradient (ddp then finds unused parameters), tied parameters."""
    rank_threads: list[int] = field(default_factory=list)
    """Per rank: the intra-op threads it trained with (torch.get_num_threads at the end)."""

    @property
    def final_val_acc(self) -> float:
        return self.evals[-1].accuracy

    def to_dict(self) -> dict:
        return asdict(self) | {"final_val_acc": self.final_val_acc}


class StepRunner:
    """One training step after another; per-step statistics stay on the device (no host sync anywhere here: the
    scheduler only sets Python floats on the optimizer)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LambdaLR, cfg: TrainConfig,
                 env: DistEnv) -> None:
        self.model, self.optimizer, self.scheduler, self.env = model, optimizer, scheduler, env
        self.data_wait_s = 0.0
        """Host seconds spent fetching batches in the last run (two host clock reads per step, no device sync)."""
        self.label_smoothing = cfg.hparams.label_smoothing
        self.accum = cfg.grad_accum
        self.model_info: ModelInfo | None = None
        """Parameters, gradient bytes and FLOPs of the unwrapped model (set by prepare)."""
        self.region = nullcontext  # bench.profile sets torch.profiler.record_function to name the step's parts
        self.autocast = lambda: torch.autocast(env.device.type, dtype=torch.bfloat16,
                                               enabled=cfg.precision == "bf16")

    def run(self, batches: Iterable, max_steps: int | None = None):
        """Train on `batches` (at most max_steps optimizer steps of grad_accum micro-batches each; micro-batches
        at the end that do not fill a step are left out). Returns (loss_sum, correct) as device tensors, and the
        host-known (samples, steps)."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.env.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.env.device)
        samples = steps = micro = 0
        usable = len(batches) // self.accum * self.accum if hasattr(batches, "__len__") else None
        self.data_wait_s = 0.0
        batches = iter(batches)
        while steps != max_steps and micro != usable:
            fetch_start = time.perf_counter()
            with self.region("data"):
                batch = next(batches, None)
            self.data_wait_s += time.perf_counter() - fetch_start
            if batch is None:
                break
            x, y = batch
            last = micro % self.accum == self.accum - 1
            with gradient_sync(self.model, last):
                with self.region("forward"), self.autocast():
                    logits = logits_of(self.model(x))
                    loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                with self.region("backward"):
                    if micro % self.accum == 0:
                        self.optimizer.zero_grad(set_to_none=True)
                    (loss / self.accum).backward()  # the mean over the K micro-batches of the step
            if last:
                with self.region("optimizer"):
                    self.optimizer.step()
                    self.scheduler.step()
                steps += 1
            loss_sum += loss.detach().float() * y.shape[0]
            correct += (logits.argmax(1) == y).sum()
            samples += y.shape[0]
            micro += 1
        return loss_sum, correct, samples, steps


def train_epoch(runner: StepRunner, pipeline, epoch: int) -> EpochRecord:
    """One timed epoch. The clock starts after a barrier and a synchronize, stops after a synchronize; the
    statistics are reduced (time MAX, counts SUM) and read on the host only after the clock stops."""
    env = runner.env
    pipeline.set_epoch(epoch)
    barrier(env)
    device_synchronize(env)
    start = time.perf_counter()
    loss_sum, correct, samples, steps = runner.run(pipeline)
    device_synchronize(env)
    elapsed = time.perf_counter() - start
    [time_s] = all_reduce_to_host(env, [elapsed], dist.ReduceOp.MAX)
    loss_sum, correct, samples = all_reduce_to_host(env, [loss_sum, correct, samples], dist.ReduceOp.SUM)
    per_rank = all_gather_to_host(env, [elapsed, runner.data_wait_s])
    return EpochRecord(epoch=epoch, time_s=time_s, samples=int(samples), steps=steps,
                       samples_per_s=samples / time_s, samples_per_s_per_device=samples / time_s / env.total_devices,
                       loss=loss_sum / samples, train_acc=correct / samples,
                       rank_times_s=[r[0] for r in per_rank], rank_data_wait_s=[r[1] for r in per_rank])


@torch.no_grad()
def evaluate(model: nn.Module, pipeline, cfg: TrainConfig, env: DistEnv, epoch: int) -> EvalRecord:
    """Exact accuracy over the test set: disjoint shards per rank, counts summed. DDP's wrapper is bypassed because
    ranks hold unequal shards and evaluation needs no gradient sync; dp keeps its wrapper to use all its GPUs."""
    net = model if cfg.mode == "dp" else unwrap(model)
    net.eval()
    device_synchronize(env)
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    correct = torch.zeros((), dtype=torch.int64, device=env.device)
    samples = 0
    batches = lockstep_batches(pipeline, cfg, env) if cfg.mode == "fsdp" else pipeline
    with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        for x, y in batches:
            logits = logits_of(net(x))
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            samples += y.shape[0]
    loss_sum, correct, samples = all_reduce_to_host(env, [loss_sum, correct, samples], dist.ReduceOp.SUM)
    [time_s] = all_reduce_to_host(env, [time.perf_counter() - start], dist.ReduceOp.MAX)
    return EvalRecord(epoch=epoch, accuracy=correct / samples, loss=loss_sum / samples, correct=int(correct),
                      samples=int(samples), time_s=time_s)


def lockstep_batches(pipeline, cfg: TrainConfig, env: DistEnv):
    """fsdp's forward is a collective (it all-gathers parameters), so every rank must run as many as the others:
    a rank whose shard ran out runs empty batches (no samples, nothing counted) until the longest is done."""
    [most] = all_reduce_to_host(env, [len(pipeline)], dist.ReduceOp.MAX)
    empty = torch.empty(0, 3, cfg.image_size, cfg.image_size, device=env.device)
    if cfg.channels_last:
        empty = empty.contiguous(memory_format=torch.channels_last)
    no_labels = torch.empty(0, dtype=torch.int64, device=env.device)
    yield from pipeline
    for _ in range(int(most) - len(pipeline)):
        yield empty, no_labels


def warm_up(runner: StepRunner, pipeline, cfg: TrainConfig) -> tuple[float, float, int]:
    """Untimed steps (compilation, kernel selection, allocator, worker start-up), one of them at the shape of the
    epoch's last, smaller batch where there is one, then the model, optimizer,
    schedule and comm hook state are put back as they were, so the timed epochs train exactly as they would have
    without warm-up. Returns (compile_s, warmup_s, steps): the first step's time is compile_s when compiling,
    apart from the rest."""
    if cfg.warmup_epochs == 0 and cfg.warmup_steps == 0:
        return 0.0, 0.0, 0
    env = runner.env
    model = unwrap(runner.model)
    saved = [copy.deepcopy(x.state_dict()) for x in (model, runner.optimizer, runner.scheduler)]
    barrier(env)
    device_synchronize(env)
    start = time.perf_counter()
    steps = 0
    compiled_at = start
    if cfg.compile:
        pipeline.set_epoch(0)
        steps += runner.run(pipeline, max_steps=1)[3]  # traces and compiles forward and backward
        device_synchronize(env)
        compiled_at = time.perf_counter()
    for epoch in range(cfg.warmup_epochs):
        pipeline.set_epoch(epoch)
        steps += runner.run(pipeline)[3]
    if cfg.warmup_steps:
        pipeline.set_epoch(0)
        steps += runner.run(pipeline, max_steps=cfg.warmup_steps)[3]
    partial = last_batch_size(pipeline)
    if partial:  # the epoch's smaller last batch: tuned here, not inside the first timed epoch
        pipeline.set_epoch(0)
        x, y = next(iter(pipeline))
        steps += runner.run([(x[:partial], y[:partial])] * cfg.grad_accum)[3]
    device_synchronize(env)
    compile_s, warmup_s = all_reduce_to_host(env, [compiled_at - start, time.perf_counter() - compiled_at],
                                             dist.ReduceOp.MAX)
    for target, state in zip((model, runner.optimizer, runner.scheduler), saved, strict=True):
        target.load_state_dict(state)
    reset_comm_hook_state(runner.model)
    return compile_s, warmup_s, steps


def make_runner(model: nn.Module, cfg: TrainConfig, env: DistEnv, steps_per_epoch: int) -> StepRunner:
    """Optimizer and schedule of cfg's recipe, the learning rate scaled to the run's global batch (micro-batches
    of accumulation included); `steps_per_epoch` counts batches, the schedule counts optimizer steps."""
    hp = cfg.hparams
    samples_per_step = global_batch(cfg.batch_size, env.total_devices, cfg.grad_accum)
    optimizer = make_optimizer(model, hp.optimizer, hp.lr * lr_scale(hp.lr_scaling, samples_per_step),
                               hp.weight_decay, fused=cfg.fused)
    steps_per_epoch = max(1, steps_per_epoch // cfg.grad_accum)  # optimizer steps, not micro-batches
    schedule = lr_multiplier(hp.schedule, round(hp.lr_ramp_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch)
    return StepRunner(model, optimizer, LambdaLR(optimizer, schedule), cfg, env)


def prepare(cfg: TrainConfig, env: DistEnv, data: ImageArrays):
    """(runner, train pipeline, test pipeline): the wrapped model, its optimizer and schedule, and the data."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every mode
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    bare, check = build_and_check(cfg, len(data.classes), data.image_size, env.device)
    info = ModelInfo(parameter_count(bare), gradient_bytes(bare), flops_per_sample(bare, cfg.image_size, env.device),
                     check)
    model = wrap_model(bare, cfg, env, find_unused=bool(check.unused_parameters))
    train_pipe, test_pipe = build_pipelines(cfg, data, env)
    check_full_step(cfg, env, len(data.train_y), len(train_pipe))
    runner = make_runner(model, cfg, env, len(train_pipe))
    runner.model_info = info
    return runner, train_pipe, test_pipe


def check_inputs_finite(pipeline, epoch: int) -> None:
    """A DataError where the pipeline's normalized inputs hold NaN or inf (broken statistics or pixels): then a
    non-finite loss is not the learning rate's fault. Run off the clock, after a non-finite loss."""
    pipeline.set_epoch(epoch)
    for x, _ in pipeline:
        if not torch.isfinite(x).all():
            raise DataError(f"the training inputs hold non-finite values (NaN or inf) in epoch {epoch + 1}: the "
                            "data or its normalization is broken, not the learning rate")


def check_full_step(cfg: TrainConfig, env: DistEnv, train_samples: int, batches: int) -> None:
    """Under LAST_BATCH_POLICY an epoch trains only whole optimizer steps: a ConfigError (one line, before any
    step) where there is not one."""
    if batches // cfg.grad_accum == 0:
        per_rank = math.ceil(train_samples / env.world_size)
        step = cfg.batch_size * cfg.devices_per_process * cfg.grad_accum
        lower = "--grad-accum or --batch-size" if cfg.grad_accum > 1 else "--batch-size, or give more training data"
        ranks = f"each of {env.world_size} ranks has" if env.world_size > 1 else "the one rank has"
        raise ConfigError(f"one optimizer step takes {step} samples per rank (batch_size "
                          f"{cfg.batch_size * cfg.devices_per_process} x grad_accum {cfg.grad_accum}); {ranks} "
                          f"{per_rank} of the {train_samples} training samples: not one full step per epoch; "
                          f"lower {lower}")


@dataclass(frozen=True)
class ModelInfo:
    """What a model is, counted on the whole (unsharded) model before wrapping."""
    parameters: int
    gradient_bytes: int
    flops_per_sample: float
    check: ModelCheck | None = None


def reset_peak_memory(env: DistEnv) -> None:
    """Start a new peak: CUDA's allocator statistics of the devices this rank drives, or on Linux the process's
    resident high-water mark (/proc/self/clear_refs, "5"). A host call, no device sync."""
    if env.device.type == "cuda":
        for index in range(env.device.index, env.device.index + env.local_devices):
            torch.cuda.reset_peak_memory_stats(index)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux: the peak stays the process's since start (ru_maxrss)


def peak_memory_bytes(env: DistEnv) -> int:
    """This rank's peak memory since the last reset_peak_memory: CUDA's max allocated on the devices it drives,
    else the resident high-water mark (Linux VmHWM; elsewhere ru_maxrss, since process start)."""
    if env.device.type == "cuda":
        return sum(torch.cuda.max_memory_allocated(i) for i in range(env.device.index,
                                                                      env.device.index + env.local_devices))
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB, macOS: bytes


def train_and_evaluate(cfg: TrainConfig, env: DistEnv, data: ImageArrays,
                       log: Callable[[str], None] = print) -> tuple[RunResult, nn.Module]:
    """Warm up, then train cfg.epochs timed epochs, evaluating after each one off the clock."""
    if cfg.precision == "bf16" and not bf16_supported(env.device):
        raise ConfigError(f"precision: bf16 is not supported on {device_name(env.device)}")
    start = time.perf_counter()
    runner, train_pipe, test_pipe = prepare(cfg, env, data)
    model = runner.model
    device_synchronize(env)
    setup_s = time.perf_counter() - start

    info = runner.model_info
    flops = info.flops_per_sample
    compile_s, warmup_s, warmup_steps = warm_up(runner, train_pipe, cfg)
    result = RunResult(model=cfg.model, parameters=info.parameters, gradient_bytes=info.gradient_bytes,
                       flops_per_sample=flops, peak_tflops=peak_tflops(device_name(env.device), cfg.precision)
                       if env.device.type == "cuda" else None,
                       config=cfg.to_dict(), dataset=data.describe(), device_type=env.device.type,
                       device_name=device_name(env.device), devices=env.total_devices, world_size=env.world_size,
                       nodes=max(1, env.world_size // env.local_world_size), backend=env.backend,
                       threads=env.threads,
                       global_batch=global_batch(cfg.batch_size, env.total_devices, cfg.grad_accum),
                       lr_peak=runner.scheduler.base_lrs[0], setup_s=setup_s, compile_s=compile_s,
                       warmup_s=warmup_s, warmup_steps=warmup_steps,
                       resident_data_bytes=sum(getattr(p, "resident_bytes", 0) for p in (train_pipe, test_pipe)),
                       model_check=info.check.to_dict())
    if info.check.unused_parameters:
        log(f"notice: {len(info.check.unused_parameters)} parameter(s) get no gradient "
            f"({', '.join(info.check.unused_parameters[:3])}{', ...' if len(info.check.unused_parameters) > 3 else ''})"
            + ("; ddp runs with find_unused_parameters (recorded; it costs a graph walk per step)"
               if cfg.mode == "ddp" else ""))
    log(f"warm-up {warmup_steps} steps in {warmup_s:.2f} s" + (f" + compile {compile_s:.1f} s" if cfg.compile else "")
        + " (not timed, weights restored)")
    peak = 0
    for epoch in range(cfg.epochs):
        reset_peak_memory(env)  # off the clock: train_epoch's barrier and synchronize come after it
        record = train_epoch(runner, train_pipe, epoch)
        peak = max(peak, peak_memory_bytes(env))  # before evaluation, whose batches are larger
        evaluation = evaluate(model, test_pipe, cfg, env, epoch)
        if not math.isfinite(record.loss):  # read after the clock stopped: no host sync inside the loop
            check_inputs_finite(train_pipe, epoch)  # non-finite inputs are a data problem, not a divergence
            raise DivergedError(f"training loss became non-finite ({record.loss}) in epoch {epoch + 1}; lower --lr")
        result.epochs.append(record)
        result.evals.append(evaluation)
        log(f"epoch {epoch + 1}/{cfg.epochs}  {record.time_s:.2f} s  {record.samples_per_s:,.0f} samples/s "
            f"({record.samples_per_s_per_device:,.0f}/device, "
            f"{record.samples_per_s_per_device * flops / 1e12:.3g} TFLOP/s/device)  loss {record.loss:.4f}  "
            f"train acc {record.train_acc:.2%}  val acc {evaluation.accuracy:.2%}")
    result.peak_memory_bytes = [int(m) for [m] in all_gather_to_host(env, [peak])]
    result.ddp_overlap = ddp_overlap(model)
    result.rank_threads = [int(t) for [t] in all_gather_to_host(env, [torch.get_num_threads()])]
    return result, model
