"""The trainer on one process: the timed-epoch record, warm-up, determinism, evaluation."""

import math

import pytest
import torch

from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import DistEnv, process_group
from mgpu_core.parallel import unwrap
from mgpu_core.pipelines import build_pipelines
from mgpu_core.trainer import train_and_evaluate


def train(data, **overrides):
    cfg = TrainConfig(**({"device": "cpu", "dataset": "synthetic", "batch_size": 64, "epochs": 1,
                          "warmup_steps": 0} | overrides))
    with process_group(cfg) as env:
        result, model = train_and_evaluate(cfg, env, data, log=lambda _: None)
        return result, unwrap(model), cfg, env


def test_epoch_record_is_internally_consistent(small_synthetic):
    result, _, _, _ = train(small_synthetic, epochs=2, batch_size=100)
    assert len(result.epochs) == len(result.evals) == 2
    for record in result.epochs:
        assert record.samples == 500 and record.steps == 512 // 100  # whole batches only: LAST_BATCH_POLICY
        assert record.time_s > 0
        assert record.samples_per_s == pytest.approx(record.samples / record.time_s)
        assert record.samples_per_s_per_device == pytest.approx(record.samples_per_s)
        assert math.isfinite(record.loss) and record.loss > 0 and 0 <= record.train_acc <= 1
    for evaluation in result.evals:
        assert evaluation.samples == 101
        assert evaluation.accuracy == pytest.approx(evaluation.correct / 101)
    assert result.devices == 1 and result.world_size == 1 and result.backend is None
    assert result.to_dict()["final_val_acc"] == result.evals[-1].accuracy
    assert result.dataset["name"] == "synthetic"


def test_warmup_is_untimed_and_leaves_training_unchanged(small_synthetic):
    plain, plain_model, _, _ = train(small_synthetic, epochs=2)
    warm, warm_model, _, _ = train(small_synthetic, epochs=2, warmup_epochs=1, warmup_steps=3)
    assert warm.warmup_steps == 8 + 3 and warm.warmup_s > 0 and plain.warmup_s == 0
    assert [e.loss for e in warm.epochs] == [e.loss for e in plain.epochs]
    for a, b in zip(plain_model.parameters(), warm_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_same_seed_same_weights_other_seed_other_weights(small_synthetic):
    _, a, _, _ = train(small_synthetic, augment=True)
    _, b, _, _ = train(small_synthetic, augment=True)
    _, c, _, _ = train(small_synthetic, augment=True, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_evaluation_matches_a_direct_count(small_synthetic):
    result, model, cfg, env = train(small_synthetic)
    _, test_pipe = build_pipelines(cfg, small_synthetic, env)
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_pipe)
    assert result.evals[-1].correct == correct


def test_dataloader_and_device_pipelines_train_alike(small_synthetic):
    """Same samples in the same order: the two pipelines give the same losses up to float rounding."""
    device, _, _, _ = train(small_synthetic, epochs=2, pipeline="device", augment=False)
    loader, _, _, _ = train(small_synthetic, epochs=2, pipeline="dataloader", workers=0, augment=False)
    for a, b in zip(device.epochs, loader.epochs, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-3)


def test_bf16_channels_last_trains(small_synthetic):
    from mgpu_core.hardware import cpu_has_bf16
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 support")
    result, _, _, _ = train(small_synthetic, precision="bf16", channels_last=True, epochs=2)
    assert result.epochs[-1].loss < result.epochs[0].loss


def test_ddp_group_of_one_without_torchrun(small_synthetic, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    result, _, _, _ = train(small_synthetic, mode="ddp")
    assert result.backend == "gloo" and result.world_size == 1 and result.epochs[0].samples == 512
    assert not torch.distributed.is_initialized()  # torn down


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_the_last_batch_policy_is_the_same_at_every_device_count(world_size):
    """258 samples, batch 128 (the issue's BatchNorm case): every rank trains whole batches only, at every count."""
    from mgpu_core.synthetic import synthetic_cifar
    data = synthetic_cifar(258, 10, seed=0)
    cfg = TrainConfig(device="cpu", mode="ddp" if world_size > 1 else "single", batch_size=128 // world_size)
    env = DistEnv(rank=world_size - 1, world_size=world_size, local_rank=0, local_world_size=world_size,
                  device=torch.device("cpu"), backend="gloo" if world_size > 1 else None, threads=1)
    train_pipe, test_pipe = build_pipelines(cfg, data, env)
    sizes = [len(y) for _, y in train_pipe]
    assert sizes == [128 // world_size] * 2  # never the 1- or 2-sample tail of a shard
    assert sum(len(y) for _, y in test_pipe) == len(range(world_size - 1, 10, world_size))  # evaluation keeps all


@pytest.mark.parametrize("samples, accum", [(500, 1000), (500, 4), (100, 1)])
def test_accumulation_without_one_full_step_is_one_line(samples, accum):
    from mgpu_core.synthetic import synthetic_cifar
    data = synthetic_cifar(samples, 10, seed=0)
    with pytest.raises(ConfigError, match="not one full step per epoch"):
        train(data, batch_size=128, grad_accum=accum, mode="single" if accum == 1 else "ddp")


def test_accumulation_trains_whole_steps_and_records_the_samples(small_synthetic):
    result, _, _, _ = train(small_synthetic, mode="ddp", batch_size=64, grad_accum=3)
    assert result.epochs[0].steps == 2 and result.epochs[0].samples == 2 * 3 * 64  # 384 of 512, recorded as such
