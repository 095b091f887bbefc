"""Time to accuracy: the number that says whether more devices helped."""

from __future__ import annotations


def time_to_accuracy(epoch_times_s: list[float], val_accs: list[float], target: float) -> tuple[float, int] | None:
    """(training seconds, epoch number from 1) when validation accuracy first reached `target` (a fraction);
    evaluation time is not counted. None if it never did."""
    elapsed = 0.0
    for epoch, (seconds, accuracy) in enumerate(zip(epoch_times_s, val_accs, strict=True), 1):
        elapsed += seconds
        if accuracy >= target:
            return elapsed, epoch
    return None
