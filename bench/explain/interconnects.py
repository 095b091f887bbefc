"""What more devices would buy: the replay (bench.explain.replay) at device counts and interconnects not measured,
from the measured device's compute profile and a link's latency and bus bandwidth (a preset, given figures, an
nccl-tests table, or the study's own collective sweep). Pure: numbers in, numbers out.

The collective model (nccl-tests' bus bandwidth, doc/PERFORMANCE.md): a collective of b bytes on n devices takes
latency + b x factor(n) / busbw, factor(n) = 2(n-1)/n for all-reduce; busbw is what each link carries and stays
near the link's rate at any n, which is why it is the figure that carries over to device counts not measured.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bench.explain.plausibility import refused_prediction
from bench.explain.replay import AlphaBeta, ComputeProfile, ddp_step, fit_alpha_beta
from bench.records.units import plural
from mgpu_core.bandwidth import bus_factor

LINK_EFFICIENCY = 0.8
"""Assumed share of a link's per-direction rate that NCCL's all-reduce reaches as bus bandwidth (nccl-tests
reports 75-90 % on well-configured systems); the presets below apply it to the published link rates."""
COMPUTE_BOUND_EXPOSED = 0.10
"""Exposed communication below this share of the step: the step is compute-bound."""
EXTRAPOLATION_FACTOR = 8
"""Device counts beyond this multiple of the largest measured count are marked extrapolated."""


@dataclass(frozen=True)
class Link:
    """One kind of link between devices: what a collective over it costs."""
    busbw_bytes_per_s: float
    latency_s: float
    source: str
    """Where the figures come from (public document, or the measurement)."""

    def all_reduce(self, devices: int) -> AlphaBeta:
        """all-reduce on `devices` over this link as α-β."""
        return AlphaBeta("all_reduce", devices, self.latency_s, bus_factor("all_reduce", devices)
                         / self.busbw_bytes_per_s)


def _preset_link(rate_bytes_per_s: float, latency_s: float, source: str) -> Link:
    return Link(rate_bytes_per_s * LINK_EFFICIENCY, latency_s,
                f"{source}; busbw {LINK_EFFICIENCY:.0%} of the per-direction rate and the latency are assumptions")


NVLINK4 = _preset_link(450e9, 20e-6, "NVIDIA H100 Tensor Core GPU datasheet: NVLink 900 GB/s per GPU "
                                      "(450 GB/s each direction) through NVSwitch, HGX H100/H200")
PCIE5 = _preset_link(63e9, 25e-6, "PCI-SIG PCI Express Base Specification 5.0: 32 GT/s x16, 128b/130b, about "
                                  "63 GB/s each direction")
IB_NDR = _preset_link(50e9, 30e-6, "NVIDIA ConnectX-7 / Quantum-2 datasheets: InfiniBand NDR 400 Gb/s per port, one "
                                   "port per GPU (50 GB/s)")
ETH_100G = _preset_link(12.5e9, 50e-6, "IEEE 802.3 100 Gb/s Ethernet, one port per GPU (12.5 GB/s)")


@dataclass(frozen=True)
class Interconnect:
    name: str
    intra: Link
    """Between devices of one node."""
    inter: Link
    """Beyond one node (--gpus-per-node)."""


PRESETS = {
    "nvlink4": Interconnect("NVLink 4 via NVSwitch (HGX H100/H200), NDR InfiniBand across nodes", NVLINK4, IB_NDR),
    "pcie5": Interconnect("PCIe Gen5 x16 without NVLink, 100 GbE across nodes", PCIE5, ETH_100G),
    "ib-ndr": Interconnect("InfiniBand NDR 400 Gb/s per GPU", IB_NDR, IB_NDR),
    "100gbe": Interconnect("100 GbE per GPU", ETH_100G, ETH_100G),
}
"""Interconnects by name; each link names its public source (docs/prediction.md lists them)."""

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_bandwidth(text: str) -> float:
    """'370GB/s' or '400Gbit/s' -> bytes per second; ValueError otherwise (also zero, or an overflow to inf)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(B|bit|b)/s\s*", text)
    if not match:
        raise ValueError(f"bandwidth {text!r}: write it as 370GB/s or 400Gbit/s")
    value = float(match[1]) * _UNITS[match[2].lower()]
    if value <= 0:  # a zero bandwidth divides every collective's time by zero
        raise ValueError(f"bandwidth {text!r}: must be above zero")
    if not math.isfinite(value):  # hundreds of digits overflow to inf
        raise ValueError(f"bandwidth {text!r}: must be finite")
    return value if match[3] == "B" else value / 8


