"""The point prediction of one training step: an α-β model per collective and a replay of the step's timeline on
two streams, compute and communication. Pure: numbers in, numbers out (no torch, no files).

- α-β (Hockney's model, as in ASTRA-sim, Calculon and the JAX scaling book): a collective of b bytes takes
  α + β·b seconds; α and β are fitted per operation and device count to bench.comm's size sweep.
- The replay: DDP's buckets start at max(ready_i, end of bucket i-1) and take α + β·bytes_i; the step ends at
  max(end of backward, end of the last bucket) plus the optimizer (Li et al., "PyTorch Distributed", VLDB 2020,
  section 3.2; dPRO and Echo replay the same timeline). dp: a broadcast before and a reduce after the compute,
  nothing overlapped; fsdp: an all-gather before each unit's forward and backward, a reduce-scatter after each
  unit's backward, the next all-gather prefetched; gradient accumulation: K computes, one round of communication.
- Contention κ >= 1: compute runs κ times slower while a collective runs beside it (gloo spends CPU cores, NCCL
  spends SMs; Echo and Calculon model the same effect). Measured by the collective benchmark.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.records.units import plural

FIRST_BUCKET_BYTES = 1024 * 1024
"""With DDP's default bucket_cap_mb (none given), its first bucket closes at this size
(torch.distributed._DEFAULT_FIRST_BUCKET_BYTES, 1 MiB), so the first all-reduce starts early in backward; with
bucket_cap_mb given, as mgpu_core always gives it, the first bucket's limit is bucket_cap_mb too
(torch.nn.parallel.distributed's BucketCapacityConfig)."""


@dataclass(frozen=True)
class AlphaBeta:
    """time(b) = alpha_s + beta_s_per_byte * b for one collective at one device count; with a second size range
    (a latency-bound and a bandwidth-bound regime, as NCCL's protocols or a token-bucket-shaped link give), the
    larger of the two lines."""
    op: str
    devices: int
    alpha_s: float
    """Latency: the time of an empty message (seconds)."""
    beta_s_per_byte: float
    """Inverse bandwidth (seconds per byte of the message)."""
    geomean_rel_error: float = 0.0
    """exp(mean(log(1 + |fit - measured| / measured))) - 1 over the points the fit was made from."""
    points: int = 0
    """How many (size, time) points were fitted."""
    large_alpha_s: float | None = None
    """The large-message range's intercept (may be negative: a burst that goes through at line rate first)."""
    large_beta_s_per_byte: float | None = None
    """The large-message range's inverse bandwidth (>= beta_s_per_byte)."""
    break_bytes: float | None = None
    """The first size fitted by the large-message range."""

    def time_s(self, nbytes: float) -> float:
        """Predicted seconds for a collective of `nbytes` (0 bytes: nothing sent, 0 s)."""
        if nbytes <= 0:
            return 0.0
        small = self.alpha_s + self.beta_s_per_byte * nbytes
        if self.large_beta_s_per_byte is None:
            return small
        return max(small, self.large_alpha_s + self.large_beta_s_per_byte * nbytes)

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """The large messages' bandwidth (1/β)."""
        beta = self.large_beta_s_per_byte or self.beta_s_per_byte
        return 1 / beta if beta > 0 else math.inf


def _line(pts: list[tuple[float, float]], nonnegative: bool) -> tuple[float, float]:
    """(α, β) minimising sum(((α + β b) - t) / t)^2: relative errors weighted equally; with `nonnegative`, a negative
    α or β is refitted as 0."""
    s11 = sum(1 / t**2 for _, t in pts)
    s12 = sum(b / t**2 for b, t in pts)
    s22 = sum(b * b / t**2 for b, t in pts)
    r1 = sum(1 / t for _, t in pts)
    r2 = sum(b / t for b, t in pts)
    det = s11 * s22 - s12 * s12
    alpha, beta = ((r1 * s22 - r2 * s12) / det, (s11 * r2 - s12 * r1) / det) if det > 0 else (-1.0, -1.0)
    if nonnegative and (alpha < 0 or beta < 0):  # one parameter at 0: the other's one-dimensional least squares
        alpha, beta = (0.0, max(0.0, r2 / s22)) if alpha < 0 else (r1 / s11, 0.0)
    return alpha, beta


def _error(fit: AlphaBeta, pts: list[tuple[float, float]]) -> float:
    return math.expm1(sum(math.log1p(abs(fit.time_s(b) - t) / t) for b, t in pts) / len(pts))


def fit_alpha_beta(op: str, devices: int, sizes_bytes: Sequence[float], times_s: Sequence[float]) -> AlphaBeta:
    """Least squares of time = α + β·bytes over measured (size, time) points, relative errors weighted equally
    (each residual divided by its measured time, so the 4 KiB points count as much as the 256 MiB ones); α, β >= 0.
    Where two size ranges fit better (each of at least 2 points, the larger range's line steeper), the fit keeps
    both and predicts the larger of the two lines. Raises ValueError with fewer than 2 points of distinct sizes or
    a time <= 0."""
    pts = sorted((float(b), float(t)) for b, t in zip(sizes_bytes, times_s, strict=True))
    if len({b for b, _ in pts}) < 2:
        raise ValueError(f"{op} x{devices}: an α-β fit needs at least 2 distinct sizes "
                         f"(got {plural(len(pts), 'point')})")
    if any(t <= 0 or not math.isfinite(t) for _, t in pts):
        raise ValueError(f"{op} x{devices}: times must be finite and > 0")
    best = AlphaBeta(op, devices, *_line(pts, nonnegative=True), points=len(pts))
    best_error = _error(best, pts)
    for k in range(2, len(pts) - 1):
        if len({b for b, _ in pts[:k]}) < 2 or len({b for b, _ in pts[k:]}) < 2:
            continue
        small, large = _line(pts[:k], nonnegative=True), _line(pts[k:], nonnegative=False)
        if large[1] <= small[1]:
            continue
        fit = AlphaBeta(op, devices, *small, points=len(pts), large_alpha_s=large[0], large_beta_s_per_byte=large[1],
                        break_bytes=pts[k][0])
        error = _error(fit, pts)
        if error < best_error:
            best, best_error = fit, error
    return dataclasses.replace(best, geomean_rel_error=best_error)


@dataclass(frozen=True)
class MeasuredCollective:
    """A collective as measured: within the measured sizes, the time interpolated between the two neighbouring
    sizes (linear in log size and log time, as the sweep doubles its sizes); outside them, the α-β fit."""
    fit: AlphaBeta
    sizes_bytes: tuple[float, ...]
    times_s: tuple[float, ...]

    @property
    def alpha_s(self) -> float:
        return self.fit.alpha_s

    def time_s(self, nbytes: float) -> float:
        """Seconds for a collective of `nbytes` (0 bytes: 0 s)."""
        sizes, times = self.sizes_bytes, self.times_s
        if nbytes <= 0:
            return 0.0
        if not sizes or nbytes < sizes[0] or nbytes > sizes[-1]:
            return self.fit.time_s(nbytes)
        i = bisect.bisect_left(sizes, nbytes)
        if sizes[i] == nbytes:
            return times[i]
        (b0, t0), (b1, t1) = (sizes[i - 1], times[i - 1]), (sizes[i], times[i])
        share = math.log(nbytes / b0) / math.log(b1 / b0)
        return math.exp(math.log(t0) + share * math.log(t1 / t0))


def ddp_buckets(param_bytes: Sequence[int], cap_bytes: float,
                first_bytes: float = FIRST_BUCKET_BYTES) -> list[list[int]]:
    """DDP's bucket assignment: parameters in the order given (the order their gradients became ready, as DDP
    rebuilds its buckets after the first step) fill a bucket until it holds at least its limit, the first bucket's
    limit `first_bytes`, every later one's `cap_bytes` (torch's reducer.cpp, compute_bucket_assignment_by_size;
    one dtype and device). Returns the indices into `param_bytes` per bucket, in launch order."""
    buckets, current, size, limit = [], [], 0, first_bytes
    for i, nbytes in enumerate(param_bytes):
        current.append(i)
        size += nbytes
        if size >= limit:
            buckets.append(current)
            current, size, limit = [], 0, cap_bytes
    if current:
        buckets.append(current)
    return buckets


@dataclass(frozen=True)
class Task:
    """One piece of a step's timeline on one stream."""
    name: str
    stream: str
    """"compute" or "comm"; each stream runs its tasks one at a time, in the order given."""
    work_s: float
    """Seconds it takes alone (compute: without a collective beside it)."""
    after: tuple[str, ...] = ()
    """Tasks (on either stream) that must have ended before this one starts."""


@dataclass(frozen=True)
class Timeline:
    """When each task of a replayed step started and ended (seconds from the step's start)."""
    spans: dict[str, tuple[float, float]]

    @property
    def end_s(self) -> float:
        return max((end for _, end in self.spans.values()), default=0.0)

    def stream_busy_s(self, tasks: Sequence[Task], stream: str) -> float:
        return sum(self.spans[t.name][1] - self.spans[t.name][0] for t in tasks if t.stream == stream)


def simulate(tasks: Sequence[Task], kappa: float = 1.0) -> Timeline:
    """Run `tasks` on the two streams: a task starts when its stream is free and the tasks it waits for have
    ended; compute advances at 1/kappa of its speed while a collective runs. Raises ValueError on kappa < 1, a
    negative duration, or tasks that wait on each other (or on unknown names)."""
    if not kappa >= 1:
        raise ValueError(f"kappa must be >= 1 (got {kappa})")
    names = {t.name for t in tasks}
    if len(names) != len(tasks) or any(d not in names for t in tasks for d in t.after):
        raise ValueError("task names must be unique and every dependency a task")
    if any(t.work_s < 0 or not math.isfinite(t.work_s) for t in tasks):
        raise ValueError("task durations must be finite and >= 0")
    queues = {s: [t for t in tasks if t.stream == s] for s in ("compute", "comm")}
    if sum(len(q) for q in queues.values()) != len(tasks):
        raise ValueError("a task's stream must be 'compute' or 'comm'")
    spans: dict[str, tuple[float, float]] = {}
    started: dict[str, float] = {}
    running: dict[str, tuple[Task, float]] = {}  # stream -> (task, work left)
    now = 0.0
    while len(spans) < len(tasks):
        for stream, queue in queues.items():
            if stream not in running and queue and all(d in spans for d in queue[0].after):
                task = queue.pop(0)
                started[task.name] = now
                running[stream] = (task, task.work_s)
        if not running:
            raise ValueError("the tasks wait on each other: " + ", ".join(q[0].name for q in queues.values() if q))
        slow = kappa if "comm" in running else 1.0
        rates = {s: (1 / slow if s == "compute" else 1.0) for s in running}
        step = min(left / rates[s] for s, (_, left) in running.items())
        now += step
        for stream, (task, left) in list(running.items()):
            left -= step * rates[stream]
            if left <= 1e-12 * max(1.0, task.work_s):
                spans[task.name] = (started[task.name], now)
                del running[stream]
            else:
                running[stream] = (task, left)
    return Timeline(spans)


@dataclass(frozen=True)
class ComputeProfile:
    """The compute-only step (no communication) of one rank, measured at the device count it predicts for."""
    step_s: float
    """Forward, backward and optimizer (seconds)."""
    backward_end_s: float
    """When the last gradient was ready, from the step's start (the optimizer takes step_s - backward_end_s)."""
    ready_s: tuple[float, ...]
    """When each parameter's gradient became ready, from the step's start, in ready order."""
    param_bytes: tuple[int, ...]
    """Each parameter's gradient size, in the same order."""
    forward_s: float = 0.0
    """When backward started (forward and loss), from the step's start."""

    def __post_init__(self) -> None:
        if len(self.ready_s) != len(self.param_bytes):
            raise ValueError("ready_s and param_bytes must have one entry per parameter")
        if not 0 <= self.forward_s <= self.backward_end_s <= self.step_s:
            raise ValueError(f"need 0 <= forward_s <= backward_end_s <= step_s (got {self.forward_s}, "
                             f"{self.backward_end_s}, {self.step_s})")

    @property
    def optimizer_s(self) -> float:
        return self.step_s - self.backward_end_s

    @property
    def grad_bytes(self) -> int:
        return sum(self.param_bytes)

    def scaled(self, step_s: float) -> ComputeProfile:
        """The same profile stretched to another step time (every phase in proportion)."""
        f = step_s / self.step_s if self.step_s else 1.0
        return ComputeProfile(step_s, self.backward_end_s * f, tuple(r * f for r in self.ready_s), self.param_bytes,
                              self.forward_s * f)


@dataclass(frozen=True)
class Replay:
    """A replayed step: its time and how much of its communication was hidden behind compute."""
    step_s: float
    compute_s: float
    """The compute-only step it started from (K micro-batches with accumulation)."""
    comm_s: float
    """Sum of the collectives' times."""
    exposed_comm_s: float
    """step_s - compute_s: communication not hidden, plus compute slowed by contention."""
    buckets: tuple[tuple[float, float, float, int], ...] = field(default_factory=tuple)
    """ddp: (ready, start, end, bytes) per bucket."""

    @property
    def overlap_share(self) -> float:
        """Share of the communication hidden behind compute (1: all, 0: none)."""
        return 1 - min(1.0, max(0.0, self.exposed_comm_s) / self.comm_s) if self.comm_s else 1.0


def _accum(profile: ComputeProfile, grad_accum: int) -> list[Task]:
    """The K-1 micro-batches before the last one: forward and backward without communication."""
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1 (got {grad_accum})")
    return [Task("micro", "compute", profile.backward_end_s * (grad_accum - 1))] if grad_accum > 1 else []


def ddp_step(profile: ComputeProfile, all_reduce: AlphaBeta | MeasuredCollective, cap_bytes: float, kappa: float = 1.0,
             grad_accum: int = 1, bytes_scale: float = 1.0, first_bytes: float | None = None) -> Replay:
    """One DDP step: backward split where each bucket becomes ready; bucket i's all-reduce (α + β·bytes_i, bytes
    times `bytes_scale` for a bf16/fp16 hook) starts when it is ready and bucket i-1's has ended; the optimizer
    after the end of backward and of the last bucket. With grad_accum K, K-1 micro-batches without communication
    come first. `first_bytes`: the first bucket's limit (None: cap_bytes, as with bucket_cap_mb given)."""
    tasks = _accum(profile, grad_accum)
    prev = tasks[-1].name if tasks else None
    done_at = 0.0
    bucket_info = []
    for i, members in enumerate(ddp_buckets(profile.param_bytes, cap_bytes, first_bytes or cap_bytes)):
        ready = max(profile.ready_s[j] for j in members)
        nbytes = sum(profile.param_bytes[j] for j in members)
        seg = f"bwd{i}"
        tasks.append(Task(seg, "compute", max(0.0, ready - done_at), (prev,) if prev else ()))
        tasks.append(Task(f"bucket{i}", "comm", all_reduce.time_s(nbytes * bytes_scale), (seg,)))
        bucket_info.append((seg, f"bucket{i}", nbytes))
        done_at, prev = max(done_at, ready), seg
    tasks.append(Task("bwd_end", "compute", max(0.0, profile.backward_end_s - done_at), (prev,) if prev else ()))
    last = [f"bucket{len(bucket_info) - 1}"] if bucket_info else []
    tasks.append(Task("optimizer", "compute", profile.optimizer_s, ("bwd_end", *last)))
    line = simulate(tasks, kappa)
    compute = profile.step_s + profile.backward_end_s * (grad_accum - 1)
    buckets = tuple((line.spans[seg][1], *line.spans[b], n) for seg, b, n in bucket_info)
    return Replay(line.end_s, compute, line.stream_busy_s(tasks, "comm"), line.end_s - compute, buckets)


def dp_step(compute_s: float, broadcast: AlphaBeta, reduce: AlphaBeta, grad_bytes: float,
            grad_accum: int = 1) -> Replay:
    """One nn.DataParallel step: the weights broadcast, K computes, the gradients reduced; nothing overlapped
    (one process drives every device, in sequence)."""
    tasks = [Task("broadcast", "comm", broadcast.time_s(grad_bytes)),
             Task("compute", "compute", compute_s * grad_accum, ("broadcast",)),
             Task("reduce", "comm", reduce.time_s(grad_bytes), ("compute",))]
    line = simulate(tasks)
    return Replay(line.end_s, compute_s * grad_accum, line.stream_busy_s(tasks, "comm"),
                  line.end_s - compute_s * grad_accum)


def fsdp_step(profile: ComputeProfile, unit_bytes: Sequence[float], all_gather: AlphaBeta,
              reduce_scatter: AlphaBeta, kappa: float = 1.0, grad_accum: int = 1) -> Replay:
    """One fsdp step over units (in forward order; their parameter bytes, unsharded): forward runs each unit
    after its all-gather, the next all-gather prefetched; backward, in reverse, all-gathers each unit again
    before its backward and reduce-scatters its gradients after (the next unit's all-gather issued first, as
    FSDP2 prefetches); the optimizer after the last reduce-scatter. Compute per unit is the profile's forward and
    backward split in proportion to the units' bytes. With accumulation every micro-batch gathers again and only
    the last reduce-scatters (FSDP2 without no_sync's unsharded gradients)."""
    if not unit_bytes or sum(unit_bytes) <= 0:
        raise ValueError("fsdp needs at least one unit with parameters")
    total = float(sum(unit_bytes))
    share = [b / total for b in unit_bytes]
    forward_s, backward_s = profile.forward_s, profile.backward_end_s - profile.forward_s
    tasks: list[Task] = []
    prev: tuple[str, ...] = ()  # the compute task before the next one
    order = list(reversed(range(len(unit_bytes))))
    for k in range(grad_accum):
        for u in range(len(unit_bytes)):  # the stream order prefetches every forward all-gather
            tasks.append(Task(f"ag_f{k}.{u}", "comm", all_gather.time_s(unit_bytes[u]), prev if u == 0 else ()))
            tasks.append(Task(f"fwd{k}.{u}", "compute", forward_s * share[u], (f"ag_f{k}.{u}", *prev)))
            prev = (f"fwd{k}.{u}",)
        for i, u in enumerate(order):
            if i == 0:
                tasks.append(Task(f"ag_b{k}.{u}", "comm", all_gather.time_s(unit_bytes[u]), prev))
            if i + 1 < len(order):  # the next unit's all-gather before this unit's reduce-scatter
                nxt = order[i + 1]
                tasks.append(Task(f"ag_b{k}.{nxt}", "comm", all_gather.time_s(unit_bytes[nxt])))
            tasks.append(Task(f"bwd{k}.{u}", "compute", backward_s * share[u], (f"ag_b{k}.{u}", *prev)))
            prev = (f"bwd{k}.{u}",)
            if k == grad_accum - 1:
                tasks.append(Task(f"rs{u}", "comm", reduce_scatter.time_s(unit_bytes[u]), prev))
    tasks.append(Task("optimizer", "compute", profile.optimizer_s, (*prev, "rs0")))
    line = simulate(tasks, kappa)
    compute = profile.step_s + profile.backward_end_s * (grad_accum - 1)
    return Replay(line.end_s, compute, line.stream_busy_s(tasks, "comm"), line.end_s - compute)
