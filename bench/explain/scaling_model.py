"""The scaling model and the bottleneck verdicts: numbers in, numbers and words out (no torch, no files).

algbw and busbw follow nccl-tests (mgpu_core.bandwidth).

The expected step time of N devices, from the compute step time Tc(N) (forward, backward and optimizer with no
communication, measured with the same process layout: on CPU the same threads per rank) and the collective time
t(N) at the model's gradient size, lies between the full-overlap bound max(Tc, t) and the no-overlap bound Tc + t
(ddp: one all-reduce; dp: a broadcast of the weights and a reduce of the gradients, which nn.DataParallel does not
overlap with compute).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.explain.plausibility import MIN_TRIALS, provisional, superlinear
from bench.records.units import ms, plural
from mgpu_core.bandwidth import bus_factor

# The verdicts' thresholds, one place (the README's table quotes them).
STRAGGLER_SPREAD = 0.10
"""A rank whose epoch is this much slower than the median rank is a straggler."""
INPUT_BOUND_SHARE = 0.20
"""Data wait above this share of the epoch (slowest rank) makes a configuration input-bound."""
NEAR_IDEAL_EFFICIENCY = 0.90
"""Efficiency at or above this (and at most its inverse) is compute-bound: near ideal."""
HOST_BOUND_SLOWDOWN = 1.5
"""Compute alone this much slower per step at N ranks than on one device: the ranks share a host that is too
small for them (CPU cores, memory bandwidth), so the host is the bottleneck."""
COMM_BOUND_SHARE = 0.25
"""Collective time above this share of the no-overlap step, with the measurement inside or near the band: the
configuration is communication-bound."""
UNEXPLAINED_RESIDUAL = 0.25
"""A measurement this far outside the band (relative) is unexplained by compute plus communication."""


def collective_time(op: str, nbytes: float, bus_bytes_per_s: float, n: int) -> float:
    """The time a collective of `nbytes` takes at a given bus bandwidth: busbw's inverse (0 for one rank)."""
    factor = bus_factor(op, n)
    return 0.0 if factor == 0 else nbytes * factor / bus_bytes_per_s


@dataclass(frozen=True)
class Band:
    """Expected step time of one configuration: full overlap (fastest) to no overlap (slowest)."""
    overlap_s: float
    serial_s: float
    compute_s: float
    comm_s: float

    @property
    def comm_share(self) -> float:
        return self.comm_s / self.serial_s if self.serial_s else 0.0


def step_band(mode: str, compute_s: float, comm_s: float) -> Band:
    """ddp overlaps its all-reduce with backward at best (max) and not at all at worst (sum); dp's broadcast and
    reduce sit between steps, so both bounds are the sum; single has no communication."""
    if mode == "single":
        return Band(compute_s, compute_s, compute_s, 0.0)
    overlap = max(compute_s, comm_s) if mode == "ddp" else compute_s + comm_s
    return Band(overlap, compute_s + comm_s, compute_s, comm_s)


def speedup(base_step_s: float, base_global_batch: int, step_s: float, global_batch: int) -> float:
    """Epoch-time speedup against the baseline: an epoch takes dataset / global_batch steps."""
    return base_step_s / step_s * global_batch / base_global_batch


def speedup_band(base_step_s: float, base_global_batch: int, band: Band, global_batch: int) -> tuple[float, float]:
    """(lowest, highest) expected speedup: from the no-overlap and the full-overlap step times."""
    return (speedup(base_step_s, base_global_batch, band.serial_s, global_batch),
            speedup(base_step_s, base_global_batch, band.overlap_s, global_batch))


def residual(measured: float, low: float, high: float) -> float:
    """How far `measured` lies outside [low, high], relative to the nearer bound (0 inside, rounding forgiven;
    negative below)."""
    if measured < low * (1 - 1e-9):
        return measured / low - 1
    if measured > high * (1 + 1e-9):
        return measured / high - 1
    return 0.0


@dataclass(frozen=True)
class CommPoint:
    """What the collective benchmark measured at one device count."""
    devices: int
    compute_step_s: float
    """Compute-only step time with this many ranks sharing the host(s) (slowest rank)."""
    comm_s: dict[str, float]
    """Per operation, the time at the model's gradient size."""
    busbw: dict[str, float]
    """Per operation, bus bandwidth at the model's gradient size (bytes/s)."""
    measured: bool = True
    """False for a device count extrapolated from the largest measured one."""


def extrapolate(points: dict[int, CommPoint], grad_bytes: float) -> dict[int, CommPoint]:
    """The measured points plus powers of two beyond the largest, up to twice it: compute step and busbw held at
    the largest measured count's values, collective times recomputed from busbw for the new n."""
    if not points:
        return {}
    last = points[max(points)]
    extended = dict(points)
    n = 1
    while n <= 2 * last.devices:
        if n > last.devices and n not in extended:
            times = {op: collective_time(op, grad_bytes, bw, n) for op, bw in last.busbw.items()}
            extended[n] = CommPoint(n, last.compute_step_s, times, dict(last.busbw), measured=False)
        n *= 2
    return extended


