import subprocess
import sys
from dataclasses import fields

import pytest
import torch

from mgpu_core.cli_args import field_docs
from mgpu_core.config import ConfigError, TrainConfig


def test_defaults_are_valid_and_the_classic_batch():
    cfg = TrainConfig()
    assert cfg.batch_size == 128 and cfg.mode == "single"


def test_every_field_has_a_docstring():
    docs = field_docs(TrainConfig)
    assert {f.name for f in fields(TrainConfig)} == set(docs)
    assert all(len(d) > 10 for d in docs.values())


@pytest.mark.parametrize("overrides, field", [
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"mode": "fsdp"}, "mode"),
    ({"pipeline": "magic"}, "pipeline"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"precision": "fp8"}, "precision"),
    ({"workers": -1}, "workers"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"lr": 0.0}, "lr"),
    ({"train_samples": 0}, "train_samples"),
    ({"devices": 2}, "devices"),
    ({"mode": "dp", "device": "cpu", "devices": 2}, "mode"),
    ({"batch_size": True}, "batch_size"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        TrainConfig(**overrides)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mgpu_core", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, text", [
    (["--batch-size", "0"], "batch_size: must be an integer >= 1"),
    (["--batch-size", "a"], "invalid int value"),
    (["--mode", "fsdp"], "invalid choice"),
    (["--epochs", "-1"], "epochs"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar: no such file or folder"),
    (["--mode", "dp", "--devices", "2", "--device", "cpu"], "dp needs CUDA"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, text):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert text in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_cli_help_lists_flags_from_the_dataclass():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in proc.stdout
    assert "torchrun" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_dp_without_cuda_is_refused_in_one_line():
    proc = run_cli("--mode", "dp", "--devices", "2", "--dataset", "synthetic")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("python -m mgpu_core: error: mode: dp needs CUDA devices and none is visible; "
                                   "use ddp (CPU processes over gloo)")
