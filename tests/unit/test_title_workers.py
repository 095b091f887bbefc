"""The title says DataLoader workers restart inside each timed epoch only where there are workers to restart: with
--workers 0 the batches load in the training process itself."""

from helpers import record

from bench.explain.goal import Goal
from bench.render.summary import summarize

RESTARTED = "DataLoader workers restarted inside each timed epoch"


def _title(**cfg) -> str:
    return summarize([record("single", 1, [1.0], pipeline="dataloader", **cfg)], Goal()).title


def test_no_workers_are_never_said_to_restart():
    assert RESTARTED not in _title(workers=0)
    assert "dataloader pipeline, no DataLoader workers" in _title(workers=0)


def test_workers_that_restart_are_still_said_to():
    assert RESTARTED in _title(workers=2)
    assert RESTARTED not in _title(workers=2, persistent_workers=True)
