"""Probes of DDP's wrapper (items 4, 13): all-reduces through torch.compile's wrapper under no_sync, and the
teardown order (a wrapper freed after destroy_process_group may hang), each order in a child of its own."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.records.units import plural
from bench.run.gpu_probe_kit import verdict_of

TEARDOWN_TIMEOUT_S = 30.0
"""A DDP teardown that has not ended in this long counts as hung."""


def probe_compile_no_sync(cuda: bool) -> tuple[str, str]:
    """Item 4: all-reduces of one accumulation step of 2 micro-batches through torch.compile's wrapper of DDP
    (backend eager: dynamo's wrapper without inductor's compile time), counted by a comm hook."""
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from mgpu_core.config import TrainConfig
    from mgpu_core.distributed import process_group
    from mgpu_core.model import SimpleCNN
    from mgpu_core.parallel import gradient_sync
    cfg = TrainConfig(mode="ddp", device="cuda" if cuda else "cpu", dataset="synthetic")
    calls = []

    def counting_hook(state, bucket):
        calls.append(bucket.index())
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut
    with process_group(cfg) as env:
        ddp = DistributedDataParallel(SimpleCNN(10).to(env.device),
                                      device_ids=[env.device.index] if cuda else None)
        ddp.register_comm_hook(None, counting_hook)
        compiled = torch.compile(ddp, backend="eager")
        x = torch.randn(8, 3, 32, 32, device=env.device)
        y = torch.randint(0, 10, (8,), device=env.device)
        for micro in range(2):
            with gradient_sync(compiled, micro == 1):
                F.cross_entropy(compiled(x), y).backward()
        per_sync = len(set(calls))
        total = len(calls)
        bare = isinstance(compiled, DistributedDataParallel)
        del compiled, ddp
    return (verdict_of(not bare, total == per_sync),
            f"compiled wrapper is{'' if bare else ' not'} a DDP module; bucket all-reduces over 2 micro-batches: "
            f"{total} ({plural(per_sync, 'bucket')} per synced backward)")


def probe_teardown(backends: list[str]) -> tuple[str, str]:
    """Item 13: a DDP wrapper freed after destroy_process_group (the old order) and before it (the fix), each in a
    child process of its own (all at once) with a timeout, on each backend."""
    start = time.perf_counter()
    children = {(b, o): subprocess.Popen([sys.executable, "-m", "bench.run.gpu_probes", "teardown", b, o],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for b in backends for o in ("after", "before")}
    results = {}
    for key, proc in children.items():
        try:
            code = proc.wait(timeout=max(0.1, TEARDOWN_TIMEOUT_S - (time.perf_counter() - start)))
            results[key] = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            results[key] = "HUNG"
    hung = any(v == "HUNG" for (b, o), v in results.items() if o == "after")
    fixed = all(v == "ok" for (b, o), v in results.items() if o == "before")
    return (verdict_of(hung, fixed), "; ".join(f"{b} DDP freed {o} destroy: {v}" for (b, o), v in results.items())
            + f" (limit {TEARDOWN_TIMEOUT_S:g} s)")


def teardown_child(backend: str, order: str) -> int:
    """One DDP step on a group of one, then the wrapper freed after or before destroy_process_group."""
    import gc
    import tempfile

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mgpu_core.model import SimpleCNN
    cuda = backend == "nccl"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/rdzv", rank=0, world_size=1,
                                device_id=device if cuda else None)
        ddp = DistributedDataParallel(SimpleCNN(10).to(device), device_ids=[0] if cuda else None)
        ddp(torch.randn(4, 3, 32, 32, device=device)).sum().backward()
        if order == "before":
            del ddp
            gc.collect()
            dist.destroy_process_group()
        else:
            dist.destroy_process_group()
            del ddp
            gc.collect()
    print(f"teardown {backend} {order}: done", flush=True)
    return 0
