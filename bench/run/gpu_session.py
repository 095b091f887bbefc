"""A time-boxed session of steps, each a child process tree under its own timeout against one deadline, and the
few output files it leaves (bench.gpu_check's machinery; torch-free)."""

from __future__ import annotations

import io
import math
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.run.launch import run_logged
from mgpu_core.config import ConfigError

StepName = Literal["env", "data", "sweep", "cuda_tests", "probes", "matrix", "cuda_test_compile", "profile_single",
                   "profile_ddp", "collective", "strategies"]
MAX_FILES = 8
"""Output files at most: everything comes back from a lent GPU machine in one copy."""
MAX_FILE_BYTES = 16 * 2**20
"""Each output file at most (the lent machine's limit on what comes back)."""
RESERVE_S = 15.0
"""Kept from the deadline for the summary and packing the files."""
LOG_TAIL_BYTES = 2 * 2**20
"""Of a longer log, the last this many bytes go into logs.tar.gz."""


@dataclass(frozen=True)
class GpuCheckConfig:
    data_dir: str | None = None
    """The CIFAR-10 archive (.tar.gz) or folder; required on a GPU, optional with --dry-run (synthetic data)."""

    out: str = "reports/gpu_check"
    """The folder for the session's output files (at most 8, each at most 16 MiB)."""

    budget_s: float = 470.0
    """Seconds the whole session may take; every step runs under a timeout against this one deadline, and a step
    that no longer fits is skipped and said so (470: within 8 minutes on a lent machine)."""

    epochs: int = 3
    """Timed epochs of each sweep and matrix configuration."""

    dry_run: bool = False
    """Rehearse the whole session on CPU: the same steps and files, tiny sizes, CUDA-only checks skip themselves."""

    only: tuple[StepName, ...] | None = None
    """Run only these steps (env always runs), e.g. sweep,matrix to redo them while the machine is still up."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget_s) and self.budget_s >= 60):
            raise ConfigError(f"budget_s: must be at least 60 seconds (got {self.budget_s})")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs: must be an integer >= 1 (got {self.epochs!r})")
        if not self.out.strip():
            raise ConfigError("out: must name a folder (got '')")
        if self.data_dir is None and not self.dry_run:
            raise ConfigError("data_dir: give the CIFAR-10 archive (--data-dir data/cifar10-jpeg.tar.gz); only "
                              "--dry-run runs without it")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().exists():
            raise ConfigError(f"data_dir: {self.data_dir}: no such file or folder")


@dataclass
class StepOutcome:
    name: str
    status: str
    """ok, failed, timeout, skipped."""
    seconds: float
    limit_s: float
    note: str = ""
    """The failure line, or why the step was skipped."""


class Session:
    """Runs steps in order against one deadline; each step's output goes to <work>/logs/<name>.log."""

    def __init__(self, budget_s: float, work: Path, only: tuple[str, ...] | None, env: dict[str, str],
                 say=print) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.work, self.only, self.env, self.say = work, only, env, say
        self.outcomes: list[StepOutcome] = []
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def left_s(self) -> float:
        """Seconds left for steps (the reserve for the summary kept back)."""
        return self.deadline - RESERVE_S - time.monotonic()

    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def step(self, name: str, cmd: list[str], budget_s: float, min_s: float) -> StepOutcome:
        """Run `cmd` for at most min(budget_s, the time left); skip it when less than min_s is left."""
        if self.only and name != "env" and name not in self.only:
            return self._record(StepOutcome(name, "skipped", 0.0, budget_s, "not selected (--only)"))
        left = self.left_s()
        limit = min(budget_s, left)
        if limit < min_s:
            return self._record(StepOutcome(name, "skipped", 0.0, budget_s,
                                            f"no time: {max(left, 0):.0f} s left, needs {min_s:g} s"))
        self.say(f"[{self.elapsed_s():4.0f} s] START {name} (up to {limit:.0f} s)")
        outcome = run_logged(cmd, limit, self.log(name), lambda line: None, self.work / "logs" / f"{name}.failure",
                             self.env)
        if outcome.timed_out:
            status, note = "timeout", f"timed out after {limit:.0f} s; process tree ended"
        elif outcome.error:
            status, note = "failed", outcome.error
        else:
            status, note = "ok", ""
        return self._record(StepOutcome(name, status, outcome.wall_s, limit, note))

    def _record(self, outcome: StepOutcome) -> StepOutcome:
        self.outcomes.append(outcome)
        what = outcome.status + (f": {outcome.note}" if outcome.note else "")
        self.say(f"[{self.elapsed_s():4.0f} s] {'END  ' if outcome.seconds else 'SKIP '} {outcome.name}: {what}"
                 + (f" in {outcome.seconds:.0f} s" if outcome.seconds else ""))
        if outcome.status in ("failed", "timeout") and self.log(outcome.name).exists():
            for line in tail_lines(self.log(outcome.name), 4):
                self.say(f"      | {line[:220]}")
        return outcome


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64 * 1024))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def write_capped(path: Path, text: str) -> None:
    """`text` to `path`, cut to MAX_FILE_BYTES with a note where it had to be (its start is kept)."""
    data = text.encode()
    if len(data) > MAX_FILE_BYTES:
        note = b"\n\n[cut: the whole text was longer than the 16 MiB an output file may hold]\n"
        data = data[:MAX_FILE_BYTES - len(note)] + note
    path.write_bytes(data)


def pack_logs(work: Path, archive: Path) -> None:
    """Every file under <work>/logs (and the other folders named here) into one .tar.gz of at most MAX_FILE_BYTES:
    each file's last LOG_TAIL_BYTES, fewer bytes per file if the archive would still be too big."""
    files = sorted(p for folder in ("logs", "sweep/logs", "matrix/logs") if (work / folder).is_dir()
                   for p in (work / folder).rglob("*") if p.is_file())
    tail = LOG_TAIL_BYTES
    while True:
        with tarfile.open(archive, "w:gz") as tar:
            for path in files:
                size = path.stat().st_size
                with open(path, "rb") as f:
                    f.seek(max(0, size - tail))
                    data = f.read()
                info = tarfile.TarInfo(str(path.relative_to(work)))
                info.size, info.mtime = len(data), int(path.stat().st_mtime)
                tar.addfile(info, io.BytesIO(data))
        if archive.stat().st_size <= MAX_FILE_BYTES or tail <= 4096:
            return
        tail //= 4


def check_output(out: Path) -> list[str]:
    """What breaks the output contract (at most MAX_FILES files, each at most MAX_FILE_BYTES, no folders)."""
    entries = list(out.iterdir())
    problems = [f"{p.name}: not a plain file" for p in entries if not p.is_file()]
    problems += [f"{p.name}: {p.stat().st_size} bytes > 16 MiB" for p in entries
                 if p.is_file() and p.stat().st_size > MAX_FILE_BYTES]
    if len(entries) > MAX_FILES:
        problems.append(f"{len(entries)} files > {MAX_FILES}")
    return problems
