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
