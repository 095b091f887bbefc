"""The up-front model check (issue 21, kinds 1 and 2): models as users bring them are accepted by a documented
rule or refused in one line, in the trainer and in the sweep before any configuration."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY, TRAIN_TINY, sweep

from bench.records.results import read_records
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.model_check import build_and_check, logits_of
from mgpu_core.parallel import layer_units

TESTS = Path(__file__).resolve().parents[1]


def check(model, image_size=32, augment=True, data_size=None):
    cfg = TrainConfig(model=model, image_size=image_size, augment=augment)
    return build_and_check(cfg, 10, data_size or image_size)[1]


@pytest.mark.parametrize("model, how, rule", [
    ("user_models:ResNetNoArgs", "no arguments", "tensor"),
    ("user_models:Inception", "num_classes", "first element in training, tensor in eval"),
    ("user_models:DictOut", "num_classes", "logits key"),
    ("resnet18", "registry", "tensor"),
])
def test_accepted_models_say_how_they_were_called_and_which_rule_gave_the_logits(model, how, rule):
    result = check(model)
    assert (result.factory_call, result.output_rule) == (how, rule)


@pytest.mark.parametrize("model, image_size, augment, message", [
    ("user_models:string_out", 32, True, "forward returned str, not logits"),
    ("user_models:thousand", 32, True, r"shape \(2, 1000\), expected \(2, 10\)"),
    ("user_models:needs_depth", 32, True, "requires depth"),
    ("user_models:not_a_module", 32, True, "returned str, not a torch.nn.Module"),
    ("user_modelz:Small", 32, True, "no module named 'user_modelz'"),
    ("user_models.nested:Small", 32, True, "user_models.nested"),
    ("resnet18", 1, True, "image_size: 1x1 images cannot take the augmentation"),
    ("resnet18", 4, True, "image_size: 4x4 images cannot take the augmentation"),
    ("user_models:NoParameters", 32, True, "model: no trainable parameters"),  # not an --image-size fault
    ("user_models:RaisesInForward", 32, True, r"model: its training-mode forward raised ValueError: the user's bug "
     r"at every size tried \(32x32, 224x224\): a fault in the model, not in --image-size"),
    ("user_models:Small", 2, False, None),  # tiny but valid without augmentation
])
def test_models_that_cannot_work_are_one_line(model, image_size, augment, message):
    if message is None:
        check(model, image_size, augment)
        return
    with pytest.raises(ConfigError, match=message) as info:
        check(model, image_size, augment)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("image_size", [4, 6])
def test_a_forward_that_fails_at_the_size_names_image_size(image_size):
    with pytest.raises(ConfigError, match=f"image_size: training-mode forward at {image_size}x{image_size} failed"
                                          r".* \(it ran at 32x32, 224x224\)"):
        check("user_models:BigKernel", image_size, augment=False)
    check("user_models:BigKernel", 7, augment=False)

def test_logits_rules():
    t = torch.zeros(2, 10)
    assert logits_of(t) is t and logits_of((t, t + 1)) is t and logits_of({"logits": t}) is t
    with pytest.raises(ConfigError, match="without a 'logits' tensor"):
        logits_of({"out": t})


def test_unused_and_tied_parameters_are_found():
    result = check("user_models:Tied", augment=False)
    assert result.unused_parameters == ("back.weight",)
    assert result.shared_parameters == (("tied_a.weight", "tied_b.weight"),)
    assert check("user_models:Leftover").unused_parameters == ("old_head.weight", "old_head.bias")


def test_fsdp_layer_units_put_modules_that_share_a_parameter_together():
    from user_models import Small, Tied
    model = Tied()
    units = [[type(m).__name__ + str(id(m) == id(model.tied_a)) for m in unit] for unit in layer_units(model)]
    assert len(units) == 4 and ["LinearTrue", "LinearFalse"] in units  # proj, back, (tied_a, tied_b), head
    assert len(layer_units(Small())) == 3  # nothing shared: one unit per module with parameters


def run_trainer(*args):
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "bench.run.torchrun", "--standalone", "--nproc-per-node", "2",
                           "-m", "mgpu_core", *TRAIN_TINY, *args], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.mark.slow
@pytest.mark.parametrize("model, mode, unused", [("user_models:Inception", "ddp", ["aux.weight", "aux.bias"]),
                                                 ("user_models:Leftover", "ddp", ["old_head.weight",
                                                                                  "old_head.bias"]),
                                                 ("user_models:Tied", "fsdp", ["back.weight"])])
def test_models_ddp_and_fsdp_refused_train_on_two_ranks(tmp_path, model, mode, unused):
    proc = run_trainer("--model", model, "--mode", mode, "--no-fused", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["model_check"]["unused_parameters"] == unused


@pytest.mark.slow
def test_a_sweep_refuses_a_broken_model_before_any_configuration(tmp_path):
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = sweep(tmp_path, "--model", "user_models:thousand", "--gpus", "1,2", *TINY, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "(2, 1000)" in proc.stderr, proc.stderr
    assert not (tmp_path / "results.jsonl").exists()
    proc = sweep(tmp_path, "--model", "user_modelz:Small", *TINY, env=env)
    assert proc.returncode == 2 and "no module named 'user_modelz'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_sweep_in_which_every_configuration_failed_exits_1_in_one_line(tmp_path):
    # every configuration diverges: an absurd learning rate
    proc = sweep(tmp_path, "--gpus", "1", "--modes", "single,ddp", "--lr", "1e30", *TINY)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m bench.scaling: error: every configuration "
                                                            "failed (3)")  # and the closing baseline
    assert {r["status"] for r in read_records(tmp_path / "results.jsonl")} == {"failed"}
