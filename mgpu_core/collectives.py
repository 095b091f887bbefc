"""What the collective benchmark measures on one device count, in every rank: all-reduce over a size sweep plus
the model's exact gradient size and DDP's bucket size, broadcast and reduce at the model's size (what
nn.DataParallel does every step), all-gather and reduce-scatter at the model's size (what fsdp does), and the
model's compute-only step time with the same process layout. Every
result is checked (a wrong sum is a failure, not a number). Times are the median over iterations of the slowest
rank; algbw and busbw follow nccl-tests (bench.explain.scaling_model).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import DistEnv, all_reduce_to_host, barrier, device_synchronize
from mgpu_core.models import build_model, gradient_bytes
from mgpu_core.pipelines import build_pipelines
from mgpu_core.synthetic import NUM_CLASSES, synthetic_cifar
from mgpu_core.trainer import make_runner

from .bandwidth import algbw, busbw

DDP_BUCKET_BYTES = 25 * 1024 * 1024
"""DistributedDataParallel's default bucket_cap_mb (25 MiB)."""


class CommCheckError(RuntimeError):
    """A collective returned a wrong result."""


@dataclass(frozen=True)
class CommConfig:
    gpus: tuple[int, ...] | None = None
    """Device counts to measure (launcher only; default 2, 4, ... up to the visible GPUs, or 2 CPU processes)."""

    min_bytes: int = 4096
    """Smallest all-reduce of the size sweep."""

    max_bytes: int = 256 * 1024 * 1024
    """Largest all-reduce of the size sweep (sizes double from min_bytes)."""

    iters: int = 20
    """Timed iterations per size at most (fewer for large sizes: see budget_s)."""

    warmup_iters: int = 3
    """Untimed iterations per size first (connection set-up, algorithm selection)."""

    budget_s: float = 0.5
    """Time per size after which no further timed iteration starts (at least 3 run)."""

    sharded: bool = True
    """Also time all-gather and reduce-scatter at the model's size (what fsdp does every step)."""

    compute_steps: int = 10
    """Timed compute-only training steps (after 3 untimed) for the step time the scaling model starts from."""

    profile: bool = True
    """Also measure the point prediction's inputs: the compute-only step of one rank alone (same run), when each
    gradient becomes ready (the compute profile), and contention κ (compute beside a collective)."""

    timeout: float = 600.0
    """Seconds one device count may run (launcher only)."""

    def __post_init__(self) -> None:
        for name in ("min_bytes", "max_bytes", "iters", "compute_steps"):
            if isinstance(getattr(self, name), bool) or getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be an integer >= 1 (got {getattr(self, name)!r})")
        if self.warmup_iters < 0:
            raise ConfigError(f"warmup_iters: must be >= 0 (got {self.warmup_iters})")
        if self.max_bytes < self.min_bytes:
            raise ConfigError(f"max_bytes: must be >= min_bytes (got {self.max_bytes} < {self.min_bytes})")
        for name in ("budget_s", "timeout"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name}: must be a finite number of seconds > 0 (got {getattr(self, name)})")
        if self.gpus is not None and (not self.gpus or min(self.gpus) < 2):
            raise ConfigError(f"gpus: collectives need at least 2 devices per count (got {self.gpus!r})")


def message_sizes(comm: CommConfig, grad_bytes: int) -> list[int]:
    """min_bytes doubling to max_bytes, plus the model's gradient size and DDP's bucket size, in 4-byte elements."""
    sizes, size = set(), comm.min_bytes
    while size <= comm.max_bytes:
        sizes.add(size)
        size *= 2
    sizes |= {grad_bytes, DDP_BUCKET_BYTES}
    return sorted(s - s % 4 for s in sizes if s >= 4)


