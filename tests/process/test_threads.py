"""Threads as the user set them: one rule for the single baseline and every rank (mgpu_core.distributed)."""

import pytest

from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import USER_OMP_ENV, threads_per_process, usable_cores


def test_threads_follow_the_same_rule_for_the_baseline_and_every_rank(monkeypatch):
    monkeypatch.delenv(USER_OMP_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_process(TrainConfig(), 1) == 1  # the single baseline honours the user's OMP_NUM_THREADS
    assert threads_per_process(TrainConfig(threads=3), 1) == 3  # --threads wins
    monkeypatch.setenv(USER_OMP_ENV, "")  # under bench.run.torchrun: the user set nothing, torchrun set its 1
    assert threads_per_process(TrainConfig(mode="ddp"), 1) == max(1, usable_cores())
    monkeypatch.setenv(USER_OMP_ENV, "1")
    assert threads_per_process(TrainConfig(mode="ddp"), 2) == 1
    monkeypatch.setenv(USER_OMP_ENV, "two")
    with pytest.raises(ConfigError, match="^OMP_NUM_THREADS: must be an integer >= 1"):
        threads_per_process(TrainConfig(), 1)
