import dataclasses
import subprocess
import sys
from dataclasses import fields

import pytest
import torch

from mgpu_core.cli_args import field_docs
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.recipe import RECIPES


def test_config_is_frozen_and_replace_resolves_the_new_recipe():
    reference = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        reference.lr = 1.0
    classic = dataclasses.replace(reference, recipe="classic")
    assert classic.hparams == RECIPES["classic"] and reference.hparams == RECIPES["reference"]
    tuned = dataclasses.replace(classic, lr=0.01)
    assert tuned.hparams.lr == 0.01 and tuned.hparams.optimizer == "adam"
    assert tuned.to_dict()["lr"] == 0.01 and tuned.to_dict()["weight_decay"] == 0.0


def test_every_field_has_a_docstring():
    docs = field_docs(TrainConfig)
    assert {f.name for f in fields(TrainConfig)} == set(docs)
    assert all(len(d) > 10 for d in docs.values())


@pytest.mark.parametrize("overrides, field", [
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"mode": "tp"}, "mode"),
    ({"pipeline": "magic"}, "pipeline"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"precision": "fp8"}, "precision"),
    ({"workers": -1}, "workers"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"lr": 0.0}, "lr"),
    ({"train_samples": 0}, "train_samples"),
    ({"dp_gpus": 2}, "dp_gpus"),
    ({"mode": "dp", "device": "cpu", "dp_gpus": 2}, "mode"),
    ({"batch_size": True}, "batch_size"),
    ({"lr": float("inf")}, "lr"),
    ({"weight_decay": float("inf")}, "weight_decay"),
    ({"lr": float("nan")}, "lr"),
    ({"seed": 2**64}, "seed"),
    ({"dist_timeout_s": 1e300}, "dist_timeout_s"),
    ({"recipe": "modern"}, "recipe"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        TrainConfig(**overrides)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mgpu_core", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("args, text", [
    (["--batch-size", "0"], "batch_size: must be an integer >= 1"),
    (["--batch-size", "a"], "invalid int value"),
    (["--mode", "tp"], "invalid choice"),
    (["--epochs", "-1"], "epochs"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar: no such file or folder"),
    (["--mode", "dp", "--devices", "2", "--device", "cpu"], "dp needs CUDA"),  # the old name of --dp-gpus
    (["--lr", "inf"], "lr: must be a finite number"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, text):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert text in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_help_lists_flags_from_the_dataclass():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in proc.stdout
    assert "torchrun" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_dp_without_cuda_is_refused_in_one_line():
    proc = run_cli("--mode", "dp", "--devices", "2", "--dataset", "synthetic")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("python -m mgpu_core: error: mode: dp needs CUDA devices and none is visible; "
                                   "use ddp (CPU processes over gloo)")


def test_a_data_dir_with_the_synthetic_set_is_refused_as_a_flag_that_changes_nothing():
    with pytest.raises(ConfigError, match="data_dir: has no effect with --dataset synthetic"):
        TrainConfig(dataset="synthetic", data_dir="/data/cifar10")
    assert TrainConfig(dataset="cifar10", data_dir="/data/cifar10").data_dir == "/data/cifar10"
