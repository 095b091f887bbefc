"""pytest-benchmark suite (`pytest --benchmark-only`). Plain `pytest` runs each body once as a test (and skips the
target check, which is a timing comparison and so belongs to benchmark runs only)."""

import os
import statistics
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mgpu_core.config import TrainConfig
from mgpu_core.distributed import device_synchronize, process_group
from mgpu_core.hardware import cpu_has_amx, cpu_has_bf16
from mgpu_core.pipelines import build_pipelines
from mgpu_core.synthetic import synthetic_cifar
from mgpu_core.trainer import prepare, train_and_evaluate, train_epoch, warm_up

SAMPLES = 2048
PRECISIONS = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])


@pytest.fixture(scope="module")
def data():
    return synthetic_cifar(SAMPLES, 100, seed=0)


def cpu_config(**overrides):
    return TrainConfig(**({"device": "cpu", "dataset": "synthetic", "workers": 2} | overrides))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("pipeline", ["device", "dataloader"])
def test_timed_epoch(benchmark, data, pipeline, precision):
    cfg = cpu_config(pipeline=pipeline, precision=precision, channels_last=precision == "bf16")
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, data)
        benchmark.group = f"timed epoch ({SAMPLES} synthetic samples)"
        # train_epoch synchronizes the device before returning, so each round's time is complete
        record = benchmark.pedantic(train_epoch, args=(runner, train_pipe, 0), rounds=3, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = record.samples_per_s
    assert record.samples == SAMPLES and record.steps == SAMPLES // 128


@pytest.mark.parametrize("precision", PRECISIONS)
def test_training_step(benchmark, data, precision):
    cfg = cpu_config(precision=precision, channels_last=precision == "bf16")
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, data)
        batch = next(iter(train_pipe))
        before = [p.detach().clone() for p in runner.model.parameters()]

        def step():
            out = runner.run([batch])
            device_synchronize(env)
            return out

        benchmark.group = "one training step (batch 128)"
        loss_sum, _, samples, _ = benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    benchmark.extra_info["samples_per_s"] = 128 / benchmark.stats.stats.mean if benchmark.stats else None
    # the step really trained: a finite loss, and every parameter moved
    assert torch.isfinite(loss_sum / samples)
    assert all(not torch.equal(a, b) for a, b in zip(before, runner.model.parameters(), strict=True))


@pytest.mark.parametrize("pipeline", ["device", "dataloader"])
def test_input_pipeline_alone(benchmark, data, pipeline):
    """Batches per second with no model: the ceiling the input pipeline puts on training."""
    cfg = cpu_config(pipeline=pipeline)
    with process_group(cfg) as env:
        train_pipe, _ = build_pipelines(cfg, data, env)

        def epoch():
            train_pipe.set_epoch(0)
            count = sum(1 for _ in train_pipe)
            device_synchronize(env)
            return count

        benchmark.group = "input pipeline alone (batches of 128, augmented)"
        batches = benchmark.pedantic(epoch, rounds=3, warmup_rounds=1)
    if benchmark.stats:
        benchmark.extra_info["batches_per_s"] = batches / benchmark.stats.stats.mean
    assert batches == SAMPLES // 128


