"""The first GPU session in one command: everything worth checking on one GPU, each step under its own timeout
against one deadline (8 minutes on a lent machine), the results in at most 8 files of at most 16 MiB in one folder,
and a summary table printed at the end:

  python -m bench.gpu_check --data-dir data/cifar10-jpeg.tar.gz --out gpu_out
  python -m bench.gpu_check --dry-run --out /tmp/rehearsal      # the same session on CPU, tiny sizes

Steps, in order of value: env, data, sweep (every mode on 1 GPU, real CIFAR-10), cuda_tests, probes (confirm or
refute each "likely" finding and check its fix), matrix (the input-path matrix and its targets: fast-path epoch
<= 0.3 s, >= 10x the classic DataLoader pipeline, ddp x1 within 5% of single), profile_single, collective (1-rank
smoke), profile_ddp, cuda_test_compile, strategies. A step that no longer fits is skipped and said so.
docs/gpu-session.md says what each step checks. Exit codes: 0 every step that ran ended ok, 1 a step failed or
timed out (the summary says which), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.records.units import plural
from bench.run.gpu_session import GpuCheckConfig, Session, check_output, pack_logs, write_capped
from bench.run.handoff import run_child
from bench.run.launch import child_command
from mgpu_core.cli_args import OneLineErrorParser, add_config_arguments, config_from_args, config_to_argv

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "dataloader fp32": {"pipeline": "dataloader", "precision": "fp32", "workers": 4, "channels_last": False},
    "device fp32": {"pipeline": "device", "precision": "fp32", "channels_last": True},
    "device bf16": {"pipeline": "device", "precision": "bf16", "channels_last": True},
    "device bf16+compile": {"pipeline": "device", "precision": "bf16", "channels_last": True, "compile": True},
}
"""The input path and arithmetic compared, all with the reference recipe; "dataloader fp32" is the tutorial's
pipeline (torch DataLoader, PIL transforms), the others keep the data on the GPU."""
BASELINE, FAST = "dataloader fp32", "device bf16"
FAST_EPOCH_S = 0.3
"""Target: the fast path's median epoch on one GPU, seconds."""
MIN_SPEEDUP = 10.0
"""Target: the fast path against the classic DataLoader pipeline on the same GPU."""
MAX_DDP_OVERHEAD = 0.05
"""Target: ddp with one rank at most this much slower than single (fraction)."""

STEPS = {
    # name: (budget s, least worth starting s, what it checks)
    "env": (45, 10, "nvidia-smi, topology, versions, the peak-table lookup for the device's real name, TF32 "
                    "defaults, a bf16 matmul, a C compiler and Python.h for Triton, every module imports"),
    "data": (75, 20, "the CIFAR-10 archive decoded once into the session's cache, then a cached reload"),
    "sweep": (170, 60, "bench.scaling over every mode on 1 GPU in bf16 on real CIFAR-10 (fsdp unfused); x2 "
                       "recorded as skipped on one GPU"),
    "cuda_tests": (90, 30, "the cuda-marked tests but compile"),
    "probes": (80, 25, "items 4, 5, 8-13: does the mechanism show here (confirmed/refuted), does the fix hold"),
    "matrix": (150, 45, "the input-path matrix and its targets"),
    "profile_single": (40, 20, "bench.profile of single on CUDA"),
    "collective": (30, 15, "bench.comm --smoke: every collective on a 1-rank NCCL group, results checked"),
    "profile_ddp": (45, 25, "bench.profile of ddp x1 under torchrun"),
    "cuda_test_compile": (120, 45, "the bf16 + torch.compile CUDA test on its own"),
    "strategies": (60, 20, "each DDP hook, static graph, accumulation, fsdp wrap, sync-bn and dp resnet18 once"),
}
"""The session's steps in the order they run (the most valuable first): a step starts only while at least its
second figure is left, and runs for at most its first."""
MATRIX_PLAN = [("single", "device bf16"), ("ddp", "device bf16"), ("single", "dataloader fp32"),
               ("single", "device fp32"), ("single", "device bf16+compile"), ("ddp", "device bf16+compile")]
