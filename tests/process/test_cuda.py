"""Checks that need a CUDA device (skipped elsewhere); bench.gpu_check runs them first on a GPU machine."""

import pytest
import torch

from mgpu_core.config import TrainConfig
from mgpu_core.distributed import process_group
from mgpu_core.pipelines import build_pipelines
from mgpu_core.trainer import prepare, train_and_evaluate, warm_up

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def cuda_config(**overrides):
    return TrainConfig(**({"device": "cuda", "dataset": "synthetic", "epochs": 1, "warmup_steps": 2} | overrides))


def test_timed_loop_never_syncs_the_host(small_synthetic):
    """With CUDA's sync debug mode set to error, any host sync inside the training steps raises."""
    for overrides in ({}, {"precision": "bf16", "channels_last": True}, {"optimizer": "adam"}):
        cfg = cuda_config(**overrides)
        with process_group(cfg) as env:
            runner, train_pipe, _ = prepare(cfg, env, small_synthetic)
            warm_up(runner, train_pipe, cfg)
            train_pipe.set_epoch(0)
            torch.cuda.set_sync_debug_mode("error")
            try:
                runner.run(train_pipe)
            finally:
                torch.cuda.set_sync_debug_mode("default")


def test_device_pipeline_on_cuda_matches_cpu(small_synthetic):
    batches = {}
    for device in ("cpu", "cuda"):
        cfg = cuda_config(device=device, augment=False)
        with process_group(cfg) as env:
            train_pipe, _ = build_pipelines(cfg, small_synthetic, env)
            batches[device] = [(x.cpu(), y.cpu()) for x, y in train_pipe]
    for (cx, cy), (gx, gy) in zip(batches["cpu"], batches["cuda"], strict=True):
        assert torch.equal(cy, gy)
        torch.testing.assert_close(cx, gx)


def test_single_dp_and_ddp_of_one_gpu_train_alike(small_synthetic):
    losses = {}
    for mode in ("single", "dp", "ddp"):
        cfg = cuda_config(mode=mode, epochs=2, augment=False, cudnn_benchmark=False)
        with process_group(cfg) as env:
            result, _ = train_and_evaluate(cfg, env, small_synthetic, log=lambda _: None)
        losses[mode] = [e.loss for e in result.epochs]
    assert losses["dp"] == pytest.approx(losses["single"], rel=1e-4)
    assert losses["ddp"] == pytest.approx(losses["single"], rel=1e-4)


def test_bf16_compile_reports_compile_time_apart(small_synthetic):
    cfg = cuda_config(precision="bf16", channels_last=True, compile=True, epochs=2)
    with process_group(cfg) as env:
        result, _ = train_and_evaluate(cfg, env, small_synthetic, log=lambda _: None)
    assert result.compile_s > 0 and all(e.samples == 512 for e in result.epochs)  # 512 = 4 full batches
    assert result.epochs[-1].loss < result.epochs[0].loss


def test_dataparallel_replicas_compute_in_bf16():
    """parallel_apply re-enters autocast in each replica's thread without a dtype (a new thread's CUDA default is
    float16); ReplicaAutocast makes every replica compute in bf16. Two replicas on GPU 0 stand in for two GPUs."""
    from torch import nn
    from torch.nn.parallel import parallel_apply

    from mgpu_core.parallel import ReplicaAutocast
    lin = ReplicaAutocast(nn.Linear(64, 64).cuda(), "cuda", torch.bfloat16)
    x = torch.randn(8, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outs = parallel_apply([lin, lin], [(x,), (x,)], devices=[0, 0])
    assert [o.dtype for o in outs] == [torch.bfloat16, torch.bfloat16]


def test_dp_bf16_trains(small_synthetic):
    cfg = cuda_config(mode="dp", precision="bf16", epochs=2)
    with process_group(cfg) as env:
        result, _ = train_and_evaluate(cfg, env, small_synthetic, log=lambda _: None)
    assert result.epochs[-1].loss < result.epochs[0].loss


def test_profile_counts_device_time_once_and_backward_on_its_range(small_synthetic):
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    from bench.profile import region_rows
    cfg = cuda_config(precision="bf16")
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, small_synthetic)
        warm_up(runner, train_pipe, cfg)
        runner.region = record_function
        with torch.autograd.set_multithreading_enabled(False), \
                profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            runner.run(train_pipe, max_steps=3)
            torch.cuda.synchronize()
    events = prof.events()
    kernels_ms = sum(e.device_time_total for e in events
                     if e.device_type != DeviceType.CPU and not e.is_user_annotation) / 1e3
    rows = {name: device_ms for name, _, device_ms in region_rows(events)}
    assert rows["backward"] > 0 and rows["forward"] > 0
    assert rows["forward"] + rows["backward"] + rows["optimizer"] <= kernels_ms * 1.01


def test_peak_memory_is_the_training_epochs_not_evaluation():
    from mgpu_core.synthetic import synthetic_cifar
    data = synthetic_cifar(512, 10_000, seed=3)
    cfg = cuda_config(eval_batch_size=10_000)  # evaluation's activations dwarf training's at batch 128
    with process_group(cfg) as env:
        torch.cuda.reset_peak_memory_stats()
        result, _ = train_and_evaluate(cfg, env, data, log=lambda _: None)
        since_last_epoch = torch.cuda.max_memory_allocated()
    assert 0 < result.resident_data_bytes < result.peak_memory_bytes[0] < since_last_epoch / 2


def test_nccl_version_reads_as_text():
    import re

    from bench.run.provenance import nccl_version_text
    assert re.fullmatch(r"\d+\.\d+\.\d+([-+.].*)?", nccl_version_text(torch.cuda.nccl.version()))
