"""What would break or mislead on the first GPU run, checked on CPU where the mechanism shows there (the CUDA side of
each is in test_cuda.py): compile under ddp's no_sync, peak memory of the training epochs only, the 1-rank
collective smoke, SyncBatchNorm on a model without BatchNorm, DataParallel's replicas in bf16, warm-up of the last
batch's shape, the profile's regions, the GPU peak table, provenance of TF32 and NCCL, and DDP's teardown order."""

import json
import mmap
import threading
import weakref

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import mgpu_core.trainer as trainer_module
from mgpu_core.cli import run_configuration
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import DistEnv, process_group
from mgpu_core.model import SimpleCNN
from mgpu_core.models import peak_tflops
from mgpu_core.parallel import ReplicaAutocast, gradient_sync, unwrap, wrap_model
from mgpu_core.pipelines import last_batch_size
from mgpu_core.trainer import peak_memory_bytes, prepare, reset_peak_memory, train_and_evaluate, warm_up

CPU = {"device": "cpu", "dataset": "synthetic", "epochs": 1, "warmup_steps": 1, "batch_size": 64}
CPU_ENV = DistEnv(rank=0, world_size=1, local_rank=0, local_world_size=1, device=torch.device("cpu"), backend=None,
                  threads=1)


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def test_gradient_sync_looks_through_torch_compile(no_torchrun):
    """torch.compile's wrapper is no DDP module: seen as one, accumulation would all-reduce every micro-batch."""
    cfg = TrainConfig(mode="ddp", **CPU)
    with process_group(cfg) as env:
        ddp = DistributedDataParallel(SimpleCNN(10))
        compiled = torch.compile(ddp)  # lazy: nothing compiles until it is called
        assert not isinstance(compiled, DistributedDataParallel)
        with gradient_sync(compiled, sync=False):
            assert ddp.require_backward_grad_sync is False  # inside DDP's no_sync()
        assert ddp.require_backward_grad_sync is True
        with gradient_sync(compiled, sync=True):
            assert ddp.require_backward_grad_sync is True
        del compiled, ddp, env


def test_peak_memory_restarts_and_the_resident_dataset_is_reported_apart(small_synthetic):
    # An anonymous mapping of its own: an array from malloc may reuse heap pages already resident in this
    # long-lived test process, and freeing it may return nothing to the OS (the CI failure of stop 26).
    def rss_bytes() -> int:
        return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS:"))

    big = mmap.mmap(-1, 64 * 2**20)
    big.write(b"\x01" * len(big))  # touched: resident
    before, rss_with = peak_memory_bytes(CPU_ENV), rss_bytes()
    big.close()  # munmap
    reset_peak_memory(CPU_ENV)
    after, rss_without = peak_memory_bytes(CPU_ENV), rss_bytes()
    assert after < before - 32 * 2**20, f"peak {before} -> {after} bytes; resident {rss_with} -> {rss_without}"
    with process_group(TrainConfig(**CPU)) as env:
        device = train_and_evaluate(TrainConfig(**CPU), env, small_synthetic, log=lambda _: None)[0]
        loader = train_and_evaluate(TrainConfig(**CPU, pipeline="dataloader", workers=0), env, small_synthetic,
                                    log=lambda _: None)[0]
    images_and_labels = (512 + 101) * (32 * 32 * 3 + 8)  # uint8 images, int64 labels, train and test
    assert device.resident_data_bytes == images_and_labels and loader.resident_data_bytes == 0
    assert device.peak_memory_bytes[0] > 0


