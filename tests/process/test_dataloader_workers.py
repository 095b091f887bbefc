"""DataLoader workers in a process group (issue 21, kind 9): forked from a process whose other threads hold locks
they hang; started from a forkserver they do not; a stuck worker is a one-line failure, never a hang."""

import threading

import numpy as np
import pytest
import torch
from locked_dataset import LOCK, LockedDataset
from torch.utils.data import DataLoader

from mgpu_core import pipelines
from mgpu_core.pipelines import BatchSpec, DataLoaderPipeline, StuckWorkerError, worker_context


def held_lock():
    """Another thread takes LOCK and keeps it, as gloo's threads hold theirs while the main thread forks."""
    taken, release = threading.Event(), threading.Event()

    def hold():
        with LOCK:
            taken.set()
            release.wait()

    threading.Thread(target=hold, daemon=True).start()
    taken.wait()
    return release


@pytest.mark.parametrize("distributed", [False, True])
def test_a_lock_held_by_another_thread_at_fork_hangs_a_forked_worker_not_a_forkserver_one(distributed):
    release = held_lock()
    try:
        loader = DataLoader(LockedDataset(), batch_size=2, num_workers=1, timeout=5,
                            multiprocessing_context=worker_context(distributed))
        if distributed:  # the forkserver's worker is a fresh process: LOCK is free there
            assert [len(y) for _, y in loader] == [2, 2]
        else:  # fork copies LOCK held: the worker waits forever, and only the timeout ends the wait
            with pytest.raises(RuntimeError, match="timed out"):
                list(loader)
    finally:
        release.set()


def test_workers_start_from_a_forkserver_only_in_a_process_group():
    assert worker_context(False) is None
    assert worker_context(True).get_start_method() == "forkserver"


def slow_item(self, i):
    import time
    time.sleep(30)


@pytest.mark.parametrize("train", [True, False])
def test_a_stuck_worker_is_a_one_line_failure(monkeypatch, train):
    monkeypatch.setattr(pipelines, "WORKER_TIMEOUT_S", 1.0)
    monkeypatch.setattr(pipelines.PILImages, "__getitem__", slow_item)  # inherited by the forked worker
    spec = BatchSpec(device=torch.device("cpu"), batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3,
                     channels_last=False, rank=0, world_size=1, seed=0, train=train, augment=False)
    pipe = DataLoaderPipeline(np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int64), spec, workers=1)
    with pytest.raises(StuckWorkerError, match="gave no batch within 1 s") as info:
        list(pipe)
    assert "\n" not in str(info.value)
