"""The GPU check, for a machine with one GPU, in about five minutes: the tests that need CUDA, then the classic
pipeline against the fast path for single, dp on one GPU and ddp with one rank, side by side in one run:

  python -m bench.gpu_check --data-dir ../shared/data/cifar10-jpeg.tar.gz

Targets it checks: the fast path's epoch <= 0.3 s and >= 10x faster than the classic pipeline on the same GPU;
ddp with one rank costs <= 5% over single.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import torch

from mgpu_core.cli_args import OneLineErrorParser
from mgpu_core.config import TrainConfig

from .launch import command, run_logged
from .plan import Planned
from .results import read_records
from .sweep_config import SweepConfig

PATHS = {
    "classic fp32": {"pipeline": "dataloader", "precision": "fp32", "workers": 4},
    "fast fp32": {"pipeline": "device", "precision": "fp32", "channels_last": True},
    "fast bf16": {"pipeline": "device", "precision": "bf16", "channels_last": True},
    "fast bf16+compile": {"pipeline": "device", "precision": "bf16", "channels_last": True, "compile": True},
}
MODES = ("single", "dp", "ddp")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 (folder or .tar.gz), as for mgpu_core")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--out", type=Path, default=Path("reports/gpu_check"), help="results and logs")
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

    results = args.out / "results.jsonl"
    rows = []
    for mode in MODES:
        for name, overrides in PATHS.items():
            if mode == "dp" and overrides.get("compile"):
                continue
            cfg = TrainConfig(mode=mode, dataset="cifar10", data_dir=args.data_dir, epochs=args.epochs,
                              device="cuda", **overrides)
            run_id = uuid.uuid4().hex
            cmd = command(cfg, Planned(mode, 1, 0), results, run_id, SweepConfig(), ["python", "-m", "bench.gpu_check",
                                                                                  *(argv or sys.argv[1:])])
            outcome = run_logged(cmd, args.timeout, args.out / "logs" / f"{mode}-{name.replace(' ', '_')}.log",
                                 lambda line: None)
            record = next((r for r in read_records(results) if r["run_id"] == run_id), None)
            rows.append((mode, name, record, outcome.error))
            status = outcome.error or f"{statistics.median(record['epoch_times_s']):.3f} s/epoch"
            print(f"{mode:6} {name:18} {status}", flush=True)
    print("\n" + report(rows, torch.cuda.get_device_name(0)))
    return 0 if tests_ok else 1


def report(rows: list[tuple[str, str, dict | None, str | None]], device: str) -> str:
    def epoch(mode: str, name: str) -> float | None:
        rec = next((r for m, n, r, _ in rows if m == mode and n == name and r), None)
        return statistics.median(rec["epoch_times_s"]) if rec else None

    lines = [f"GPU check on {device}", "",
             "| mode | path | epoch s (median) | samples/s | vs classic | vs single | compile s | val acc |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, name, rec, error in rows:
        if rec is None:
            lines.append(f"| {mode} | {name} | failed: {error} | | | | | |")
            continue
        t = epoch(mode, name)
        classic, single = epoch(mode, "classic fp32"), epoch("single", name)
        lines.append(f"| {mode} | {name} | {t:.3f} | {statistics.median(rec['samples_per_s']):,.0f} | "
                     f"{classic / t:.1f}x | {(t / single - 1) * 100:+.1f}% | {rec['compile_s']:.1f} | "
                     f"{rec['val_acc']:.2%} |" if classic and single else f"| {mode} | {name} | {t:.3f} | | | | | |")
    fast, classic, ddp = epoch("single", "fast bf16"), epoch("single", "classic fp32"), epoch("ddp", "fast bf16")
    if fast and classic and ddp:
        lines += ["", f"- fast path epoch <= 0.3 s: {'PASS' if fast <= 0.3 else 'FAIL'} ({fast:.3f} s)",
                  f"- fast path >= 10x classic: {'PASS' if classic / fast >= 10 else 'FAIL'} ({classic / fast:.1f}x)",
                  f"- ddp x1 <= 5% over single: {'PASS' if ddp <= 1.05 * fast else 'FAIL'} "
                  f"({(ddp / fast - 1) * 100:+.1f}%)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
