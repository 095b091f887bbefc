"""Whether a measured row or a predicted band is physically plausible: one definition, used by the bottleneck verdicts
(bench.explain.scaling_model, bench.explain.bottleneck), the table (bench.render.summary), the plots and the HTML page.
Numbers in, words out: no torch, no files.

Noise is robust: 1.4826 x the median absolute deviation (MAD) of a row's per-epoch throughputs, relative to their
median (the MAD estimate of one standard deviation for normal data; Rousseeuw & Croux 1993), so one slow epoch does not
set the noise the way the min-max range does. A row's speedup compares it with the baseline, so its noise combines both
in quadrature.
"""

from __future__ import annotations

import math
import statistics

MAD_TO_SIGMA = 1.4826
"""Scale from the median absolute deviation to a standard deviation (normal data)."""
SUPERLINEAR_SIGMAS = 2.0
"""Efficiency above 100 % by more than this many noise units (the row's and baseline's noise combined) is
`super-linear: suspect`."""
MIN_TRIALS = 2
"""A row with fewer successful trials than this (or whose noise is unknown) has a provisional verdict."""
NOISY_CPU_SHARE = 0.10
"""A configuration during which processes outside its own process tree used more than this share of the usable CPU
capacity (cores x wall time) is `noisy`."""
NOISY_GPU_THROTTLE = ("hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
"""NVML clock throttle reasons that make a CUDA configuration `noisy` when seen during its run (power-cap and idle
throttling are the GPU's normal operation and only recorded)."""


def relative_noise(values: list[float]) -> float | None:
    """Robust relative noise of `values`: MAD_TO_SIGMA x median absolute deviation / median (a fraction); None with
    fewer than two values (noise unknown)."""
    if len(values) < 2:
        return None
    median = statistics.median(values)
    if median <= 0:
        return None
    return MAD_TO_SIGMA * statistics.median(abs(v - median) for v in values) / median


def combined_noise(*noises: float | None) -> float | None:
    """Noise of a ratio of independent quantities: the root of the sum of squares; None if any is unknown."""
    if any(n is None for n in noises):
        return None
    return math.sqrt(sum(n * n for n in noises))


def superlinear(efficiency: float | None, noise: float | None) -> str | None:
    """'super-linear: suspect (...)' when efficiency exceeds 1 by more than SUPERLINEAR_SIGMAS x noise (any excess
    when the noise is unknown), else None. A device count cannot do more than its share of the work: beyond the noise
    this is a slow baseline, drift, or a cache effect the harness cannot see, never 'near ideal'."""
    if efficiency is None or efficiency <= 1.0:
        return None
    allowed = SUPERLINEAR_SIGMAS * noise if noise is not None else 0.0
    if efficiency - 1.0 <= allowed:
        return None
    basis = (f"beyond {SUPERLINEAR_SIGMAS:g}x the noise {noise:.1%}" if noise is not None
             else "with unknown noise")
    return (f"super-linear: suspect (efficiency {efficiency:.0%} {basis}: a slow baseline, drift or a cache effect; "
            "not a result)")


def refused_prediction(high: float, ideal: float, noise: float | None = None) -> str | None:
    """Why a predicted speedup band whose highest end exceeds the ideal (N devices: N x) is refused as a prediction
    (beyond SUPERLINEAR_SIGMAS x the baseline's noise, or any excess when it is unknown), else None."""
    allowed = SUPERLINEAR_SIGMAS * noise if noise is not None else 0.0
    if high <= ideal * (1 + allowed) * (1 + 1e-9):
        return None
    return (f"refused: predicted up to {high:.2f}x, above the ideal {ideal:g}x (the compute step and the baseline "
            "were measured under different conditions)")


def provisional(trials_ok: int, noise: float | None) -> str | None:
    """Why a row's verdict is provisional (fewer than MIN_TRIALS successful trials, or unknown noise), else None."""
    if trials_ok < MIN_TRIALS:
        return f"provisional: {trials_ok} trial{'s' if trials_ok != 1 else ''}"
    if noise is None:
        return "provisional: noise unknown"
    return None


def noisy(interference: dict | None) -> str | None:
    """'noisy: ...' when a record's interference sample (bench.run.interference) crosses a threshold, else None."""
    if not interference:
        return None
    reasons = []
    share = interference.get("other_cpu_share")
    if share is not None and share > NOISY_CPU_SHARE:
        reasons.append(f"other processes used {share:.0%} of the CPU")
    gpu = interference.get("gpu") or {}
    if gpu.get("other_processes"):
        reasons.append(f"{len(gpu['other_processes'])} other process(es) on the GPUs")
    throttled = sorted(set(gpu.get("throttle_reasons") or ()) & set(NOISY_GPU_THROTTLE))
    if throttled:
        reasons.append("GPU clocks throttled (" + ", ".join(throttled) + ")")
    return "noisy: " + "; ".join(reasons) if reasons else None


def drift(first: list[float], last: list[float]) -> str | None:
    """'baseline drift: ...' when the baseline measured at the end of a study (`last`, per-epoch throughputs) differs
    from its first measurement (`first`) by more than SUPERLINEAR_SIGMAS x their combined noise, else None; when the
    noise is unknown (one value on a side) the change is stated and marked 'not judged'."""
    noise = combined_noise(relative_noise(first), relative_noise(last))
    if not first or not last:
        return None
    change = statistics.median(last) / statistics.median(first) - 1
    if noise is None:  # said, not judged: silence would read as 'no drift' (a 1-epoch study moved 224% unnoticed)
        return ("baseline drift not judged (noise unknown: one value on a side; run more epochs or --trials): "
                f"the 1-device baseline ran {abs(change):.0%} "
                f"{'faster' if change > 0 else 'slower'} at the end of the study than at its start")
    if abs(change) <= SUPERLINEAR_SIGMAS * noise:
        return None
    return (f"baseline drift: the 1-device baseline ran {abs(change):.0%} {'faster' if change > 0 else 'slower'} at "
            f"the end of the study than at its start (noise {noise:.1%}); speedups against it move by as much")