def _buffers(op: str, nbytes: int, env: DistEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of one collective moving `nbytes` in total (all-gather's output, reduce-scatter's input)."""
    n = env.world_size
    elements = max(n, nbytes // 4 // n * n)
    if op == "all_gather":
        return torch.empty(elements // n, device=env.device), torch.empty(elements, device=env.device)
    if op == "reduce_scatter":
        return torch.empty(elements, device=env.device), torch.empty(elements // n, device=env.device)
    buf = torch.empty(elements, device=env.device)
    return buf, buf


def _issue(op: str, inp: torch.Tensor, out: torch.Tensor) -> None:
    if op == "all_reduce":
        dist.all_reduce(out)
    elif op == "broadcast":
        dist.broadcast(out, src=0)
    elif op == "reduce":
        dist.reduce(out, dst=0)
    elif op == "all_gather":
        dist.all_gather_into_tensor(out, inp)
    else:
        dist.reduce_scatter_tensor(out, inp)


def _correct(op: str, out: torch.Tensor, rank: int, n: int) -> bool:
    """Whether `out` holds what `op` must produce when rank r filled its input with r + 1."""
    if op in ("all_reduce", "reduce_scatter") or (op == "reduce" and rank == 0):
        return bool(torch.all(out == n * (n + 1) / 2))
    if op == "broadcast":
        return bool(torch.all(out == 1))
    if op == "all_gather":
        expected = torch.arange(1, n + 1, dtype=out.dtype, device=out.device)[:, None]
        return bool(torch.all(out.view(n, -1) == expected))
    return True  # reduce: only the root receives


def time_collective(env: DistEnv, op: str, nbytes: int, comm: CommConfig) -> float:
    """Median over iterations of the slowest rank's time for one `op` of `nbytes`; raises CommCheckError on a wrong
    result (checked after every iteration, off the clock)."""
    inp, out = _buffers(op, nbytes, env)
    times, bad = [], 0
    budget_end = None
    for i in range(comm.warmup_iters + comm.iters):
        inp.fill_(env.rank + 1)
        barrier(env)
        device_synchronize(env)
        start = time.perf_counter()
        _issue(op, inp, out)
        device_synchronize(env)
        elapsed = time.perf_counter() - start
        bad += int(not _correct(op, out, env.rank, env.world_size))
        if i >= comm.warmup_iters:
            times.append(elapsed)
            budget_end = budget_end or time.perf_counter() + comm.budget_s
        # every rank takes the same decision: the slowest rank's clock decides whether to go on
        [over] = all_reduce_to_host(env, [float(budget_end is not None and time.perf_counter() > budget_end)],
                                    dist.ReduceOp.MAX)
        if over and len(times) >= 3:
            break
    [wrong] = all_reduce_to_host(env, [bad], dist.ReduceOp.SUM)
    if wrong:
        raise CommCheckError(f"{op} of {nbytes} bytes returned a wrong result on {int(wrong)} rank-iteration(s)")
    slowest = all_reduce_to_host(env, times, dist.ReduceOp.MAX)
    return statistics.median(slowest)


WARMUP_STEPS = 3
"""Untimed compute-only steps before the timed ones."""


def _compute_setup(cfg: TrainConfig, env: DistEnv, steps: int):
    """(runner, batches, bare model) of the compute-only step: the training recipe without communication, fed by
    the training pipeline (the device pipeline's per-step augmentation and layout, or the DataLoader) over
    synthetic images at the dataset's native 32 px, so each step does the per-step work training does. `batches`
    is the pipeline, sized for WARMUP_STEPS + `steps` steps on every rank."""
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark  # as training sets it
    model = build_model(cfg.model, NUM_CLASSES, cfg.image_size).to(env.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = make_runner(model, cfg, env, steps_per_epoch=steps)
    samples = cfg.batch_size * cfg.devices_per_process * (WARMUP_STEPS + steps) * env.world_size * cfg.grad_accum
    data = synthetic_cifar(samples, 1, cfg.seed, 32)
    batches, _ = build_pipelines(cfg, data, env)
    return runner, batches, model


def compute_step_time(cfg: TrainConfig, env: DistEnv, steps: int) -> float:
    """Compute-only training step (no gradient communication, the pipeline's per-step work included) on every rank
    at once, as the ranks share the host(s) in training; the slowest rank's mean step time."""
    runner, batches, _ = _compute_setup(cfg, env, steps)
    runner.run(batches, max_steps=WARMUP_STEPS)
    barrier(env)
    device_synchronize(env)
    start = time.perf_counter()
    runner.run(batches, max_steps=steps)
    device_synchronize(env)
    [slowest] = all_reduce_to_host(env, [(time.perf_counter() - start) / steps], dist.ReduceOp.MAX)
    return slowest


def compute_step_time_alone(cfg: TrainConfig, env: DistEnv, steps: int) -> float:
    """The compute-only step of rank 0 computing alone while the other ranks wait (the 1-device baseline measured
    in the same run and with the same settings as the N-rank step, so the band and the point compare like with
    like); its mean step time, the same on every rank."""
    step_s = 0.0
    if env.rank == 0:
        runner, batches, _ = _compute_setup(cfg, env, steps)
        runner.run(batches, max_steps=WARMUP_STEPS)
        device_synchronize(env)
        start = time.perf_counter()
        runner.run(batches, max_steps=steps)
        device_synchronize(env)
        step_s = (time.perf_counter() - start) / steps
    [step_s] = all_reduce_to_host(env, [step_s], dist.ReduceOp.MAX)
    return step_s


def compute_profile(cfg: TrainConfig, env: DistEnv, steps: int = 3) -> dict:
    """When each gradient becomes ready in the compute-only step, every rank computing as in training; measured
    off the clock (its own steps, with post-accumulate-grad hooks and region marks, a device sync at each mark on
    CUDA). Per parameter in definition order: name, gradient bytes, ready time from the step's start (median over
    `steps`); plus forward_s (backward's start), backward_end_s and step_s (optimizer's end). This rank's view."""
    cfg = dataclasses.replace(cfg, grad_accum=1)
    runner, batches, model = _compute_setup(cfg, env, steps)
    runner.run(batches, max_steps=2)
    batch = next(iter(batches))
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    clock = [0.0]
    ready: list[float] = [math.nan] * len(params)
    marks: dict[str, float] = {}

    def now() -> float:
        device_synchronize(env)
        return time.perf_counter() - clock[0]

    def hook_for(i: int):
        def hook(_p: torch.Tensor) -> None:
            ready[i] = now()
        return hook

    @contextlib.contextmanager
    def region(name: str):
        if name == "forward":
            device_synchronize(env)
            clock[0] = time.perf_counter()
        marks[name + "_start"] = now()
        yield
        marks[name + "_end"] = now()

    handles = [p.register_post_accumulate_grad_hook(hook_for(i)) for i, (_, p) in enumerate(params)]
    runner.region = region
    samples = []
    try:
        for _ in range(steps):
            runner.run([batch])
            samples.append((list(ready), marks["backward_start"], marks["backward_end"], marks["optimizer_end"]))
    finally:
        for h in handles:
            h.remove()
    return {"param_names": [name for name, _ in params],
            "param_bytes": [p.numel() * p.element_size() for _, p in params],
            "ready_s": [statistics.median(s[0][i] for s in samples) for i in range(len(params))],
            "forward_s": statistics.median(s[1] for s in samples),
            "backward_end_s": statistics.median(s[2] for s in samples),
            "step_s": statistics.median(s[3] for s in samples), "steps": steps}


CONTENTION_COVER = 3.0
"""The collectives queued beside the compute steps last about this many times the steps' time alone, so they run
for the whole of it."""
CONTENTION_MAX_OPS = 500


def contention(cfg: TrainConfig, env: DistEnv, steps: int, nbytes: int, collective_s: float) -> dict:
    """κ: how much slower the compute-only step runs while all-reduces of `nbytes` (each `collective_s` alone) run
    beside it, every rank computing; both step times are the slowest rank's. The all-reduces are queued
    asynchronously before the timed steps and waited for after them (off the clock)."""
    runner, batches, _ = _compute_setup(cfg, env, steps)
    runner.run(batches, max_steps=WARMUP_STEPS)

    def timed() -> float:
        barrier(env)
        device_synchronize(env)
        start = time.perf_counter()
        runner.run(batches, max_steps=steps)
        device_synchronize(env)
        return (time.perf_counter() - start) / steps

    [alone] = all_reduce_to_host(env, [timed()], dist.ReduceOp.MAX)
    ops = min(CONTENTION_MAX_OPS, max(1, math.ceil(CONTENTION_COVER * alone * steps / max(collective_s, 1e-9))))
    inp, out = _buffers("all_reduce", nbytes, env)
    barrier(env)
    works = [dist.all_reduce(out, async_op=True) for _ in range(ops)]
    device_synchronize(env)
    timed_start = time.perf_counter()
    runner.run(batches, max_steps=steps)
    device_synchronize(env)
    timed_local = (time.perf_counter() - timed_start) / steps
    pending = sum(not w.is_completed() for w in works)
    for w in works:
        w.wait()
    [beside, pending] = all_reduce_to_host(env, [timed_local, pending], dist.ReduceOp.MAX)
    del inp
    return {"kappa": beside / alone if alone > 0 else 1.0, "step_alone_s": alone, "step_beside_s": beside,
            "collectives": ops, "bytes": nbytes, "still_running_after": int(pending)}


def measure(cfg: TrainConfig, comm: CommConfig, env: DistEnv) -> dict:
    """Everything one device count measures; the same dict on every rank."""
    grad_bytes = gradient_bytes(build_model(cfg.model, NUM_CLASSES, cfg.image_size))
    n = env.world_size
    rows = []
    at_model = [("broadcast", [grad_bytes]), ("reduce", [grad_bytes])]
    if comm.sharded:
        at_model += [("all_gather", [grad_bytes]), ("reduce_scatter", [grad_bytes])]
    for op, sizes in [("all_reduce", message_sizes(comm, grad_bytes)), *at_model]:
        for nbytes in sizes:
            t = time_collective(env, op, nbytes, comm)
            rows.append({"op": op, "bytes": nbytes, "time_s": t, "algbw_bytes_per_s": algbw(nbytes, t),
                         "busbw_bytes_per_s": busbw(op, nbytes, t, n), "check": "ok"})
    result = {"devices": n, "backend": env.backend, "device_type": env.device.type, "threads": env.threads,
              "nodes": max(1, n // env.local_world_size), "grad_bytes": grad_bytes, "bucket_bytes": DDP_BUCKET_BYTES,
              "model": cfg.model, "image_size": cfg.image_size,
              "batch_per_device": cfg.batch_size, "precision": cfg.precision,
              "compute_step_s": compute_step_time(cfg, env, comm.compute_steps), "rows": rows}
    if comm.profile:
        result.update(prediction_inputs(cfg, comm, env, grad_bytes, rows))
    return result


def prediction_inputs(cfg: TrainConfig, comm: CommConfig, env: DistEnv, grad_bytes: int, rows: list[dict]) -> dict:
    """The point prediction's inputs (bench.explain.prediction): the 1-rank compute-only step of this run, rank
    0's compute profile, and contention κ beside an all-reduce of the model's gradients."""
    [at_model] = [r["time_s"] for r in rows if r["op"] == "all_reduce" and r["bytes"] == grad_bytes - grad_bytes % 4]
    return {"compute_step_1_s": compute_step_time_alone(cfg, env, comm.compute_steps),
            "compute_profile": compute_profile(cfg, env),
            "contention": contention(cfg, env, comm.compute_steps, grad_bytes, at_model)}


def table(results: list[dict]) -> str:
    """One row per device count, operation and size: time, algbw, busbw, check; the model's size marked."""
    lines = ["| devices | op | size | time ms | algbw GB/s | busbw GB/s | check |", "|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            mark = " (model)" if r["bytes"] == res["grad_bytes"] else (
                " (bucket)" if r["bytes"] == res["bucket_bytes"] else "")
            lines.append(f"| {res['devices']} {res['device_type']} | {r['op']} | {human_bytes(r['bytes'])}{mark} | "
                         f"{r['time_s'] * 1e3:.3f} | {r['algbw_bytes_per_s'] / 1e9:.3f} | "
                         f"{r['busbw_bytes_per_s'] / 1e9:.3f} | {r['check']} |")
    steps = ", ".join(f"{r['devices']} ranks {r['compute_step_s'] * 1e3:.1f} ms" + (
        f" (1 rank alone, same run: {r['compute_step_1_s'] * 1e3:.1f} ms; contention κ "
        f"{r['contention']['kappa']:.2f})" if r.get("compute_step_1_s") else "") for r in results)
    return "\n".join(lines) + f"\n\ncompute-only step (slowest rank): {steps}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} GiB"


