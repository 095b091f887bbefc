"""Whether a change is larger than the noise: pure statistics for bench.compare (numbers in, a verdict out).

The change compares samples / median epoch time, the table's samples/s (bench.render.summary): the medians of the
per-epoch seconds per sample (1 / samples/s), base over new. Each side's
noise is robust: sigma = 1.4826 x the median absolute deviation (scipy.stats.median_abs_deviation, scale "normal"),
and the standard error of its median 1.2533 sigma / sqrt(n) (the median's efficiency for normal data: sqrt(pi/2)).
A pair is declared faster or slower only when
- the change exceeds the minimum change worth reporting (--min-change, default 5%), and
- the (1 - alpha) interval of the change, change +- z x the two medians' standard errors combined in quadrature
  (relative to each median), excludes 0 (alpha 0.05: z = 1.96), and
- with fewer than MIN_VALUES_FOR_INTERVAL values on a side (too few for a standard error), also the two sides'
  [min, max] ranges do not overlap.
Medians and MADs are robust: one slow epoch of a loaded machine moves neither, where the min-max rule this replaces
widened its noise to hide any change (one slow epoch made it 79% and a -56% change "no change"). Outliers are reported
(modified z-score above OUTLIER_Z, Iglewicz & Hoaglin 1993), not dropped. A side with fewer than two values has unknown
noise: the verdict is 'cannot judge', and a regression gate that meets it fails (bench.compare's exit code 3).
"""

from __future__ import annotations

import math
import statistics

from scipy import stats

from bench.records.units import plural

MEDIAN_SE = math.sqrt(math.pi / 2)
"""Standard error of a median = this x sigma / sqrt(n) (normal data, large n)."""
MIN_VALUES_FOR_INTERVAL = 5
"""Below this many values on a side, the two sides' ranges must also be apart."""
OUTLIER_Z = 3.5
"""|0.6745 (x - median) / MAD| above this is an outlier (the modified z-score of Iglewicz & Hoaglin)."""
CANNOT_JUDGE = "cannot judge"
VERDICTS = ("faster", "slower", "no change", CANNOT_JUDGE)


def outliers(values: list[float]) -> list[float]:
    """The values whose modified z-score exceeds OUTLIER_Z (none when the MAD is 0 or there are under 3 values)."""
    if len(values) < 3:
        return []
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    if mad == 0:
        return []
    return [v for v in values if abs(0.6745 * (v - median) / mad) > OUTLIER_Z]


def _per_sample(rates: list[float]) -> list[float]:
    """Seconds per sample of each epoch: its median inverts to samples / median epoch time."""
    return [1 / v for v in rates]


def change_interval(base: list[float], new: list[float], alpha: float) -> tuple[float, float]:
    """(low, high) of the relative change of samples/s (`base`, `new`: per-epoch samples/s) at confidence 1 - alpha:
    the change plus or minus z(1 - alpha/2) x the medians' robust relative standard errors combined in quadrature,
    its low end never below -100% (no throughput below zero)."""
    def se(values: list[float]) -> float:
        sigma = float(stats.median_abs_deviation(values, scale="normal"))
        return MEDIAN_SE * sigma / math.sqrt(len(values)) / statistics.median(values)

    base, new = _per_sample(base), _per_sample(new)
    ratio = statistics.median(base) / statistics.median(new)
    half = float(stats.norm.ppf(1 - alpha / 2)) * ratio * math.hypot(se(base), se(new))
    return max(-1.0, ratio - 1 - half), ratio - 1 + half  # samples/s cannot fall below zero: no change under -100%


def judge(base: list[float], new: list[float], min_change: float, alpha: float = 0.05) -> tuple[str, float, str]:
    """(verdict, change, why) for per-epoch samples/s of each side: verdict is one of VERDICTS, change the relative
    change of samples / median epoch time; `alpha` sets the interval's confidence (1 - alpha). Outliers are named in
    `why`."""
    if not base or not new:
        return CANNOT_JUDGE, 0.0, "no successful values on a side"
    change = statistics.median(_per_sample(base)) / statistics.median(_per_sample(new)) - 1
    if len(base) < 2 or len(new) < 2:
        return CANNOT_JUDGE, change, "noise unknown (one value on a side: run more epochs or --trials)"
    notes = [f"{plural(len(o), 'outlier')} in {side} ({', '.join(f'{v:,.0f}' for v in o)})"
             for side, values in (("base", base), ("new", new)) if (o := outliers(values))]
    low, high = change_interval(base, new, alpha)
    ci = f"{1 - alpha:.0%} interval of the change {low:+.1%} to {high:+.1%}"
    why = "; ".join([ci, *notes])
    if abs(change) <= min_change:
        return "no change", change, f"|{change:+.1%}| within the minimum change ({min_change:.1%}); {why}"
    if low <= 0 <= high:
        return "no change", change, f"the interval includes 0; {why}"
    if (len(base) < MIN_VALUES_FOR_INTERVAL or len(new) < MIN_VALUES_FOR_INTERVAL) and (
            min(new) <= max(base) and min(base) <= max(new)):
        return "no change", change, f"the two ranges overlap (under {MIN_VALUES_FOR_INTERVAL} values on a side); {why}"
    return ("faster" if change > 0 else "slower"), change, why
