"""The model registry: every model trains on CPU (single and 2 gloo ranks), FLOPs, a user's own model, resizing."""

import subprocess
import sys

import pytest
import torch
from helpers import run_ranks

from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import process_group
from mgpu_core.models import build_model, flops_per_sample, gradient_bytes, parameter_count, peak_tflops
from mgpu_core.names import MODEL_NAMES
from mgpu_core.pipelines import DataLoaderPipeline, DevicePipeline
from mgpu_core.synthetic import synthetic_cifar
from mgpu_core.trainer import prepare

SIZES = {"simplecnn": 32, "resnet18": 32, "resnet50": 32, "mobilenet_v3_small": 32, "vit_b_16": 32,
         "docs.my_model:wide_cnn": 48}
SMALL = {"device": "cpu", "dataset": "synthetic", "batch_size": 4, "warmup_steps": 0, "threads": 1,
         "dist_timeout_s": 120}


def two_steps(cfg: TrainConfig, env, data) -> tuple[float, bool]:
    """(mean loss, every parameter moved) after two training steps."""
    runner, train_pipe, _ = prepare(cfg, env, data)
    before = [p.detach().clone() for p in runner.model.parameters()]
    loss_sum, _, samples, steps = runner.run(train_pipe, max_steps=2)
    moved = all(not torch.equal(a, b) for a, b in zip(before, runner.model.parameters(), strict=True))
    return float(loss_sum) / samples, moved and steps == 2


def _ddp_all_models(rank, init_method):
    out = {}
    for name, size in SIZES.items():
        cfg = TrainConfig(**SMALL, mode="ddp", model=name, image_size=size)
        with process_group(cfg, init_method=init_method + name.replace(":", "_")) as env:
            out[name] = two_steps(cfg, env, synthetic_cifar(16, 8, seed=0, size=size))
    return out


@pytest.mark.slow
def test_every_model_trains_two_steps_single_and_ddp(tmp_path):
    for name, size in SIZES.items():
        cfg = TrainConfig(**SMALL, model=name, image_size=size)
        with process_group(cfg) as env:
            loss, moved = two_steps(cfg, env, synthetic_cifar(16, 8, seed=0, size=size))
        assert moved and torch.isfinite(torch.tensor(loss)), name
    ranks = run_ranks(_ddp_all_models, 2, tmp_path)
    for name in SIZES:
        assert all(r[name][1] for r in ranks), name
        assert ranks[0][name][0] != ranks[1][name][0], name  # each rank trained on its own shard


def test_simplecnn_flops_match_an_independent_count():
    model = build_model("simplecnn", 10, 32)
    forward = (2 * 3 * 9 * 32 * 32 * 32       # conv 3->32, 3x3, 32x32 outputs
               + 2 * 32 * 9 * 64 * 16 * 16    # conv 32->64 on the pooled 16x16
               + 2 * 4096 * 512 + 2 * 512 * 10)
    first_conv = 2 * 3 * 9 * 32 * 32 * 32
    by_hand = 3 * forward - first_conv  # backward: weights and inputs, except the image's own gradient
    assert flops_per_sample(model, 32, torch.device("cpu")) == pytest.approx(by_hand, rel=0.01)
    assert parameter_count(model) == 2_122_186 and gradient_bytes(model) == 2_122_186 * 4


@pytest.mark.parametrize("name, size, message", [
    ("resnet9000", 32, "model: unknown 'resnet9000'"),
    ("simplecnn", 64, "image_size: simplecnn is fixed at 32x32"),
    ("vit_b_16", 40, "image_size: vit_b_16 needs a multiple of its 16-pixel patch"),
    ("no_such_package.mod:make", 32, "model: cannot import no_such_package.mod (ModuleNotFoundError"),
    ("docs.my_model:missing", 32, "model: docs.my_model has no callable missing"),
    ("torch:zeros", 32, "model: torch:zeros(num_classes=10) failed (TypeError"),
    ("math:floor", 32, "model: math:floor requires x; the harness calls it with num_classes only"),
    ("collections:OrderedDict", 32, "model: collections:OrderedDict returned OrderedDict, not a torch.nn.Module"),
])
def test_bad_models_are_one_line_config_errors(name, size, message):
    with pytest.raises(ConfigError) as info:
        build_model(name, 10, size)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_names_a_bad_model_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "mgpu_core", "--model", "docs.my_model:missing", "--dataset",
                           "synthetic"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "python -m mgpu_core: error: model: docs.my_model has no callable missing")


def test_resize_on_the_device_matches_the_dataloader_resize(small_synthetic):
    from mgpu_core.pipelines import BatchSpec
    spec = BatchSpec(device=torch.device("cpu"), batch_size=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                     channels_last=False, rank=0, world_size=1, seed=7, train=True, augment=False, image_size=64)
    device = next(iter(DevicePipeline(small_synthetic.train_x, small_synthetic.train_y, spec)))
    loader = next(iter(DataLoaderPipeline(small_synthetic.train_x, small_synthetic.train_y, spec, workers=0)))
    assert device[0].shape == (32, 3, 64, 64)
    torch.testing.assert_close(device[0], loader[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(device[1], loader[1])


def test_synthetic_set_at_imagenet_size_is_still_learnable_shape():
    data = synthetic_cifar(4, 2, seed=1, size=224)
    assert data.train_x.shape == (4, 224, 224, 3) and data.image_size == 224


def test_peak_table():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert peak_tflops("Tesla V100-SXM2-16GB", "bf16") is None and peak_tflops("Intel Xeon", "fp32") is None


def test_every_registry_name_is_buildable():
    for name in MODEL_NAMES:
        assert isinstance(build_model(name, 10, 32), torch.nn.Module)
