"""The GPU session's own programs, each run by bench.gpu_check as a child process under its step's timeout:

  python -m bench.run.gpu_probes env WORK              versions, the device, the peak-table lookup, bf16 matmul,
                                                       what Triton needs, every module imports -> WORK/env.json
  python -m bench.run.gpu_probes data WORK [flags]     decode the data once into the cache, then a cached reload
  python -m bench.run.gpu_probes probes WORK [flags]   confirm or refute each "likely" finding and check its fix
                                                       -> WORK/probes.json
  python -m bench.run.gpu_probes strategies WORK       each DDP/FSDP strategy once on a group of one
  python -m bench.run.gpu_probes matrix WORK [flags]   the input-path matrix against its targets -> WORK/matrix.json
  python -m bench.run.gpu_probes teardown BACKEND ORDER  (the teardown probe's own child: may hang by design)

[flags] are training flags (the data source, the device). A probe's verdict is one of: confirmed (the mechanism
shows here), refuted (it does not), and the fix's check: fix ok / FIX FAILED; or skipped, or error.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from pathlib import Path

from bench.records.units import plural

HARNESS_MODULES = ("mgpu_core.cli", "mgpu_core.trainer", "mgpu_core.parallel", "mgpu_core.collectives",
                   "bench.scaling", "bench.gpu_check", "bench.comm", "bench.profile", "bench.report")
PACKAGES = ("torch", "torchvision", "numpy", "PIL", "psutil", "matplotlib", "tqdm", "pytest", "triton")
TEARDOWN_TIMEOUT_S = 30.0
"""A DDP teardown that has not ended in this long counts as hung."""


def _shell(cmd: list[str], timeout_s: float = 20.0) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return f"({cmd[0]} not found)"
    except subprocess.TimeoutExpired:
        return f"({' '.join(cmd)} timed out after {timeout_s:g} s)"
    return (out.stdout + out.stderr).strip()


def env_probe(work: Path) -> dict:
    """Everything about the machine the session's other numbers depend on; printed and written to env.json."""
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable, "packages": {}}
    for name in PACKAGES:
        try:
            info["packages"][name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - a missing or broken package is a finding, not a crash
            info["packages"][name] = f"MISSING ({type(exc).__name__}: {exc})"
    for cmd in (["nvidia-smi", "-L"],
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_mode,clocks.sm,clocks.max.sm,"
                 "power.limit,temperature.gpu,mig.mode.current", "--format=csv"],
                ["nvidia-smi", "topo", "-m"]):
        info[" ".join(cmd[:2])] = _shell(cmd)
    import torch

    from bench.run.provenance import nccl_version_text, tf32_settings
    from mgpu_core.models import peak_tflops
    info |= {"torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
             "device_count": torch.cuda.device_count(), "tf32": tf32_settings()}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        p = torch.cuda.get_device_properties(0)
        info |= {"device": name, "compute_capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                 "memory_bytes": p.total_memory, "bf16_supported": torch.cuda.is_bf16_supported(),
                 "cudnn": torch.backends.cudnn.version(), "nccl_raw": list(torch.cuda.nccl.version()),
                 "nccl": nccl_version_text(torch.cuda.nccl.version())}
        n, reps, dev = 8192, 10, "cuda"
    else:
        from mgpu_core.hardware import cpu_model
        info["device"] = cpu_model()
        n, reps, dev = 512, 3, "cpu"  # the rehearsal: the same code on a small product
    info["peak_tflops"] = {pr: peak_tflops(info["device"], pr) for pr in ("fp32", "bf16")}
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    sync()
    elapsed = time.perf_counter() - start
    reference = (a[:64].float() @ b.float())
    info["bf16_matmul"] = {"n": n, "tflops": 2 * n**3 * reps / elapsed / 1e12,
                           "max_rel_error": float(((c[:64].float() - reference).abs().max() /
                                                   reference.abs().max()).item())}
    peak = info["peak_tflops"]["bf16"]
    info["bf16_matmul"]["of_peak"] = info["bf16_matmul"]["tflops"] / peak if peak else None
    info["c_compiler"] = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    include = sysconfig.get_paths()["include"]
    info["python_h"] = os.path.exists(os.path.join(include, "Python.h"))
    info["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["imports"] = {}
    for mod in HARNESS_MODULES:
        try:
            importlib.import_module(mod)
            info["imports"][mod] = "ok"
        except Exception as exc:  # noqa: BLE001
            info["imports"][mod] = f"FAILED: {type(exc).__name__}: {exc}"
    for key, value in info.items():
        print(f"## {key}\n{json.dumps(value, indent=1) if isinstance(value, dict) else value}", flush=True)
    (work / "env.json").write_text(json.dumps(info, indent=1, default=str))
    return info


def _train_config(argv: list[str], **overrides):
    """The TrainConfig of these training flags (mgpu_core's parser) with `overrides`."""
    import dataclasses

    from mgpu_core.cli import build_parser
    from mgpu_core.cli_args import config_from_args
    from mgpu_core.config import TrainConfig
    parser = build_parser(prog="python -m bench.run.gpu_probes")
    cfg = config_from_args(TrainConfig, parser.parse_args(argv), parser)
    return dataclasses.replace(cfg, **overrides)


def data_probe(argv: list[str]) -> None:
    from mgpu_core.datasets import load_dataset
    cfg = _train_config(argv)
    for what in ("decode (or find) + cache", "cached reload"):
        start = time.perf_counter()
        data = load_dataset(cfg)
        print(f"{what}: {data.describe()} in {time.perf_counter() - start:.1f} s", flush=True)


class Probes:
    """Collects each probe's verdict as it goes (printed as PROBE lines and kept in probes.json)."""

    def __init__(self, work: Path) -> None:
        self.work, self.found = work, []

    def add(self, item: int, name: str, verdict: str, detail: str) -> None:
        self.found.append({"item": item, "probe": name, "verdict": verdict, "detail": detail})
        print(f"PROBE {item} {name}: {verdict}: {detail}", flush=True)
        (self.work / "probes.json").write_text(json.dumps(self.found, indent=1))

    def run(self, item: int, name: str, fn, *args) -> None:
        try:
            verdict, detail = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a finding; the others still run
            traceback.print_exc()
            verdict, detail = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.add(item, name, verdict, detail)


def _verdict(mechanism: bool, fix_ok: bool) -> str:
    return f"{'confirmed' if mechanism else 'refuted'}; {'fix ok' if fix_ok else 'FIX FAILED'}"


def probe_dp_autocast(cuda: bool) -> tuple[str, str]:
    """Item 8: what dtype DataParallel's replica threads compute in under bf16 autocast, bare and wrapped."""
    import torch
    from torch import nn

    from mgpu_core.parallel import ReplicaAutocast
    if cuda:
        from torch.nn.parallel import parallel_apply
        lin = nn.Linear(64, 64).cuda()
        wrapped = ReplicaAutocast(nn.Linear(64, 64).cuda(), "cuda", torch.bfloat16)
        x = torch.randn(8, 64, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bare = [o.dtype for o in parallel_apply([lin, lin], [(x,), (x,)], devices=[0, 0])]
            fixed = [o.dtype for o in parallel_apply([wrapped, wrapped], [(x,), (x,)], devices=[0, 0])]
        where = "parallel_apply, 2 replicas on GPU 0"
    else:  # the rehearsal: a fresh thread that re-enters autocast with another dtype, as parallel_apply does
        # (two modules: autocast's weight cache is per thread and keyed by the weight, not the dtype)
        lin = nn.Linear(64, 64)
        wrapped = ReplicaAutocast(nn.Linear(64, 64), "cpu", torch.bfloat16)
        bare, fixed = [], []

        def replica():
            with torch.autocast("cpu", dtype=torch.float16):
                bare.append(lin(torch.randn(8, 64)).dtype)
                fixed.append(wrapped(torch.randn(8, 64)).dtype)
        t = threading.Thread(target=replica)
        t.start()
        t.join()
        where = "CPU stand-in: a thread re-entering autocast as float16"
    return (_verdict(torch.float16 in bare, bool(fixed) and all(d == torch.bfloat16 for d in fixed)),
            f"{where}: bare replicas {[str(d) for d in bare]}, with ReplicaAutocast {[str(d) for d in fixed]}")


def probe_partial_batch(argv: list[str], cuda: bool) -> tuple[str, str]:
    """Item 9: a never-seen batch shape's first step against its second (cuDNN autotuning), then the first timed
    epoch after the fixed warm-up against the next."""
    import torch

    from mgpu_core.datasets import load_dataset
    from mgpu_core.distributed import process_group
    from mgpu_core.pipelines import last_batch_size
    from mgpu_core.trainer import prepare, warm_up
    cfg = _train_config(argv, precision="bf16" if cuda else "fp32", epochs=2)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, load_dataset(cfg, notice=print))
        train_pipe.set_epoch(0)
        x, y = next(iter(train_pipe))

        def timed(batches) -> float:
            sync()
            start = time.perf_counter()
            runner.run(batches)
            sync()
            return (time.perf_counter() - start) * 1e3
        timed([(x, y)] * 3)
        odd = [(x[:77], y[:77])]
        first, second = timed(odd), timed(odd)
        warm_up(runner, train_pipe, cfg)
        epochs = []
        for epoch in (0, 1):
            train_pipe.set_epoch(epoch)
            epochs.append(timed(train_pipe))
    mechanism = first > 3 * second and first - second > 5
    fix_ok = epochs[0] < 1.1 * epochs[1]
    return (_verdict(mechanism, fix_ok) if cuda else "rehearsed (CPU: no cuDNN autotuning to see)",
            f"batch of 77 never seen: first step {first:.1f} ms, second {second:.1f} ms "
            f"(cudnn.benchmark={torch.backends.cudnn.benchmark}); with warm-up at the last batch's shape "
            f"({_last_batch_words(last_batch_size(train_pipe))}): first epoch {epochs[0]:.0f} ms, next "
            f"{epochs[1]:.0f} ms")


def _last_batch_words(size: int | None) -> str:
    return plural(size, "sample") if size else "none partial: every batch is full"


def probe_profile(argv: list[str], cuda: bool) -> tuple[str, str]:
    """Item 10: device-side copies of the region names, and backward's kernels outside its range on autograd's
    device thread; then bench.profile's counting against the sum of all kernels."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    from bench.profile import region_rows
    from mgpu_core.datasets import load_dataset
    from mgpu_core.distributed import process_group
    from mgpu_core.trainer import prepare, warm_up
    cfg = _train_config(argv, precision="bf16" if cuda else "fp32")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    found = {}
    with process_group(cfg) as env:
        runner, train_pipe, _ = prepare(cfg, env, load_dataset(cfg, notice=print))
        warm_up(runner, train_pipe, cfg)
        runner.region = record_function
        for threaded in (True, False):
            train_pipe.set_epoch(0)
            with torch.autograd.set_multithreading_enabled(threaded), profile(activities=acts) as prof:
                runner.run(train_pipe, max_steps=5)
                if cuda:
                    torch.cuda.synchronize()
            events = prof.events()
            kernels = sum(e.device_time_total for e in events
                          if e.device_type != DeviceType.CPU and not e.is_user_annotation) / 1e3
            twins = sum(e.device_time_total for e in events
                        if e.device_type != DeviceType.CPU and e.name in ("forward", "backward", "optimizer")) / 1e3
            found[threaded] = (kernels, twins, dict((n, d) for n, _, d in region_rows(events)))
    kernels, twins, rows = found[True]
    _, _, fixed_rows = found[False]
    fixed_kernels = found[False][0]
    counted = sum(fixed_rows[n] for n in ("forward", "backward", "optimizer"))
    mechanism = twins > 0 or rows["backward"] < 0.2 * fixed_rows["backward"]
    fix_ok = fixed_rows["backward"] > 0 and counted <= 1.01 * fixed_kernels
    return (_verdict(mechanism, fix_ok) if cuda else "rehearsed (CPU: no device kernels to count)",
            f"5 steps: all kernels {kernels:.2f} ms; device-side region twins {twins:.2f} ms; backward's device ms "
            f"with autograd's device thread {rows['backward']:.2f}, on the calling thread {fixed_rows['backward']:.2f};"
            f" regions as bench.profile counts them {counted:.2f} ms of {fixed_kernels:.2f} ms of kernels")


def probe_peak_memory(argv: list[str], cuda: bool) -> tuple[str, str]:
    """Item 5: the training peak against the peak since process start (FLOP probe, warm-up, evaluation)."""
    import torch

    from mgpu_core.datasets import load_dataset
    from mgpu_core.distributed import process_group
    from mgpu_core.trainer import train_and_evaluate
    cfg = _train_config(argv, epochs=1)
    with process_group(cfg) as env:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = train_and_evaluate(cfg, env, load_dataset(cfg, notice=print), log=print)[0]
        since = torch.cuda.max_memory_allocated() if cuda else None
    peak, resident = result.peak_memory_bytes[0], result.resident_data_bytes
    mib = 2**20
    if not cuda:
        return "skipped (CPU: no allocator peak to compare)", (f"training peak RSS {peak / mib:.0f} MiB, resident "
                                                               f"data {resident / mib:.1f} MiB")
    return (_verdict(since > peak * 1.05, resident < peak),
            f"training peak {peak / mib:.0f} MiB (of it resident data {resident / mib:.0f} MiB) vs the peak since "
            f"the last epoch began, evaluation included, {since / mib:.0f} MiB")


def probe_compile_no_sync(cuda: bool) -> tuple[str, str]:
    """Item 4: all-reduces of one accumulation step of 2 micro-batches through torch.compile's wrapper of DDP
    (backend eager: dynamo's wrapper without inductor's compile time), counted by a comm hook."""
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from mgpu_core.config import TrainConfig
    from mgpu_core.distributed import process_group
    from mgpu_core.model import SimpleCNN
    from mgpu_core.parallel import gradient_sync
    cfg = TrainConfig(mode="ddp", device="cuda" if cuda else "cpu", dataset="synthetic")
    calls = []

    def counting_hook(state, bucket):
        calls.append(bucket.index())
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut
    with process_group(cfg) as env:
        ddp = DistributedDataParallel(SimpleCNN(10).to(env.device),
                                      device_ids=[env.device.index] if cuda else None)
        ddp.register_comm_hook(None, counting_hook)
        compiled = torch.compile(ddp, backend="eager")
        x = torch.randn(8, 3, 32, 32, device=env.device)
        y = torch.randint(0, 10, (8,), device=env.device)
        for micro in range(2):
            with gradient_sync(compiled, micro == 1):
                F.cross_entropy(compiled(x), y).backward()
        per_sync = len(set(calls))
        total = len(calls)
        bare = isinstance(compiled, DistributedDataParallel)
        del compiled, ddp
    return (_verdict(not bare, total == per_sync),
            f"compiled wrapper is{'' if bare else ' not'} a DDP module; bucket all-reduces over 2 micro-batches: "
            f"{total} ({plural(per_sync, 'bucket')} per synced backward)")


def probe_peak_table(cuda: bool) -> tuple[str, str]:
    """Item 11: the table's figure for this device's real name, and the TF32 defaults provenance records."""
    import torch

    from bench.run.provenance import tf32_settings
    from mgpu_core.hardware import cpu_model
    from mgpu_core.models import peak_tflops
    name = torch.cuda.get_device_name(0) if cuda else cpu_model()
    peaks = {pr: peak_tflops(name, pr) for pr in ("fp32", "bf16")}
    tf32 = tf32_settings()
    verdict = ("confirmed: fp32 convolutions run as TF32 by default; recorded" if tf32["cudnn_allow_tf32"]
               else "refuted: cuDNN TF32 off here; recorded")
    if not cuda:
        verdict = "rehearsed (CPU: TF32 does not apply; the settings are recorded all the same)"
    return verdict, f"{name!r} -> {peaks}; {tf32}"


def probe_nccl_version(cuda: bool) -> tuple[str, str]:
    """Item 12: whether torch.cuda.nccl.version() carries a 4th element here, and the text provenance writes."""
    if not cuda:
        return "skipped (no CUDA)", "torch.cuda.nccl.version() needs CUDA"
    import torch

    from bench.run.provenance import nccl_version_text
    raw = torch.cuda.nccl.version()
    return ("confirmed" if len(raw) > 3 else "refuted") + "; fix ok", f"raw {raw!r} -> {nccl_version_text(raw)!r}"


def probe_teardown(backends: list[str]) -> tuple[str, str]:
    """Item 13: a DDP wrapper freed after destroy_process_group (the old order) and before it (the fix), each in a
    child process of its own (all at once) with a timeout, on each backend."""
    start = time.perf_counter()
    children = {(b, o): subprocess.Popen([sys.executable, "-m", "bench.run.gpu_probes", "teardown", b, o],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for b in backends for o in ("after", "before")}
    results = {}
    for key, proc in children.items():
        try:
            code = proc.wait(timeout=max(0.1, TEARDOWN_TIMEOUT_S - (time.perf_counter() - start)))
            results[key] = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            results[key] = "HUNG"
    hung = any(v == "HUNG" for (b, o), v in results.items() if o == "after")
    fixed = all(v == "ok" for (b, o), v in results.items() if o == "before")
    return (_verdict(hung, fixed), "; ".join(f"{b} DDP freed {o} destroy: {v}" for (b, o), v in results.items())
            + f" (limit {TEARDOWN_TIMEOUT_S:g} s)")


def teardown_child(backend: str, order: str) -> int:
    """One DDP step on a group of one, then the wrapper freed after or before destroy_process_group."""
    import gc
    import tempfile

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mgpu_core.model import SimpleCNN
    cuda = backend == "nccl"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/rdzv", rank=0, world_size=1,
                                device_id=device if cuda else None)
        ddp = DistributedDataParallel(SimpleCNN(10).to(device), device_ids=[0] if cuda else None)
        ddp(torch.randn(4, 3, 32, 32, device=device)).sum().backward()
        if order == "before":
            del ddp
            gc.collect()
            dist.destroy_process_group()
        else:
            dist.destroy_process_group()
            del ddp
            gc.collect()
    print(f"teardown {backend} {order}: done", flush=True)
    return 0


def probes(work: Path, argv: list[str]) -> None:
    import torch
    cuda = torch.cuda.is_available()
    found = Probes(work)
    found.run(8, "dp_autocast_dtype", probe_dp_autocast, cuda)
    found.run(11, "peak_table_and_tf32", probe_peak_table, cuda)
    found.run(12, "nccl_version", probe_nccl_version, cuda)
    found.run(13, "ddp_teardown", probe_teardown, ["gloo", "nccl"] if cuda else ["gloo"])
    found.run(9, "partial_last_batch", probe_partial_batch, argv, cuda)
    found.run(10, "profile_accounting", probe_profile, argv, cuda)
    found.run(4, "compile_no_sync", probe_compile_no_sync, cuda)
    found.run(5, "peak_memory", probe_peak_memory, argv, cuda)


STRATEGIES = (
    ("ddp bf16 hook", {"mode": "ddp", "ddp_comm_hook": "bf16"}),
    ("ddp powersgd hook", {"mode": "ddp", "ddp_comm_hook": "powersgd"}),
    ("ddp bucket 1MB static-graph bucket-view", {"mode": "ddp", "ddp_bucket_mb": 1.0, "ddp_static_graph": True,
                                                 "ddp_grad_as_bucket_view": True}),
    ("ddp accum 2", {"mode": "ddp", "grad_accum": 2}),
    ("fsdp model-wrap accum 2 bf16", {"mode": "fsdp", "fused": False, "fsdp_wrap": "model", "grad_accum": 2,
                                      "precision": "bf16"}),
    ("ddp resnet18 sync-bn bf16", {"mode": "ddp", "model": "resnet18", "sync_bn": True, "precision": "bf16"}),
    ("dp resnet18 bf16", {"mode": "dp", "model": "resnet18", "precision": "bf16"}),
)
"""Each strategy once on a group of one (the sweep runs the plain modes): their CUDA/NCCL paths run at all."""


def strategies() -> None:
    import torch

    from mgpu_core.config import TrainConfig
    from mgpu_core.distributed import process_group
    from mgpu_core.synthetic import synthetic_cifar
    from mgpu_core.trainer import train_and_evaluate
    cuda = torch.cuda.is_available()
    data = synthetic_cifar(2048 if cuda else 256, 256, seed=3)
    for label, overrides in STRATEGIES:
        if not cuda and (overrides.get("sync_bn") or overrides["mode"] == "dp" or overrides.get("precision")):
            print(f"STRATEGY {label}: skipped (CPU)", flush=True)
            continue
        start = time.perf_counter()
        try:
            cfg = TrainConfig(device="cuda" if cuda else "cpu", dataset="synthetic", epochs=2, warmup_steps=2,
                              **overrides)
            with process_group(cfg) as env:
                result = train_and_evaluate(cfg, env, data, log=lambda _: None)[0]
            print(f"STRATEGY {label}: ok, losses {[round(e.loss, 4) for e in result.epochs]}, val "
                  f"{result.final_val_acc:.2%}, epoch {result.epochs[-1].time_s * 1e3:.0f} ms "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failing strategy is a finding; the others still run
            traceback.print_exc()
            print(f"STRATEGY {label}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  flush=True)


def matrix(work: Path, plan: list[tuple[str, str]], epochs: int, per_row_s: float, deadline_s: float,
           argv: list[str]) -> None:
    """Each (mode, path) of `plan` in its own process tree (bench.gpu_check.run_one), as long as the step's time
    lasts; rows go to matrix.json as they finish."""
    from bench.gpu_check import PATHS, run_one
    base = _train_config(argv, epochs=epochs)
    rows = []
    for mode, name in plan:
        left = deadline_s - time.time()
        if left < 20:
            rows.append([mode, name, None, f"not run: {left:.0f} s left in the step"])
            print(f"{mode:6} {name:22} not run (no time left)", flush=True)
            continue
        cfg = base.for_mode(mode, **PATHS[name])  # for_mode: fsdp takes no fused optimizer
        start = time.perf_counter()
        result, error = run_one(cfg, work / "matrix", name, min(per_row_s, left - 5))
        rows.append([mode, name, result, error])
        (work / "matrix.json").write_text(json.dumps(rows))
        if error:
            print(f"{mode:6} {name:22} FAILED after {time.perf_counter() - start:.0f} s: {error}", flush=True)
        else:
            print(f"{mode:6} {name:22} epochs {[round(e['time_s'], 3) for e in result['epochs']]} s, compile "
                  f"{result['compile_s']:.1f} s, val {result['evals'][-1]['accuracy']:.2%}", flush=True)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    if what == "teardown":
        return teardown_child(*rest)
    work = Path(rest[0])
    work.mkdir(parents=True, exist_ok=True)
    if what == "env":
        env_probe(work)
    elif what == "data":
        data_probe(rest[1:])
    elif what == "probes":
        probes(work, rest[1:])
    elif what == "strategies":
        strategies()
    elif what == "matrix":
        spec = json.loads(rest[1])
        matrix(work, [tuple(r) for r in spec["plan"]], spec["epochs"], spec["per_row_s"], spec["deadline"],
               rest[2:])
    else:
        print(f"python -m bench.run.gpu_probes: error: unknown program {what!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