def parse_duration(text: str) -> float:
    """'10us', '0.5ms', '2e-5s' -> seconds; ValueError otherwise (also where it overflows to inf)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:e-?\d+)?)\s*(s|ms|us|ns)\s*", text)
    if not match:
        raise ValueError(f"latency {text!r}: write it as 10us, 0.5ms or 2e-5s")
    value = float(match[1]) * {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[match[2]]
    if not math.isfinite(value):  # 1e400s overflows to inf, which no replay can take
        raise ValueError(f"latency {text!r}: must be finite")
    return value


@dataclass(frozen=True)
class NcclTable:
    """An nccl-tests result table (out-of-place columns)."""
    devices: int
    sizes_bytes: tuple[int, ...]
    times_s: tuple[float, ...]
    busbw_bytes_per_s: tuple[float, ...]


def parse_nccl_tests(text: str) -> NcclTable:
    """The text output of nccl-tests' all_reduce_perf: comment lines start with '#' (the header 'nThread 1 nGpus 8'
    or the '#  Rank' lines give the device count); each data line is size, count, type, redop, [root,] then
    out-of-place time (us), algbw, busbw (GB/s), #wrong, and the same in place. The out-of-place columns are read;
    #wrong may be 'N/A' or -1 (no data check). ValueError naming the line where it is malformed, where #wrong counts
    wrong results, where it is another test's (redop 'none', or a 'Collective test starting:' header naming it), or
    when the table is empty."""
    test = re.search(r"^#\s*Collective test starting:\s*(\S+)", text, flags=re.M)
    if test and test[1] != "all_reduce_perf":
        raise ValueError(f"{test[1]} output, not all_reduce_perf's (the link is fitted to all-reduce times)")
    ranks = len(re.findall(r"^#\s+Rank\s+\d+", text, flags=re.M))
    header = re.search(r"nGpus\s+(\d+)", text)
    threads = re.search(r"nThread\s+(\d+)", text)
    procs = re.search(r"^# Using devices", text, flags=re.M)
    devices = ranks or (int(header[1]) * (int(threads[1]) if threads else 1) if header else 0)
    if not devices and not procs:
        raise ValueError("no device count (neither 'nGpus N' nor '#  Rank' lines): not nccl-tests output")
    sizes, times, busbws = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens or line.lstrip().startswith("#"):
            continue
        if len(tokens) < 12:
            raise ValueError(f"line {number}: {plural(len(tokens), 'column')}, nccl-tests writes at least 12")
        if tokens[3] == "none":  # all_gather_perf, broadcast_perf: no reduction; all-reduce always has one
            raise ValueError(f"line {number}: redop 'none': not all_reduce_perf output (all_gather_perf?); the link "
                             "is fitted to all-reduce times")
        try:
            size = int(tokens[0])
            # #wrong (4th and 8th of the last 8): 'N/A' or -1 where nccl-tests ran without its data check (-c 0)
            numbers = [float(t) for i, t in enumerate(tokens[-8:]) if i not in (3, 7)]
            wrong = [float(t) for t in (tokens[-5], tokens[-1]) if t != "N/A"]
        except ValueError:
            raise ValueError(f"line {number}: not an nccl-tests data line: {line.strip()[:80]!r}") from None
        if any(w > 0 for w in wrong):
            raise ValueError(f"line {number}: nccl-tests counted {max(wrong):g} wrong elements (#wrong) at {size} "
                             "bytes: the all-reduce gave wrong results, so its times describe no working link")
        time_us, _algbw, bus = numbers[0], numbers[1], numbers[2]
        if size > 0 and time_us > 0:
            sizes.append(size)
            times.append(time_us * 1e-6)
            busbws.append(bus * 1e9)
    if len(sizes) < 2:
        raise ValueError("fewer than 2 data lines with a size and a time")
    return NcclTable(devices, tuple(sizes), tuple(times), tuple(busbws))


def link_from_fit(fit: AlphaBeta, source: str) -> Link:
    """A link from an all-reduce α-β fit at fit.devices: latency α, busbw factor(n) / β (large messages)."""
    beta = fit.large_beta_s_per_byte or fit.beta_s_per_byte
    if beta <= 0:
        raise ValueError(f"{source}: the times do not grow with the message size (the α-β fit's bandwidth term is "
                         "0): measure sizes where bandwidth matters, up to 1 MiB or more")
    return Link(bus_factor("all_reduce", fit.devices) / beta, max(0.0, fit.alpha_s), source)


def link_from_nccl(table: NcclTable, source: str) -> Link:
    return link_from_fit(fit_alpha_beta("all_reduce", table.devices, table.sizes_bytes, table.times_s), source)


@dataclass(frozen=True)
class ScaledRow:
    devices: int
    step_s: float
    speedup: float
    efficiency: float
    band_speedup: tuple[float, float]
    """(no overlap, full overlap)."""
    dominant: str
    """compute, exposed communication, or launch (latency)."""
    extrapolated: bool


def predict_count(profile_1: ComputeProfile, devices: int, link: Link, bucket_bytes: float, scaling: str,
                  largest_measured: int, kappa: float = 1.0, compute_s: float | None = None) -> ScaledRow:
    """The replayed ddp step at `devices` over `link`, with compute per device from the measured device's profile
    (`profile_1`, one device alone), stretched to `compute_s` where the compute-only step at this count is known
    (ranks that share a host are slower than one alone). Weak scaling keeps the per-device batch (compute per step
    that of one device, the speedup N x T1 / T_N), strong scaling splits a fixed global batch (compute per device
    in proportion to its share, the speedup T1 / T_N). The speedup never exceeds N: compute is never taken faster
    than one device's share, and communication costs >= 0."""
    if devices < 1:
        raise ValueError(f"devices must be >= 1 (got {devices})")
    t1 = profile_1.step_s
    ideal = t1 if scaling == "weak" else t1 / devices
    profile = profile_1.scaled(max(ideal, compute_s or ideal))
    if devices == 1:
        return ScaledRow(1, t1, 1.0, 1.0, (1.0, 1.0), "compute", False)
    ar = link.all_reduce(devices)
    rep = ddp_step(profile, ar, bucket_bytes, kappa)
    gain = devices if scaling == "weak" else 1
    comm = ar.time_s(profile.grad_bytes)
    serial, overlap = profile.step_s + comm, max(profile.step_s, comm)
    exposed = rep.step_s - profile.step_s
    latency_part = ar.alpha_s * max(1, len(rep.buckets))
    if exposed <= COMPUTE_BOUND_EXPOSED * rep.step_s:
        dominant = "compute"
    elif latency_part >= rep.comm_s / 2:
        dominant = "launch (collective latency)"
    else:
        dominant = "exposed communication"
    speedup = gain * t1 / rep.step_s
    return ScaledRow(devices, rep.step_s, speedup, speedup / devices, (gain * t1 / serial, gain * t1 / overlap),
                     dominant, devices > EXTRAPOLATION_FACTOR * max(1, largest_measured))


