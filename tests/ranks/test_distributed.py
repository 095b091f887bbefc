"""Several gloo ranks in fresh processes: DDP parity with one process, exact distributed evaluation, the CLI."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import run_ranks

from bench.run.launch import kill_tree
from mgpu_core.config import TrainConfig
from mgpu_core.distributed import process_group
from mgpu_core.model import SimpleCNN
from mgpu_core.parallel import unwrap, wrap_model
from mgpu_core.pipelines import build_pipelines
from mgpu_core.trainer import evaluate, train_and_evaluate

BASE = {"device": "cpu", "dataset": "synthetic", "warmup_steps": 2, "threads": 1, "dist_timeout_s": 60}


def _train_rank(rank, init_method, overrides, data):
    cfg = TrainConfig(**(BASE | overrides))
    with process_group(cfg, init_method=init_method) as env:
        result, model = train_and_evaluate(cfg, env, data, log=lambda _: None)
        return result, {k: v.clone() for k, v in unwrap(model).state_dict().items()}


def _evaluate_rank(rank, init_method, overrides, data):
    cfg = TrainConfig(**(BASE | overrides))
    with process_group(cfg, init_method=init_method) as env:
        torch.manual_seed(0)
        model = wrap_model(SimpleCNN(), cfg, env)
        return evaluate(model, build_pipelines(cfg, data, env)[1], cfg, env, epoch=0)


def train_single(data, overrides):
    cfg = TrainConfig(**(BASE | overrides))
    with process_group(cfg) as env:
        result, model = train_and_evaluate(cfg, env, data, log=lambda _: None)
        return result, unwrap(model).state_dict()


def test_ddp_on_shards_equals_one_process_on_the_whole_batch(small_synthetic, tmp_path):
    """2 ranks at batch 16 each take the same steps as 1 process at batch 32: the same parameters after 2 epochs.
    SGD, because Adam divides gradients near zero by their own magnitude and so amplifies rounding noise."""
    recipe = {"optimizer": "sgd", "lr": 0.05, "epochs": 2, "augment": False}  # augmentation draws per-rank numbers
    ranks = run_ranks(_train_rank, 2, tmp_path, {"mode": "ddp", "batch_size": 16} | recipe, small_synthetic)
    single, single_state = train_single(small_synthetic, {"mode": "single", "batch_size": 32} | recipe)
    for _, state in ranks:
        for name, tensor in single_state.items():
            torch.testing.assert_close(state[name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    ddp_result = ranks[0][0]
    assert ddp_result.world_size == 2 and ddp_result.devices == 2 and ddp_result.backend == "gloo"
    for ddp_epoch, single_epoch in zip(ddp_result.epochs, single.epochs, strict=True):
        assert ddp_epoch.samples == single_epoch.samples == 512  # SUM over ranks
        assert ddp_epoch.steps == single_epoch.steps == 16
        assert ddp_epoch.loss == pytest.approx(single_epoch.loss, rel=1e-4)
        assert ddp_epoch.samples_per_s_per_device == pytest.approx(ddp_epoch.samples_per_s / 2)
    assert ranks[1][0].epochs[0].time_s == ddp_result.epochs[0].time_s  # MAX-reduced: every rank reports the same
    for epoch in ddp_result.epochs:  # every rank's own time, gathered; the epoch time is their MAX
        assert len(epoch.rank_times_s) == len(epoch.rank_data_wait_s) == 2
        assert max(epoch.rank_times_s) == pytest.approx(epoch.time_s)
        assert all(0 < w < t for w, t in zip(epoch.rank_data_wait_s, epoch.rank_times_s, strict=True))


def test_distributed_evaluation_counts_each_sample_once(small_synthetic, tmp_path):
    """101 test samples over 3 ranks (34, 34, 33): the same count as one process, nothing padded."""
    ranks = run_ranks(_evaluate_rank, 3, tmp_path, {"mode": "ddp"}, small_synthetic)
    cfg = TrainConfig(**BASE)
    with process_group(cfg) as env:
        torch.manual_seed(0)
        model = wrap_model(SimpleCNN(), cfg, env)
        single = evaluate(model, build_pipelines(cfg, small_synthetic, env)[1], cfg, env, epoch=0)
    for record in ranks:
        assert record.samples == single.samples == 101
        assert record.correct == single.correct
        assert record.loss == pytest.approx(single.loss, rel=1e-5)


@pytest.mark.slow
def test_torchrun_cli_two_ranks(tmp_path):
    out = tmp_path / "ddp.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mgpu_core",
         "--mode", "ddp", "--dataset", "synthetic", "--synthetic-train-size", "640", "--synthetic-test-size", "99",
         "--epochs", "2", "--pipeline", "dataloader", "--workers", "1", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdout, proc.stderr = proc.communicate(timeout=300)
    finally:
        kill_tree(proc)  # on a timeout, torchrun's ranks and their workers too, not torchrun alone
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["world_size"] == 2 and record["backend"] == "gloo" and record["config"]["mode"] == "ddp"
    assert [e["samples"] for e in record["epochs"]] == [512, 512]  # 320 per rank: 2 whole batches of 128
    assert record["evals"][-1]["samples"] == 99
    assert proc.stdout.count("notice: running on CPU") == 1  # rank 0 speaks for the run
