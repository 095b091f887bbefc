"""Running one configuration as a child process tree: output streamed to a log, a timeout that ends the whole tree,
and the root cause of a failure read from the files torch's error handling writes (never scraped from output)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.run.nodes import Rendezvous
from bench.run.torchrun import FAILURE_FILE_ENV
from mgpu_core.names import DISTRIBUTED_MODES

TERM_GRACE_S = 10.0
KILL_WAIT_S = 5.0
PR_SET_PDEATHSIG = 1


@dataclass
class Outcome:
    returncode: int | None
    timed_out: bool
    wall_s: float
    error: str | None
    """One line: what went wrong (and on which rank, under torchrun), None when the command succeeded."""
    interference: dict | None = None
    """What else ran on the machine meanwhile (bench.run.interference), when sampled."""


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the process and everything below it, then SIGKILL what is left after a grace period. The tree is
    walked again at each step, so processes started meanwhile (torchrun's workers) do not escape."""
    for sig, wait_s in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, KILL_WAIT_S)):
        tree = _tree(proc.pid)
        for p in tree:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the direct child so it stops counting as alive
            if not [p for p in _tree(proc.pid) + tree if _alive(p)]:
                break
            time.sleep(0.1)
    proc.wait()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when the sweep dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def read_failure(path: Path) -> str | None:
    """The one-line root cause in `path`: bench.run.torchrun's {"rank", "message"}, or torch's error file of a single
    process ({"message": {"message": ...}}). None if there is no readable file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "rank" in data:
        return f"rank {data['rank']}: {data['message']}"
    message = data.get("message")
    message = message.get("message") if isinstance(message, dict) else message
    return " ".join(str(message).split()) if message else None


def failure_line(returncode: int, failure_file: Path, lines: list[str]) -> str:
    recorded = read_failure(failure_file)
    if recorded:
        return recorded
    if returncode < 0:
        return f"Signal {-returncode} ({signal.Signals(-returncode).name})"
    last = next((x.strip() for x in reversed(lines) if x.strip()), None)
    return f"exit code {returncode}: {last}" if last else f"exit code {returncode} with no output"


def keep_earlier(log_path: Path) -> None:
    """Move a log already at `log_path` aside to <stem>.<its mtime, YYYYmmddTHHMMSS>[-k].log: the output of
    another study run into the same --out, or of the failed attempt a --resume reruns, is never overwritten."""
    try:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(log_path.stat().st_mtime))
    except FileNotFoundError:
        return
    aside = log_path.with_name(f"{log_path.stem}.{stamp}{log_path.suffix}")
    k = 1
    while aside.exists():
        aside, k = log_path.with_name(f"{log_path.stem}.{stamp}-{k}{log_path.suffix}"), k + 1
    log_path.rename(aside)


def run_logged(cmd: list[str], timeout_s: float, log_path: Path, on_line: Callable[[str], None],
               failure_file: Path, extra_env: dict[str, str] | None = None,
               on_start: Callable[[int], None] | None = None) -> Outcome:
    """Run `cmd`, teeing its output lines to `log_path` and `on_line`; end the whole tree after timeout_s. The
    child (or bench.run.torchrun) writes its root cause to `failure_file`; `on_start` gets the child's pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    keep_earlier(log_path)
    failure_file.unlink(missing_ok=True)
    env = os.environ | (extra_env or {}) | {"PYTHONUNBUFFERED": "1", "TORCHELASTIC_ERROR_FILE": str(failure_file),
                                            FAILURE_FILE_ENV: str(failure_file)}
    start = time.perf_counter()
    lines: list[str] = []
    with open(log_path, "w", buffering=1) as log:  # line-buffered: a running log can be followed
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=env, preexec_fn=_die_with_parent)
        if on_start:
            on_start(proc.pid)

        def pump() -> None:
            for line in proc.stdout:
                log.write(line)
                lines.append(line.rstrip("\n"))
                on_line(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        except BaseException:  # Ctrl-C on the sweep: end the configuration's tree before going up
            kill_tree(proc)
            raise
        if timed_out:
            kill_tree(proc)
        reader.join(timeout=5)
    wall_s = time.perf_counter() - start
    if timed_out:
        return Outcome(None, True, wall_s, f"timed out after {timeout_s:g} s; process tree ended")
    if proc.returncode != 0:
        return Outcome(proc.returncode, False, wall_s, failure_line(proc.returncode, failure_file, lines))
    return Outcome(0, False, wall_s, None)


def child_command(argv: list[str], mode: str, processes: int, module: str = "mgpu_core",
                  rendezvous: Rendezvous | None = None) -> list[str]:
    """The command that runs `module` (default: training one configuration) with `argv`: ddp and fsdp under
    torchrun's launcher, on one node with a standalone rendezvous on a port the OS picks, across nodes with the
    c10d rendezvous `rendezvous` (`processes` is then per node); the other modes as one process."""
    if mode not in DISTRIBUTED_MODES:
        return [sys.executable, "-m", module, *argv]
    launcher = (rendezvous.torchrun_flags(processes) if rendezvous
                else ["--standalone", "--nproc-per-node", str(processes)])
    return [sys.executable, "-m", "bench.run.torchrun", *launcher, "-m", module, *argv]