def _ddp_peer(rank: int, init_method: str, steps: int) -> None:
    """Rank 1 of the DDP benchmark: the same steps as rank 0, in lockstep through DDP's all-reduce."""
    os.environ.update(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")
    cfg = cpu_config(mode="ddp", threads=1)
    with process_group(cfg, init_method=init_method) as env:
        runner, train_pipe, _ = prepare(cfg, env, synthetic_cifar(SAMPLES, 100, seed=0))
        batch = next(iter(train_pipe))
        for _ in range(steps):
            runner.run([batch])
        checksum = torch.stack([p.detach().double().sum() for p in runner.model.parameters()]).sum()
        dist.all_gather([torch.zeros_like(checksum) for _ in range(2)], checksum)
        dist.barrier()


def test_ddp_step_two_gloo_ranks(benchmark, data, tmp_path, monkeypatch):
    rounds, warmup = 10, 2
    steps = rounds + warmup if not benchmark.disabled else 1
    init_method = f"file://{tmp_path}/rendezvous"
    peer = mp.start_processes(_ddp_peer, args=(init_method, steps), nprocs=1, join=False, start_method="spawn")
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    cfg = cpu_config(mode="ddp", threads=1)
    with process_group(cfg, init_method=init_method) as env:
        runner, train_pipe, _ = prepare(cfg, env, data)
        batch = next(iter(train_pipe))
        benchmark.group = "DDP step, 2 gloo ranks (batch 128 each)"
        loss_sum, _, samples, _ = benchmark.pedantic(lambda: runner.run([batch]), rounds=rounds,
                                                     warmup_rounds=warmup)
        checksum = torch.stack([p.detach().double().sum() for p in runner.model.parameters()]).sum()
        gathered = [torch.zeros_like(checksum) for _ in range(2)]
        dist.all_gather(gathered, checksum)  # the peer sends its own; DDP keeps the replicas equal
        dist.barrier()
    peer.join()
    if benchmark.stats:
        benchmark.extra_info["samples_per_s"] = 256 / benchmark.stats.stats.mean
    assert torch.isfinite(loss_sum / samples) and torch.equal(gathered[0], gathered[1])


def test_cpu_fast_path_target(benchmark, real_cifar):
    """Side by side in one run, one epoch each on the real copy: the fast path (device-resident data, bf16
    autocast, channels_last) trains at >= 3x the samples/s of the classic pipeline (DataLoader over PIL, 2 workers,
    fp32), and its validation accuracy is within 0.5 points of the fp32 fast path's."""
    if benchmark.disabled:
        pytest.skip("a timing target: runs under pytest --benchmark-only")
    if not cpu_has_amx():
        pytest.skip("this CPU has no AMX: bf16 is emulated there and the fast path is fp32 + channels_last")
    runs = {"classic": {"pipeline": "dataloader", "precision": "fp32", "channels_last": False},
            "fast fp32": {"pipeline": "device", "precision": "fp32", "channels_last": True},
            "fast bf16": {"pipeline": "device", "precision": "bf16", "channels_last": True}}
    results = {}

    def side_by_side():
        for name, overrides in runs.items():
            cfg = cpu_config(dataset="cifar10", epochs=1, **overrides)
            with process_group(cfg) as env:
                results[name], _ = train_and_evaluate(cfg, env, real_cifar, log=lambda _: None)

    benchmark.group = "CPU target: fast path vs classic pipeline (1 CIFAR-10 epoch each)"
    benchmark.pedantic(side_by_side, rounds=1, warmup_rounds=0)
    speed = {name: r.epochs[0].samples_per_s for name, r in results.items()}
    accuracy = {name: r.final_val_acc for name, r in results.items()}
    benchmark.extra_info.update({f"{name} samples_per_s": v for name, v in speed.items()})
    benchmark.extra_info.update({f"{name} val_acc": v for name, v in accuracy.items()})
    benchmark.extra_info["speedup_vs_classic"] = speed["fast bf16"] / speed["classic"]
    assert speed["fast bf16"] >= 3 * speed["classic"], speed
    assert accuracy["fast bf16"] >= accuracy["fast fp32"] - 0.005, accuracy


def _single_and_ddp_x1(queue, flush: bool, samples: int, epochs: int, overrides: dict) -> None:
    """In one fresh process (the denormal setting reaches the thread pool only before it starts): single and ddp x1
    (a process group of one) built from the same seed, their timed epochs alternating, so load on a shared machine
    falls on both alike; puts {"single": [epoch s...], "ddp": [...], "single_cpu": [CPU s...], "ddp_cpu": [...],
    "threads": n}."""
    data = synthetic_cifar(samples, 100, seed=0)
    single, ddp = (cpu_config(mode=m, flush_denormal=flush, **overrides) for m in ("single", "ddp"))
    with process_group(ddp) as env:
        runners = {name: prepare(cfg, env, data)[:2] for name, cfg in (("single", single), ("ddp", ddp))}
        for runner, pipe in runners.values():
            warm_up(runner, pipe, single)
        times = {name: [] for name in runners}
        cpu = {f"{name}_cpu": [] for name in runners}  # process CPU seconds: robust to waiting for a loaded CPU
        for epoch in range(epochs):
            for name, (runner, pipe) in runners.items():
                start = time.process_time()
                times[name].append(train_epoch(runner, pipe, epoch).time_s)
                cpu[f"{name}_cpu"].append(time.process_time() - start)
        queue.put(times | cpu | {"threads": env.threads})


@pytest.mark.parametrize("threads", [None, 1], ids=["threads-default", "1-thread"])
@pytest.mark.parametrize("flush", [False, True], ids=["denormals", "flush-denormal"])
def test_ddp_x1_within_5_percent_of_single(benchmark, flush, threads):
    """ddp x1 against single, alternating epochs in one process (PyTorch's own DDP benchmark holds DDP's overhead
    to about 3%); the target: ddp x1 >= 95% of single's samples/s (median epochs). Both ways of the denormal setting
    are measured, and at one thread, where process CPU seconds per epoch are the work done even on a loaded machine
    (extra_info: ddp_over_single_cpu_s); the ratio is what counts, so a loaded machine moves both sides alike."""
    if benchmark.disabled and (flush or threads):
        pytest.skip("one variant runs as a plain test; all four under pytest --benchmark-only")
    samples, epochs = (1000, 6) if not benchmark.disabled else (256, 1)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    results = {}

    def side_by_side():
        proc = ctx.Process(target=_single_and_ddp_x1, args=(queue, flush, samples, epochs,
                                                             {"threads": threads} if threads else {}))
        proc.start()
        results.update(queue.get(timeout=1800))
        proc.join()

    benchmark.group = "ddp x1 vs single (alternating epochs, one process)"
    benchmark.pedantic(side_by_side, rounds=1, warmup_rounds=0)
    ratio = statistics.median(results["single"]) / statistics.median(results["ddp"])  # samples/s ddp / single
    benchmark.extra_info.update({"ddp_over_single_samples_per_s": ratio, "threads": results["threads"],
                                 "single_epoch_s": results["single"], "ddp_epoch_s": results["ddp"],
                                 "single_cpu_s": results["single_cpu"], "ddp_cpu_s": results["ddp_cpu"],
                                 "ddp_over_single_cpu_s": statistics.median(results["ddp_cpu"])
                                 / statistics.median(results["single_cpu"])})
    if benchmark.disabled:
        return
    assert ratio >= 0.95, results
