"""The GPU check, for a machine with one GPU, in about five minutes: the tests that need CUDA, then the DataLoader
pipeline against the fast path for single, dp on one GPU and ddp with one rank, side by side in one run:

  python -m bench.gpu_check --data-dir ../shared/data/cifar10-jpeg.tar.gz

Targets it checks: the fast path's epoch <= 0.3 s and >= 10x faster than the DataLoader pipeline on the same GPU;
ddp with one rank costs <= 5% over single.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from bench.records.units import percent
from bench.run.handoff import run_child
from bench.run.launch import child_command
from mgpu_core.cli_args import OneLineErrorParser, config_to_argv
from mgpu_core.config import TrainConfig
from mgpu_core.names import MODES

PATHS = {
    "dataloader fp32": {"pipeline": "dataloader", "precision": "fp32", "workers": 4, "channels_last": False},
    "device fp32": {"pipeline": "device", "precision": "fp32", "channels_last": True},
    "device bf16": {"pipeline": "device", "precision": "bf16", "channels_last": True},
    "device bf16+compile": {"pipeline": "device", "precision": "bf16", "channels_last": True, "compile": True},
}
"""The input path and arithmetic compared, all with the reference recipe; "dataloader fp32" is the tutorial's
pipeline (torch DataLoader, PIL transforms), the others keep the data on the GPU."""
BASELINE, FAST = "dataloader fp32", "device bf16"


def run_one(cfg: TrainConfig, out: Path, name: str, timeout_s: float) -> tuple[dict | None, str | None]:
    """Train `cfg` in its own process tree; (its RunResult dict, None) or (None, the failure line)."""
    stem = f"{cfg.mode}-{name.replace(' ', '_')}"
    outcome, result = run_child(out, stem, lambda flags: child_command(config_to_argv(cfg) + flags, cfg.mode, 1),
                                timeout_s)
    return result, outcome.error


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 (folder or .tar.gz), as for mgpu_core")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--out", type=Path, default=Path("reports/gpu_check"), help="each run's log")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per configuration")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device; none is visible")
    if not Path(args.data_dir).expanduser().exists():
        parser.error(f"{args.data_dir}: no such file or folder (--data-dir)")

    if importlib.util.find_spec("pytest") is None:
        tests_ok, verdict = True, "not run (pytest is not installed here)"
    else:
        tests_ok = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests"]).returncode == 0
        verdict = "passed" if tests_ok else "FAILED"
    print(f"CUDA tests: {verdict}\n", flush=True)

    rows = []
    for mode in MODES:
        for name, overrides in PATHS.items():
            if mode == "dp" and overrides.get("compile"):
                continue
            cfg = TrainConfig(mode=mode, dataset="cifar10", data_dir=args.data_dir, epochs=args.epochs,
                              device="cuda", **overrides)
            result, error = run_one(cfg, args.out, name, args.timeout)
            rows.append((mode, name, result, error))
            status = error or f"{epoch_s(result):.3f} s/epoch"
            print(f"{mode:6} {name:20} {status}", flush=True)
    print("\n" + report(rows, torch.cuda.get_device_name(0)))
    return 0 if tests_ok else 1


def epoch_s(result: dict) -> float:
    return statistics.median(e["time_s"] for e in result["epochs"])


def report(rows: list[tuple[str, str, dict | None, str | None]], device: str) -> str:
    def epoch(mode: str, name: str) -> float | None:
        result = next((r for m, n, r, _ in rows if m == mode and n == name and r), None)
        return epoch_s(result) if result else None

    lines = [f"GPU check on {device}", "",
             "| mode | path | epoch s (median) | samples/s | vs dataloader | vs single | compile s | val acc |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, name, result, error in rows:
        if result is None:
            lines.append(f"| {mode} | {name} | failed: {error} | | | | | |")
            continue
        t = epoch_s(result)
        baseline, single = epoch(mode, BASELINE), epoch("single", name)
        versus = f"{baseline / t:.1f}x" if baseline else "-"
        over = f"{percent(t / single - 1):+.1f}%" if single else "-"
        sps = statistics.median(e["samples_per_s"] for e in result["epochs"])
        lines.append(f"| {mode} | {name} | {t:.3f} | {sps:,.0f} | {versus} | {over} | {result['compile_s']:.1f} | "
                     f"{result['evals'][-1]['accuracy']:.2%} |")
    fast, baseline, ddp = epoch("single", FAST), epoch("single", BASELINE), epoch("ddp", FAST)
    if fast and baseline and ddp:
        lines += ["", f"- fast path epoch <= 0.3 s: {'PASS' if fast <= 0.3 else 'FAIL'} ({fast:.3f} s)",
                  f"- fast path >= 10x dataloader: {'PASS' if baseline / fast >= 10 else 'FAIL'} "
                  f"({baseline / fast:.1f}x)",
                  f"- ddp x1 <= 5% over single: {'PASS' if ddp <= 1.05 * fast else 'FAIL'} "
                  f"({percent(ddp / fast - 1):+.1f}%)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
