"""Running one configuration as a child process tree: output streamed to a log, a timeout that ends the whole tree."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mgpu_core.cli_args import config_to_argv
from mgpu_core.config import TrainConfig

from .plan import Planned
from .sweep_config import SweepConfig

TERM_GRACE_S = 10.0
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)\b.*|.*: error: .*")
_RANK_PREFIX = re.compile(r"^\[rank(\d+)\]:\s?(.*)")  # how torch prefixes a rank's uncaught exception
_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")  # in torchrun's "Root Cause" block


@dataclass
class Outcome:
    returncode: int | None
    timed_out: bool
    wall_s: float
    error: str | None
    """One line: what went wrong (and on which rank, when torchrun says), None when the command succeeded."""


def descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc (torchrun starts its workers in sessions of their own, so a process
    group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the process and everything below it, then SIGKILL whatever is left after a grace period."""
    tree = [proc.pid] + descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tree:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (TERM_GRACE_S if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
            proc.poll()  # reap the direct child so it stops counting as alive
            time.sleep(0.1)
    proc.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def summarize_failure(lines: list[str]) -> str | None:
    """One line for a failed run: the root-cause rank torchrun names, with that rank's exception or the signal that
    killed it; else the last exception or error line; else the last line."""
    root, cause = _root_cause(lines)
    if root is not None:
        own = [m.group(2).strip() for line in lines if (m := _RANK_PREFIX.match(line)) and m.group(1) == root]
        errors = [line for line in own if _EXCEPTION.match(line)]
        if errors:
            return f"rank {root}: {errors[-1]}"
        if cause:
            return f"rank {root}: {cause}"
    errors = [line.strip() for line in lines if _EXCEPTION.match(line.strip()) and "ChildFailedError" not in line]
    message = errors[-1] if errors else next((x.strip() for x in reversed(lines) if x.strip()), None)
    return f"rank {root}: {message}" if root is not None and message else message


def _root_cause(lines: list[str]) -> tuple[str | None, str | None]:
    """(rank, 'Signal 9 (SIGKILL) ...' or 'exit code N') from torchrun's "Root Cause" block, if there is one."""
    start = next((i for i, line in enumerate(lines) if line.startswith("Root Cause")), None)
    if start is None:
        return None, None
    block = lines[start:]
    block = block[:next((i for i, line in enumerate(block) if line.startswith("====")), len(block))]
    fields = dict(line.strip().split(":", 1) for line in block if ":" in line and line.startswith("  "))
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    rank = _ROOT_RANK.match("  rank : " + fields.get("rank", ""))
    traceback = fields.get("traceback", "")
    cause = traceback if traceback.startswith("Signal") else (
        f"exit code {fields['exitcode'].split()[0]}" if "exitcode" in fields else None)
    return (rank.group(1) if rank else None), cause


def run_logged(cmd: list[str], timeout_s: float, log_path: Path, on_line: Callable[[str], None]) -> Outcome:
    """Run `cmd`, teeing its output lines to `log_path` and `on_line`; end the whole tree after timeout_s."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lines: list[str] = []
    with open(log_path, "w", buffering=1) as log:  # line-buffered: a running log can be followed
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})

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
        return Outcome(proc.returncode, False, wall_s,
                       summarize_failure(lines) or f"exit code {proc.returncode} with no output")
    return Outcome(0, False, wall_s, None)


def command(cfg: TrainConfig, entry: Planned, results: Path, run_id: str, sweep: SweepConfig,
            argv: list[str]) -> list[str]:
    """The command that trains `cfg` as one configuration in its own process group and appends its record."""
    flags = config_to_argv(cfg) + ["--results", str(results), "--trial", str(entry.trial), "--scaling",
                                   "strong" if sweep.global_batch else "weak", "--run-id", run_id,
                                   "--sweep-argv", json.dumps(argv), "--target-val-acc", str(sweep.min_val_acc)]
    if entry.mode == "ddp":  # torchrun's launcher, a standalone rendezvous on a port the OS picks
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                str(entry.devices), "-m", "bench.one_config", *flags]
    return [sys.executable, "-m", "bench.one_config", *flags]
