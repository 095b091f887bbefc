"""Fault injection for the sweep's tests. With this folder on PYTHONPATH and MGPU_TEST_FAULT set, the process whose
RANK (0 when unset) equals MGPU_TEST_FAULT_RANK (default 1) fails at the second batch of its first timed epoch:
raise: a RuntimeError; oom: torch.OutOfMemoryError, as CUDA raises it; kill: SIGKILL to itself; hang: it stops
(its peers wait in their next collective). Every other process is untouched."""

import os
import signal
import time

FAULT = os.environ.get("MGPU_TEST_FAULT")
RANK = os.environ.get("RANK", "0")

if FAULT and RANK == os.environ.get("MGPU_TEST_FAULT_RANK", "1"):
    import torch

    import mgpu_core.trainer

    def inject() -> None:
        if FAULT == "raise":
            raise RuntimeError(f"injected fault on rank {RANK}")
        if FAULT == "oom":
            raise torch.OutOfMemoryError("injected: CUDA out of memory. Tried to allocate 20.00 GiB")
        if FAULT == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if FAULT == "hang":
            time.sleep(3600)

    original = mgpu_core.trainer.StepRunner.run

    def run_with_fault(self, batches, max_steps=None):
        def stream():
            for i, batch in enumerate(batches):
                if max_steps is None and i == 1:  # warm-up passes max_steps; timed epochs do not
                    inject()
                yield batch
        return original(self, stream(), max_steps)

    mgpu_core.trainer.StepRunner.run = run_with_fault