"""The target rows first, compile last (the slowest to start)."""
DRY_MATRIX_PLAN = [("single", "device fp32"), ("ddp", "device fp32"), ("single", "dataloader fp32")]
"""The dry run's matrix: no bf16 or compile on a small CPU; its fast path is "device fp32"."""
OUTPUT_FILES = ("summary.md", "env.txt", "results.jsonl", "gpu_check.json", "profiles.md", "report.html",
                "logs.tar.gz")
"""What the output folder holds at the end (report.html only when the sweep wrote one)."""


def run_one(cfg, out: Path, name: str, timeout_s: float) -> tuple[dict | None, str | None]:
    """Train `cfg` (a TrainConfig) in its own process tree, through the one child hand-off (bench.run.handoff);
    (its RunResult dict, None) or (None, the failure line)."""
    stem = f"{cfg.mode}-{name.replace(' ', '_').replace('+', '_')}"
    outcome, result = run_child(out, stem, lambda flags: child_command(config_to_argv(cfg) + flags, cfg.mode, 1),
                                timeout_s)
    return result, outcome.error


def epoch_s(result: dict) -> float:
    return statistics.median(e["time_s"] for e in result["epochs"])


def report(rows: list[tuple[str, str, dict | None, str | None]], device: str, fast: str = FAST) -> str:
    """The matrix as a markdown table, then each target with PASS/FAIL (or why it could not be judged)."""
    def epoch(mode: str, name: str) -> float | None:
        result = next((r for m, n, r, _ in rows if m == mode and n == name and r), None)
        return epoch_s(result) if result else None

    lines = [f"Input-path matrix on {device}", "",
             "| mode | path | epoch s (median) | samples/s | vs dataloader | vs single | compile s | val acc |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, name, result, error in rows:
        if result is None:
            lines.append(f"| {mode} | {name} | failed: {error} | | | | | |")
            continue
        t = epoch_s(result)
        baseline, single = epoch(mode, BASELINE), epoch("single", name)
        versus = f"{baseline / t:.1f}x" if baseline else "-"
        over = f"{(t / single - 1) * 100:+.1f}%" if single else "-"
        sps = statistics.median(e["samples_per_s"] for e in result["epochs"])
        lines.append(f"| {mode} | {name} | {t:.3f} | {sps:,.0f} | {versus} | {over} | {result['compile_s']:.1f} | "
                     f"{result['evals'][-1]['accuracy']:.2%} |")
    lines += ["", *(f"- {line}" for line in targets(rows, fast).values())]
    return "\n".join(lines)


def targets(rows: list, fast: str = FAST) -> dict[str, str]:
    """Each target's verdict line (keys fast_epoch, speedup, ddp_overhead): PASS or FAIL with the number, or 'not
    judged' with what is missing."""
    def epoch(mode: str, name: str) -> float | None:
        result = next((r for m, n, r, _ in rows if m == mode and n == name and r), None)
        return epoch_s(result) if result else None
    single, baseline, ddp = epoch("single", fast), epoch("single", BASELINE), epoch("ddp", fast)
    missing = "not judged (a row it needs did not run)"
    found = {"fast_epoch": f"fast path ({fast}) epoch <= {FAST_EPOCH_S} s: " + (
        f"{'PASS' if single <= FAST_EPOCH_S else 'FAIL'} ({single:.3f} s)" if single else missing)}
    found["speedup"] = f"fast path >= {MIN_SPEEDUP:g}x the DataLoader pipeline: " + (
        f"{'PASS' if baseline / single >= MIN_SPEEDUP else 'FAIL'} ({baseline / single:.1f}x)"
        if single and baseline else missing)
    found["ddp_overhead"] = f"ddp x1 within {MAX_DDP_OVERHEAD:.0%} of single: " + (
        f"{'PASS' if abs(ddp / single - 1) <= MAX_DDP_OVERHEAD else 'FAIL'} ({(ddp / single - 1) * 100:+.1f}%)"
        if single and ddp else missing)
    return found


# -------------------------------------------------------------------------------------------------- the session

class Plan:
    """The command of each step for this session (GPU or dry run), built when the step is due."""

    def __init__(self, cfg: GpuCheckConfig, work: Path) -> None:
        self.cfg, self.work, self.py = cfg, work, sys.executable
        self.dry = cfg.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.precision = "fp32" if self.dry else "bf16"
        if cfg.data_dir:
            self.data = ["--dataset", "cifar10", "--data-dir", str(Path(cfg.data_dir).expanduser().resolve()),
                         "--cache-dir", str(work / "cache"), "--no-download"]
            if self.dry:
                self.data += ["--train-samples", "300"]
        else:
            self.data = ["--dataset", "synthetic", "--synthetic-train-size", "300", "--synthetic-test-size", "100"]
        if self.dry:  # tiny: 300 samples at batch 64 leave a partial last batch of 44
            self.data += ["--batch-size", "64", "--warmup-steps", "2"]
        self.epochs = 1 if self.dry else cfg.epochs
        self.fast = "device fp32" if self.dry else FAST

    def pytest(self, select: str, junit: str) -> list[str]:
        return [self.py, "-m", "pytest", "-q", "-rA", "-m", "cuda", str(ROOT / "tests" / "process" / "test_cuda.py"),
                "-k", select, "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                "--junitxml", str(self.work / junit), "-o", "junit_family=xunit1"]

    def profile(self, mode: str) -> list[str]:
        argv = ["--mode", mode, "--device", self.device, *self.data, "--precision", self.precision, "--steps", "30",
                "--out", str(self.work / f"profile_{mode}.md")]
        return child_command(argv, mode, 1, module="bench.profile")

    def command(self, name: str, limit_s: float) -> list[str]:
        py, w, dev = self.py, str(self.work), self.device
        if name == "env":
            return [py, "-m", "bench.run.gpu_probes", "env", w]
        if name == "data":
            return [py, "-m", "bench.run.gpu_probes", "data", w, *self.data]
        if name == "sweep":
            return [py, "-m", "bench.scaling", "--gpus", "1" if self.dry else "1,2",
                    "--modes", "single,ddp,fsdp" if self.dry else "single,dp,ddp,fsdp", "--precision", self.precision,
                    "--epochs", str(self.epochs), "--device", dev, *self.data, "--out", str(self.work / "sweep"),
                    "--timeout", "90" if self.dry else "75", "--no-comm"]
        if name == "cuda_tests":
            return self.pytest("not compile", "junit.xml")
        if name == "cuda_test_compile":
            return self.pytest("compile", "junit_compile.xml")
        if name == "probes":
            return [py, "-m", "bench.run.gpu_probes", "probes", w, *self.data, "--device", dev]
        if name == "matrix":
            spec = {"plan": DRY_MATRIX_PLAN if self.dry else MATRIX_PLAN, "epochs": self.epochs,
                    "per_row_s": 90 if self.dry else 100, "deadline": time.time() + limit_s - 5}
            return [py, "-m", "bench.run.gpu_probes", "matrix", w, json.dumps(spec), *self.data, "--device", dev]
        if name in ("profile_single", "profile_ddp"):
            return self.profile(name.removeprefix("profile_"))
        if name == "collective":
            return [py, "-m", "bench.comm", "--smoke", "--device", dev, "--dataset", "synthetic",
                    "--max-bytes", str(2**20 if self.dry else 64 * 2**20), "--iters", "3" if self.dry else "10",
                    "--compute-steps", "2" if self.dry else "10", "--json", str(self.work / "comm_smoke.json"),
                    "--out", str(self.work / "comm")]
        if name == "strategies":
            return [py, "-m", "bench.run.gpu_probes", "strategies", w]
        raise ValueError(name)


def child_env(work: Path) -> dict[str, str]:
    """What every step's process sees: this checkout first on the path, the compile caches shared by all steps
    (the compile test warms what the matrix compiled), no display for plots."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
            "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"), "TRITON_CACHE_DIR": str(work / "triton"),
            "MPLBACKEND": "Agg", "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN")}


def run_session(cfg: GpuCheckConfig, work: Path, say=print) -> Session:
    session = Session(cfg.budget_s, work, cfg.only, child_env(work), say)
    plan = Plan(cfg, work)
    for name, (budget_s, min_s, _) in STEPS.items():
        limit = min(budget_s, session.left_s())
        session.step(name, plan.command(name, limit), budget_s, min_s)
    return session


# -------------------------------------------------------------------------------------------------- the summary

def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _junit(path: Path) -> list[dict]:
    try:
        cases = list(ET.parse(path).getroot().iter("testcase"))
    except (OSError, ET.ParseError):
        return []
    found = []
    for case in cases:
        bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
        found.append({"test": case.get("name"), "status": bad[0].tag if bad else "passed",
                      "seconds": float(case.get("time", 0)),
                      "message": " ".join((bad[0].get("message") or "").split())[:300] if bad else ""})
    return found


def _counts(cases: list[dict]) -> str:
    if not cases:
        return "no results (see logs)"
    tally = {s: sum(c["status"] == s for c in cases) for s in ("passed", "failure", "error", "skipped")}
    return ", ".join(f"{n} {s}" for s, n in tally.items() if n)


def collect(cfg: GpuCheckConfig, work: Path, session: Session) -> dict:
    """Everything the session found, from its work folder, as one dict (gpu_check.json)."""
    from bench.records.results import ResultsError, read_records
    try:
        records = read_records(work / "sweep" / "results.jsonl", warn=lambda _: None)
    except ResultsError:
        records = []
    rows = [tuple(r) for r in _read_json(work / "matrix.json", [])]
    fast = Plan(cfg, work).fast
    for r in records:  # the sweep's rows of other modes join the matrix (the same settings as "device bf16")
        if r["status"] == "ok" and r["devices"] == 1 and not any(m == r["mode"] and n == fast for m, n, _, _ in rows):
            rows.append((r["mode"], fast, r["result"], None))
    lines = []
    for name in ("profile_single.md", "profile_ddp.md"):
        text = (work / name).read_text() if (work / name).exists() else f"# {name}\n\n(not written: see logs)\n"
        lines.append(text)
    strategy_lines = [line for line in _log_lines(work, "strategies") if line.startswith("STRATEGY ")]
    return {"config": {"data_dir": cfg.data_dir, "budget_s": cfg.budget_s, "epochs": cfg.epochs,
                       "dry_run": cfg.dry_run, "only": cfg.only},
            "elapsed_s": session.elapsed_s(),
            "steps": [vars(o) for o in session.outcomes],
            "env": _read_json(work / "env.json", {}),
            "sweep": [{k: r.get(k) for k in ("mode", "variant", "devices", "status", "error", "epoch_times_s",
                                            "val_acc", "tflops_per_device", "peak_tflops", "peak_memory_bytes",
                                            "resident_data_bytes", "warmup_s", "device_name")} for r in records],
            "matrix": [list(r) for r in rows], "fast_path": fast, "targets": targets(rows, fast),
            "cuda_tests": _junit(work / "junit.xml") + _junit(work / "junit_compile.xml"),
            "probes": _read_json(work / "probes.json", []),
            "collective": _read_json(work / "comm_smoke.json"),
            "strategies": strategy_lines,
            "profiles": "\n".join(lines)}


def _log_lines(work: Path, name: str) -> list[str]:
    try:
        return (work / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return []


def step_result(name: str, found: dict, work: Path) -> str:
    """One line: what the step found."""
    env = found["env"]
    if name == "env" and env:
        mm = env.get("bf16_matmul", {})
        share = f" ({mm['of_peak']:.0%} of peak)" if mm.get("of_peak") else ""
        failed = [m for m, v in env.get("imports", {}).items() if v != "ok"]
        return (f"{env.get('device')}; torch {env.get('packages', {}).get('torch')}, CUDA {env.get('torch_cuda')}, "
                f"NCCL {env.get('nccl', '-')}; peak table bf16 {env.get('peak_tflops', {}).get('bf16')}; bf16 "
                f"matmul {mm.get('tflops', 0):.1f} TFLOP/s{share}; cc {'yes' if env.get('c_compiler') else 'NO'}, "
                f"Python.h {'yes' if env.get('python_h') else 'NO'}; imports "
                + (f"FAILED: {', '.join(failed)}" if failed else "ok"))
    if name == "data":
        return next((line for line in reversed(_log_lines(work, "data")) if line.startswith("cached")), "")
    if name == "sweep" and found["sweep"]:
        return "; ".join(f"{r['mode']} x{r['devices']} " + (
            f"{statistics.median(r['epoch_times_s']):.3f} s/epoch, val {r['val_acc']:.1%}" if r["status"] == "ok"
            else f"{r['status']}: {r['error']}") for r in found["sweep"])
    if name == "cuda_tests":
        return _counts(_junit(work / "junit.xml"))
    if name == "cuda_test_compile":
        return _counts(_junit(work / "junit_compile.xml"))
    if name == "probes":
        return "; ".join(f"{p['item']} {p['verdict']}" for p in found["probes"])
    if name == "matrix":
        return "; ".join(f"{key} {line.rsplit(': ', 1)[1]}" for key, line in found["targets"].items())
    if name.startswith("profile_"):
        text = (work / f"{name}.md").read_text() if (work / f"{name}.md").exists() else ""
        return next((line.split(". ")[0] for line in text.splitlines() if "ms/step" in line), "")
    if name == "collective" and found["collective"]:
        c = found["collective"]
        bad = [r for r in c["rows"] if r["check"] != "ok"]
        return (f"{plural(len(c['rows']), 'collective')} on {c['backend']}, " + ("all checked ok" if not bad else
                f"{len(bad)} WRONG") + f"; compute-only step {c['compute_step_s'] * 1e3:.1f} ms")
    if name == "strategies":
        lines = found["strategies"]
        return ", ".join(f"{sum(f': {w}' in line for line in lines)} {w}" for w in ("ok", "FAILED", "skipped"))
    return ""


def summary_markdown(found: dict, work: Path) -> str:
    env = found["env"]
    kind = "dry run on CPU (tiny sizes: numbers are not GPU numbers)" if found["config"]["dry_run"] else "GPU"
    lines = [f"# mgpu-bench GPU session: {env.get('device', 'device unknown')}", "",
             f"{kind}; {found['elapsed_s']:.0f} s of a {found['config']['budget_s']:.0f} s budget.", "",
             "| step | status | seconds | limit s | result |", "|---|---|---|---|---|"]
    for o in found["steps"]:
        status = o["status"] + (f": {o['note']}" if o["note"] else "")
        result = step_result(o["name"], found, work) if o["status"] != "skipped" else ""
        lines.append(f"| {o['name']} | {status.replace('|', '/')} | {o['seconds']:.0f} | {o['limit_s']:.0f} | "
                     f"{result.replace('|', '/')} |")
    lines += ["", "## Targets", "", *(f"- {t}" for t in found["targets"].values())]
    lines += ["", "## Probes (issue items)", "", "| item | probe | verdict | detail |", "|---|---|---|---|"]
    lines += [f"| {p['item']} | {p['probe']} | {p['verdict']} | {p['detail'].replace('|', '/')} |"
              for p in found["probes"]]
    if found["matrix"]:
        lines += ["", "## Matrix", "", report([tuple(r) for r in found["matrix"]], env.get("device", "?"),
                                              found["fast_path"])]
    lines += ["", "## CUDA tests", ""]
    lines += [f"- {c['test']}: {c['status']} ({c['seconds']:.1f} s) {c['message']}" for c in found["cuda_tests"]] \
        or ["- no results"]
    lines += ["", "## Strategies (group of one)", "", *(f"- {line}" for line in found["strategies"])]
    if found["sweep"]:
        lines += ["", "## Sweep", ""]
        for r in found["sweep"]:
            if r["status"] == "ok":
                mib = [round(m / 2**20) for m in r["peak_memory_bytes"] or []]
                lines.append(f"- {r['mode']} x{r['devices']}: epochs {[round(t, 3) for t in r['epoch_times_s']]} s, "
                             f"warm-up {r['warmup_s']:.2f} s, val {r['val_acc']:.2%}, TFLOP/s/device "
                             f"{[round(t, 2) for t in r['tflops_per_device']]} (peak {r['peak_tflops']}), training "
                             f"peak memory {mib} MiB (resident data "
                             f"{(r['resident_data_bytes'] or 0) / 2**20:.0f} MiB)")
            else:
                lines.append(f"- {r['mode']} x{r['devices']}: {r['status']}: {r['error']}")
    return "\n".join(lines) + "\n"


def write_outputs(found: dict, work: Path, out: Path, summary: str) -> None:
    """The session's output files (OUTPUT_FILES), each capped at 16 MiB."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    write_capped(out / "summary.md", summary)
    env_log = work / "logs" / "env.log"
    write_capped(out / "env.txt", env_log.read_text(errors="replace") if env_log.exists() else "(env step: no log)")
    results = work / "sweep" / "results.jsonl"
    write_capped(out / "results.jsonl", results.read_text() if results.exists() else "")
    write_capped(out / "gpu_check.json", json.dumps(found, indent=1, default=str))
    write_capped(out / "profiles.md", found["profiles"])
    html = work / "sweep" / "report.html"
    if html.exists() and html.stat().st_size <= 16 * 2**20:
        shutil.copyfile(html, out / "report.html")
    pack_logs(work, out / "logs.tar.gz")


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="python -m bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, GpuCheckConfig)
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder (its path is printed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(GpuCheckConfig, args, parser)
    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f"out: {out} is not an empty folder; give a new or empty one (an earlier session's files are "
                     "kept, never overwritten)")
    if not cfg.dry_run:
        import torch
        if not torch.cuda.is_available():
            parser.error("needs a CUDA device and none is visible (--dry-run rehearses the session on CPU)")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    print(f"gpu_check: {'dry run on CPU' if cfg.dry_run else 'GPU session'}, budget {cfg.budget_s:.0f} s, work "
          f"folder {work}, output {out}", flush=True)
    try:
        session = run_session(cfg, work)
        try:
            found = collect(cfg, work, session)
            summary = summary_markdown(found, work)
        except Exception:  # noqa: BLE001 - the steps' logs must come back even when the summary breaks
            found = {"steps": [vars(o) for o in session.outcomes], "profiles": "", "error": traceback.format_exc()}
            summary = ("# mgpu-bench GPU session: the summary failed\n\n```\n" + found["error"] + "```\n\n"
                       + "\n".join(f"- {o.name}: {o.status} {o.note}" for o in session.outcomes) + "\n")
        write_outputs(found, work, out, summary)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    problems = check_output(out)
    print("\n" + summary)
    print(f"written to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}"
          + (f"; OUTPUT PROBLEMS: {problems}" if problems else ""))
    bad = [o for o in session.outcomes if o.status in ("failed", "timeout")]
    return 1 if bad or problems else 0


if __name__ == "__main__":
    sys.exit(main())