def mode_comm_s(mode: str, point: CommPoint) -> float:
    """The communication one step of `mode` does: ddp one all-reduce; dp a broadcast and a reduce; fsdp an
    all-gather of the parameters in forward, another in backward, and a reduce-scatter of the gradients."""
    times = point.comm_s
    if mode == "ddp":
        return times.get("all_reduce", 0.0)
    if mode == "dp":
        return times.get("broadcast", 0.0) + times.get("reduce", 0.0)
    if mode == "fsdp":
        return 2 * times.get("all_gather", 0.0) + times.get("reduce_scatter", 0.0)
    return 0.0


@dataclass(frozen=True)
class Evidence:
    """What one configuration's verdict is judged on."""
    mode: str
    devices: int
    device_type: str
    efficiency: float
    rank_times_s: list[float]
    """Each rank's epoch time (median over epochs and trials)."""
    data_wait_share: float
    """Data wait of the slowest rank as a share of its epoch."""
    base_step_s: float | None = None
    band: Band | None = None
    measured_step_s: float | None = None
    residual: float | None = None
    noise: float | None = None
    """Relative noise of the speedup (bench.explain.plausibility: the row's and the baseline's combined)."""
    noisy: str | None = None
    """Why the row was measured under interference (bench.explain.plausibility.noisy), or None."""
    trials_ok: int = MIN_TRIALS


def straggler(rank_times_s: list[float]) -> tuple[int, float] | None:
    """(rank, how much slower than the median rank) when the slowest rank exceeds STRAGGLER_SPREAD, else None."""
    if len(rank_times_s) < 2:
        return None
    median = statistics.median(rank_times_s)
    slowest = max(range(len(rank_times_s)), key=rank_times_s.__getitem__)
    spread = rank_times_s[slowest] / median - 1 if median > 0 else 0.0
    return (slowest, spread) if spread > STRAGGLER_SPREAD else None


def bottleneck_of(e: Evidence) -> str:
    """One short phrase with its evidence: the first of super-linear: suspect, noisy (both from
    bench.explain.plausibility: a measurement not to be trusted is never 'near ideal'), straggler, input-bound,
    compute-bound (near ideal), host/launch-bound, communication-bound, unexplained that applies; else 'within the
    model's band'. A row with too few trials or unknown noise has '; provisional: ...' appended."""
    phrase = _verdict(e)
    caveat = provisional(e.trials_ok, e.noise)
    return f"{phrase}; {caveat}" if caveat else phrase


def _verdict(e: Evidence) -> str:
    suspect = superlinear(e.efficiency, e.noise)
    if suspect:
        return suspect
    if e.noisy:
        return e.noisy
    late = straggler(e.rank_times_s)
    if late:
        return f"straggler: rank {late[0]} {late[1]:.0%} slower than the median rank"
    if e.data_wait_share > INPUT_BOUND_SHARE:
        return f"input-bound: data wait {e.data_wait_share:.0%} of the epoch"
    if e.efficiency > 1 / NEAR_IDEAL_EFFICIENCY * (1 + 1e-9):  # not suspect: the noise allows it, yet not near ideal
        return f"above ideal within the noise (efficiency {e.efficiency:.0%}, noise {e.noise:.0%}): not a result"
    if e.efficiency >= NEAR_IDEAL_EFFICIENCY:
        return f"compute-bound: near ideal (efficiency {e.efficiency:.0%})"
    if e.mode == "dp":
        return (f"host/launch-bound: one process drives {plural(e.devices, 'GPU')} (replicate, scatter, gather every "
                "step)")
    band = e.band
    if band and e.base_step_s and band.compute_s > HOST_BOUND_SLOWDOWN * e.base_step_s:
        where = "the ranks share the CPU cores" if e.device_type == "cpu" else "the ranks share the host"
        return (f"host-bound: compute alone {band.compute_s / e.base_step_s:.1f}x slower per step at "
                f"{plural(e.devices, 'rank')} ({where})")
    if band and e.residual is not None and abs(e.residual) > UNEXPLAINED_RESIDUAL:
        side = "slower" if e.residual < 0 else "faster"
        return f"unexplained: {abs(e.residual):.0%} {side} than the model's band"
    if band and band.comm_share > COMM_BOUND_SHARE:
        return (f"communication-bound: collectives {ms(band.comm_s):.1f} ms of a {ms(band.serial_s):.1f} ms "
                "no-overlap step")
    if not band:
        return "no collective measurement to explain it"
    return "within the model's band" if not e.residual else f"near the model's band ({e.residual:+.0%})"
