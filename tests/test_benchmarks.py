"""pytest-benchmark suite (`pytest --benchmark-only`); plain `pytest` runs each body once as a test."""

import pytest
import torch

from mgpu_core.config import TrainConfig
from mgpu_core.distributed import process_group
from mgpu_core.hardware import cpu_has_bf16
from mgpu_core.model import SimpleCNN
from mgpu_core.parallel import wrap_model
from mgpu_core.pipelines import build_pipelines
from mgpu_core.synthetic import synthetic_cifar
from mgpu_core.trainer import make_runner, train_epoch

SAMPLES = 2048
PRECISIONS = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])


@pytest.fixture(scope="module")
def data():
    return synthetic_cifar(SAMPLES, 100, seed=0)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("pipeline", ["device", "dataloader"])
def test_timed_epoch(benchmark, data, pipeline, precision):
    cfg = TrainConfig(device="cpu", dataset="synthetic", pipeline=pipeline, precision=precision,
                      channels_last=precision == "bf16", workers=2)
    with process_group(cfg) as env:
        torch.manual_seed(cfg.seed)
        model = wrap_model(SimpleCNN(), cfg, env)
        train_pipe, _ = build_pipelines(cfg, data, env)
        runner = make_runner(model, cfg, env, len(train_pipe))
        benchmark.group = "timed epoch (2048 synthetic samples)"
        # train_epoch synchronizes the device before returning, so each round's time is complete
        record = benchmark.pedantic(train_epoch, args=(runner, train_pipe, 0), rounds=3, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = record.samples_per_s
    assert record.samples == SAMPLES and record.steps == SAMPLES // 128
