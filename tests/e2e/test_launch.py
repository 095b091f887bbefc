"""The child process tree: ending it whole, the atomic file helper, and the profiler's event accounting."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
from helpers import processes_mentioning
from torch.autograd import DeviceType

from bench.profile import _is_communication, _outermost
from bench.run import launch
from mgpu_core.files import atomic_write


def test_kill_tree_ends_processes_started_while_it_runs(tmp_path, monkeypatch):
    """A child that answers SIGTERM by starting another process: the later one must not escape."""
    marker = f"mgpu-test-{os.getpid()}-{time.monotonic_ns()}"
    script = textwrap.dedent(f"""
        import signal, subprocess, sys, time
        def spawn(*_):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}-late"])
        signal.signal(signal.SIGTERM, spawn)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}-early"])
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    monkeypatch.setattr(launch, "TERM_GRACE_S", 2.0)
    launch.kill_tree(proc)
    time.sleep(0.3)
    assert processes_mentioning(marker) == []


def test_a_child_that_exits_0_without_a_result_is_a_failure_not_a_crash(tmp_path, monkeypatch):
    from bench import gpu_check
    from mgpu_core.config import TrainConfig
    monkeypatch.setattr(gpu_check, "child_command", lambda argv, mode, n: [sys.executable, "-c", "pass"])
    result, error = gpu_check.run_one(TrainConfig(device="cpu"), tmp_path, "device fp32", 60)
    assert result is None and error == "exited 0 but handed back no result"
    assert "| single | device fp32 | failed: exited 0 but handed back no result |" in gpu_check.report(
        [("single", "device fp32", result, error)], "Test GPU")


def test_atomic_write_leaves_nothing_behind_when_the_write_fails(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["result.json"]


def test_profile_counts_a_nested_collective_once():
    def event(name, parent=None):
        return SimpleNamespace(name=name, cpu_parent=parent, device_type=DeviceType.CPU)
    backward = event("backward")
    outer = event("c10d::allreduce_", backward)
    inner = event("gloo:all_reduce", outer)
    other = event("nccl:broadcast")
    found = _outermost([backward, outer, inner, other, event("aten::add", inner)], _is_communication)
    assert found == [outer, other]


def test_a_signalled_child_is_named_by_its_signal(tmp_path):
    outcome = launch.run_logged([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                                60, tmp_path / "log", lambda line: None, tmp_path / "failure.json")
    assert outcome.error == "Signal 9 (SIGKILL)" and outcome.returncode == -signal.SIGKILL


def test_a_log_already_there_is_kept_beside_the_new_one(tmp_path):
    # another study run into the same --out, or the failed attempt that --resume reruns: its log stays readable
    log = tmp_path / "logs" / "single-x1-trial0.log"
    for text in ("first study", "second study"):
        outcome = launch.run_logged([sys.executable, "-c", f"print({text!r})"], 60, log, lambda line: None,
                                    tmp_path / "failure.json")
        assert outcome.error is None
    assert log.read_text() == "second study\n"
    earlier = sorted(p for p in log.parent.iterdir() if p != log)
    assert [p.read_text() for p in earlier] == ["first study\n"]
    assert earlier[0].name.startswith("single-x1-trial0.") and earlier[0].suffix == ".log"
