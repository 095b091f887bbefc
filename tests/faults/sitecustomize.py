"""Fault injection for sweep tests: put this folder on PYTHONPATH and set MGPU_TEST_FAULT=raise|hang; the process
of rank 1 then fails (or hangs) at its first training step. Other processes are untouched."""

import os
import time

if os.environ.get("MGPU_TEST_FAULT") and os.environ.get("RANK") == "1":
    import mgpu_core.trainer

    def _fault(*args, **kwargs):
        if os.environ["MGPU_TEST_FAULT"] == "hang":
            time.sleep(3600)  # rank 0 waits in its collective until the sweep's timeout ends the tree
        raise RuntimeError("injected fault on rank 1")

    mgpu_core.trainer.StepRunner.run = _fault
