"""Probes of what the timing and memory numbers count (items 9, 10, 5): a never-seen batch shape's first step,
the profile's regions against all kernels, the training peak against the peak since process start."""

from __future__ import annotations

import time

from bench.records.units import plural
from bench.run.gpu_probe_kit import train_config, verdict_of


def probe_partial_batch(argv: list[str], cuda: bool) -> tuple[str, str]:
    """Item 9: a never-seen batch shape's first step against its second (cuDNN autotuning), then the first timed
    epoch after the fixed warm-up against the next."""
    import torch

    from mgpu_core.datasets import load_dataset
    from mgpu_core.distributed import process_group
    from mgpu_core.pipelines import last_batch_size
    from mgpu_core.trainer import prepare, warm_up
    cfg = train_config(argv, precision="bf16" if cuda else "fp32", epochs=2)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, load_dataset(cfg, notice=print))
        train_pipe.set_epoch(0)
        x, y = next(iter(train_pipe))

        def timed(batches) -> float:
            sync()
            start = time.perf_counter()
            runner.run(batches)
            sync()
            return (time.perf_counter() - start) * 1e3
        timed([(x, y)] * 3)
        odd = [(x[:77], y[:77])]
        first, second = timed(odd), timed(odd)
        warm_up(runner, train_pipe, cfg)
        epochs = []
        for epoch in (0, 1):
            train_pipe.set_epoch(epoch)
            epochs.append(timed(train_pipe))
    mechanism = first > 3 * second and first - second > 5
    fix_ok = epochs[0] < 1.1 * epochs[1]
    return (verdict_of(mechanism, fix_ok) if cuda else "rehearsed (CPU: no cuDNN autotuning to see)",
            f"batch of 77 never seen: first step {first:.1f} ms, second {second:.1f} ms "
            f"(cudnn.benchmark={torch.backends.cudnn.benchmark}); with warm-up at the last batch's shape "
            f"({_last_batch_words(last_batch_size(train_pipe))}): first epoch {epochs[0]:.0f} ms, next "
            f"{epochs[1]:.0f} ms")


def _last_batch_words(size: int | None) -> str:
    return plural(size, "sample") if size else "none partial: every batch is full"


def probe_profile(argv: list[str], cuda: bool) -> tuple[str, str]:
    """Item 10: device-side copies of the region names, and backward's kernels outside its range on autograd's
    device thread; then bench.profile's counting against the sum of all kernels."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    from bench.profile import region_rows
    from mgpu_core.datasets import load_dataset
    from mgpu_core.distributed import process_group
    from mgpu_core.trainer import prepare, warm_up
    cfg = train_config(argv, precision="bf16" if cuda else "fp32")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    found = {}
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, load_dataset(cfg, notice=print))
        warm_up(runner, train_pipe, cfg)
        runner.region = record_function
        for threaded in (True, False):
            train_pipe.set_epoch(0)
            with torch.autograd.set_multithreading_enabled(threaded), profile(activities=acts) as prof:
                runner.run(train_pipe, max_steps=5)
                if cuda:
                    torch.cuda.synchronize()
            events = prof.events()
            kernels = sum(e.device_time_total for e in events
                          if e.device_type != DeviceType.CPU and not e.is_user_annotation) / 1e3
            twins = sum(e.device_time_total for e in events
                        if e.device_type != DeviceType.CPU and e.name in ("forward", "backward", "optimizer")) / 1e3
            found[threaded] = (kernels, twins, dict((n, d) for n, _, d in region_rows(events)))
    kernels, twins, rows = found[True]
    _, _, fixed_rows = found[False]
    fixed_kernels = found[False][0]
    counted = sum(fixed_rows[n] for n in ("forward", "backward", "optimizer"))
    mechanism = twins > 0 or rows["backward"] < 0.2 * fixed_rows["backward"]
    fix_ok = fixed_rows["backward"] > 0 and counted <= 1.01 * fixed_kernels
    return (verdict_of(mechanism, fix_ok) if cuda else "rehearsed (CPU: no device kernels to count)",
            f"5 steps: all kernels {kernels:.2f} ms; device-side region twins {twins:.2f} ms; backward's device ms "
            f"with autograd's device thread {rows['backward']:.2f}, on the calling thread {fixed_rows['backward']:.2f};"
            f" regions as bench.profile counts them {counted:.2f} ms of {fixed_kernels:.2f} ms of kernels")


def probe_peak_memory(argv: list[str], cuda: bool) -> tuple[str, str]:
    """Item 5: the training peak against the peak since process start (FLOP probe, warm-up, evaluation)."""
    import torch

    from mgpu_core.datasets import load_dataset
    from mgpu_core.distributed import process_group
    from mgpu_core.trainer import train_and_evaluate
    cfg = train_config(argv, epochs=1)
    with process_group(cfg) as env:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = train_and_evaluate(cfg, env, load_dataset(cfg, notice=print), log=print)[0]
        since = torch.cuda.max_memory_allocated() if cuda else None
    peak, resident = result.peak_memory_bytes[0], result.resident_data_bytes
    mib = 2**20
    if not cuda:
        return "skipped (CPU: no allocator peak to compare)", (f"training peak RSS {peak / mib:.0f} MiB, resident "
                                                               f"data {resident / mib:.1f} MiB")
    return (verdict_of(since > peak * 1.05, resident < peak),
            f"training peak {peak / mib:.0f} MiB (of it resident data {resident / mib:.0f} MiB) vs the peak since "
            f"the last epoch began, evaluation included, {since / mib:.0f} MiB")