def link_for(devices: int, interconnect: Interconnect, gpus_per_node: int | None) -> Link:
    """The intra-node link up to one node's devices, the inter-node one beyond (all-reduce is as fast as its
    slowest link)."""
    return interconnect.inter if gpus_per_node and devices > gpus_per_node else interconnect.intra


@dataclass(frozen=True)
class Measured:
    """A ddp row the study measured: its epoch-time speedup against the study's single x1 epoch, and its
    plausibility flag (bench.explain.plausibility.superlinear) where it has one."""
    speedup: float
    suspect: str | None = None


@dataclass(frozen=True)
class OnBaseline:
    """One predicted row put on the study's own baseline, the single x1 epoch the measured rows are judged
    against: the model's N-device step (absolute) against the single run's measured step (its epoch / its steps).
    At one device the prediction is the baseline itself."""
    row: ScaledRow
    speedup: float | None
    """Epoch-time speedup against the single x1 epoch; None where refused."""
    band: tuple[float, float] | None
    """(no overlap, full overlap) on the same baseline."""
    epoch_s: float
    """The predicted epoch: the baseline's steps (per the batch) x the predicted step; it stands where the speedup is
    refused, since it does not depend on the baseline's measured time."""
    refused: str | None
    """Why the speedup is no prediction (above the ideal beyond the baseline's noise), else None."""


def on_baseline(row: ScaledRow, t1_s: float, base_epoch_s: float, base_steps: float,
                base_noise: float | None) -> OnBaseline:
    """`row` (a speedup N x t1 / T_N, or t1 / T_N under strong scaling, against one rank's compute-only step `t1_s`)
    against the single x1 run instead: scaled by its measured step / t1, so the predicted epoch is the baseline's
    steps (per the batch) x the predicted N-device step. A band reaching above the ideal N (beyond 2x the baseline's
    noise, bench.explain.plausibility.refused_prediction) is refused, never shown as a prediction; the epoch stands."""
    if row.devices == 1:
        return OnBaseline(row, 1.0, (1.0, 1.0), base_epoch_s, None)
    scale = base_epoch_s / base_steps / t1_s
    speedup = row.speedup * scale
    refused = refused_prediction(row.band_speedup[1] * scale, row.devices, base_noise)
    if refused:
        return OnBaseline(row, None, None, base_epoch_s / speedup, refused)
    return OnBaseline(row, speedup, (row.band_speedup[0] * scale, row.band_speedup[1] * scale),
                      base_epoch_s / speedup, None)
