"""Whether a change is larger than the noise: pure statistics for bench.compare (numbers in, a verdict out).

A pair of configurations is declared faster or slower only when the change of the median exceeds
- the minimum change worth reporting (--min-change, default 5%), and
- the noise of both sides: the relative spread (max - min) / median of each; and then
- with at least MIN_TRIALS_FOR_TEST values on each side, a two-sided Mann-Whitney U test at level alpha (normal
  approximation with tie and continuity corrections); with fewer, the two sides' [min, max] ranges must not overlap.
A side with a single value has unknown noise: it never declares a change.
"""

from __future__ import annotations

import math
import statistics

MIN_TRIALS_FOR_TEST = 5


def relative_spread(values: list[float]) -> float:
    median = statistics.median(values)
    return (max(values) - min(values)) / median if median else 0.0


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie and continuity corrected)."""
    n1, n2 = len(a), len(b)
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    i, ties = 0, 0.0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, side) in zip(ranks, ranked, strict=True) if side == 0)
    u = r1 - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - mean) - 0.5) / math.sqrt(var)
    return max(0.0, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


def judge(base: list[float], new: list[float], min_change: float, alpha: float) -> tuple[str, float, str]:
    """(verdict, change, why) for higher-is-better values (samples/s): verdict is faster, slower or no change."""
    change = statistics.median(new) / statistics.median(base) - 1
    if len(base) < 2 or len(new) < 2:
        return "no change", change, "noise unknown (one value on a side)"
    noise = max(relative_spread(base), relative_spread(new))
    if abs(change) <= max(noise, min_change):
        limit = "noise" if noise >= min_change else "minimum change"
        return "no change", change, f"|{change:+.1%}| within the {limit} ({max(noise, min_change):.1%})"
    if len(base) >= MIN_TRIALS_FOR_TEST and len(new) >= MIN_TRIALS_FOR_TEST:
        p = mann_whitney_p(base, new)
        if p >= alpha:
            return "no change", change, f"Mann-Whitney p = {p:.3f} >= {alpha:g}"
        why = f"Mann-Whitney p = {p:.3f} < {alpha:g}"
    else:
        if min(new) <= max(base) and min(base) <= max(new):
            return "no change", change, "the two ranges overlap"
        why = "ranges apart, beyond both sides' spread"
    return ("faster" if change > 0 else "slower"), change, why