def test_collective_smoke_on_one_rank(no_torchrun, tmp_path, capsys):
    from bench.comm import main
    out = tmp_path / "smoke.json"
    assert main(["--smoke", "--device", "cpu", "--dataset", "synthetic", "--max-bytes", "16384", "--iters", "3",
                 "--compute-steps", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["devices"] == 1 and result["backend"] == "gloo" and result["compute_step_s"] > 0
    assert {r["op"] for r in result["rows"]} == {"all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter"}
    assert all(r["check"] == "ok" and r["time_s"] > 0 for r in result["rows"])
    assert all(r["busbw_bytes_per_s"] == 0 for r in result["rows"] if r["op"] == "all_reduce")
    assert "no link measured" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--smoke", "--gpus", "2"])
    assert exc.value.code == 2


def test_sync_bn_on_a_model_without_batchnorm_is_refused():
    cfg = TrainConfig(mode="ddp", sync_bn=True, device="cpu")
    with pytest.raises(ConfigError, match="simplecnn has no BatchNorm"):
        wrap_model(SimpleCNN(10), cfg, CPU_ENV)


def _dtype_probe(seen: list) -> nn.Module:
    class Probe(nn.Linear):
        def forward(self, x):
            y = super().forward(x)
            seen.append((torch.get_autocast_dtype("cpu"), y.dtype))
            return y
    return Probe(8, 8)


def test_replicas_enter_bf16_autocast_themselves():
    """What nn.DataParallel's parallel_apply does in each replica's thread: re-enter autocast with the thread's
    default dtype (float16 on CUDA). The wrapper computes in bf16 all the same; the bare module does not."""
    seen_bare, seen_wrapped = [], []
    bare, wrapped = _dtype_probe(seen_bare), ReplicaAutocast(_dtype_probe(seen_wrapped), "cpu", torch.bfloat16)

    def replica_thread():
        with torch.autocast("cpu", dtype=torch.float16):
            bare(torch.randn(2, 8))
            wrapped(torch.randn(2, 8))
    thread = threading.Thread(target=replica_thread)
    thread.start()
    thread.join()
    assert seen_bare == [(torch.float16, torch.float16)]
    assert seen_wrapped == [(torch.bfloat16, torch.bfloat16)]
    inner = SimpleCNN(10)
    assert unwrap(nn.DataParallel(ReplicaAutocast(inner, "cuda", torch.bfloat16))) is inner


def test_warm_up_runs_the_last_batch_shape(small_synthetic):
    """512 samples at batch 100: training runs whole batches only (mgpu_core.pipelines.LAST_BATCH_POLICY), so no
    epoch meets a shape warm-up did not run (the 12 left over are not trained), and cuDNN never autotunes inside
    the clock."""
    cfg = TrainConfig(**(CPU | {"batch_size": 100, "warmup_steps": 2}))
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, small_synthetic)
        seen = []
        unwrap(runner.model).register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
        _, _, steps = warm_up(runner, train_pipe, cfg)
        assert last_batch_size(train_pipe) is None
    assert seen == [100, 100] and steps == 2


def test_profile_counts_each_region_on_the_host_side(small_synthetic, tmp_path):
    from bench.profile import main
    out = tmp_path / "profile.md"
    assert main(["--device", "cpu", "--dataset", "synthetic", "--synthetic-train-size", "512",
                 "--synthetic-test-size", "100", "--batch-size", "64", "--steps", "3", "--warmup-steps", "1",
                 "--out", str(out)]) == 0
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| part")}
    assert set(rows) == {"data", "forward", "backward", "optimizer", "communication"}
    assert rows["forward"] > 0 and rows["backward"] > 0 and rows["optimizer"] > 0


@pytest.mark.parametrize(("name", "bf16", "fp32"), [
    ("NVIDIA H100 80GB HBM3", 989.4, 66.9),
    ("NVIDIA H100 PCIe", 756.0, 51.2),
    ("NVIDIA H100 NVL", 835.5, 60.0),
    ("NVIDIA H200", 989.4, 66.9),
    ("NVIDIA H200 NVL", 835.5, 60.0),
    ("NVIDIA A100-SXM4-80GB", 312.0, 19.5),
    ("NVIDIA A100 80GB PCIe", 312.0, 19.5),
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", None, None),
    ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", None, None),
    ("NVIDIA L40S", 362.05, 91.6),
    ("NVIDIA L40", 181.05, 90.5),
    ("NVIDIA L4", 121.0, 30.3),
    ("NVIDIA A10", 125.0, 31.2),
    ("NVIDIA A10G", None, None),
    ("Tesla V100-SXM2-16GB", None, 15.7),
    ("NVIDIA GeForce RTX 4090", None, None),
    ("Intel(R) Xeon(R) Platinum 8480+", None, None),
])
def test_peak_table_matches_whole_device_names(name, bf16, fp32):
    assert (peak_tflops(name, "bf16"), peak_tflops(name, "fp32")) == (bf16, fp32)


def test_provenance_records_tf32_and_formats_nccl_versions():
    from bench.run.provenance import collect, nccl_version_text
    assert nccl_version_text((2, 21, 5)) == "2.21.5"
    assert nccl_version_text((2, 27, 3, "+cuda12.9")) == "2.27.3+cuda12.9"
    assert nccl_version_text((2, 19, 3, "a0")) == "2.19.3-a0"
    tf32 = collect("fp32", 0, ["x"])["tf32"]
    assert tf32 == {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                    "float32_matmul_precision": torch.get_float32_matmul_precision()}


@pytest.mark.parametrize("diverge", [False, True], ids=["finished", "failed"])
def test_ddp_wrapper_is_freed_before_its_group_is_destroyed(no_torchrun, small_synthetic, monkeypatch, diverge):
    """The reducer must not outlive its group (torch 2.11 + gloo can deadlock): after a run and after a failure."""
    wrappers, alive_at_destroy = [], []
    real_wrap, real_destroy = trainer_module.wrap_model, torch.distributed.destroy_process_group

    def wrap(*args, **kwargs):
        model = real_wrap(*args, **kwargs)
        wrappers.append(weakref.ref(model))
        return model

    def destroy(*args, **kwargs):
        alive_at_destroy.append([ref() is not None for ref in wrappers])
        return real_destroy(*args, **kwargs)
    monkeypatch.setattr(trainer_module, "wrap_model", wrap)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", destroy)
    monkeypatch.setattr("mgpu_core.cli.load_dataset", lambda cfg, notice: small_synthetic)
    cfg = TrainConfig(mode="ddp", optimizer="sgd", lr=1e12 if diverge else 0.01, **CPU)
    assert run_configuration(cfg, "test", lambda result, env: None) == (1 if diverge else 0)
    assert alive_at_destroy == [[False]]
