"""The GPU session rehearsed on CPU (python -m bench.gpu_check --dry-run): every step runs and ends ok, the output is
at most 8 files of at most 16 MiB in one folder, and the summary covers every step, target and probe. CI runs it,
so the session cannot rot while no GPU comes."""

import json
import subprocess
import sys

import pytest

from bench.gpu_check import OUTPUT_FILES, STEPS
from bench.run.gpu_session import MAX_FILE_BYTES, MAX_FILES


@pytest.mark.slow
def test_dry_run_rehearses_the_whole_session(tmp_path):
    out = tmp_path / "out"
    # A budget above the default: on a loaded CI machine every step must still get to run.
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run", "--budget-s", "900", "--out",
                           str(out)], capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert set(files) <= set(OUTPUT_FILES) and len(files) <= MAX_FILES
    assert {"summary.md", "env.txt", "results.jsonl", "gpu_check.json", "profiles.md", "logs.tar.gz"} <= set(files)
    assert all((out / f).stat().st_size <= MAX_FILE_BYTES for f in files)
    found = json.loads((out / "gpu_check.json").read_text())
    assert [(s["name"], s["status"]) for s in found["steps"]] == [(name, "ok") for name in STEPS]
    assert {p["item"] for p in found["probes"]} == {4, 5, 8, 9, 10, 11, 12, 13}
    assert not [p for p in found["probes"] if p["verdict"] == "error" or "FIX FAILED" in p["verdict"]]
    assert {r["mode"] for r in found["sweep"] if r["status"] == "ok"} == {"single", "ddp", "fsdp"}
    assert set(found["targets"]) == {"fast_epoch", "speedup", "ddp_overhead"}
    assert found["collective"]["devices"] == 1 and all(r["check"] == "ok" for r in found["collective"]["rows"])
    summary = (out / "summary.md").read_text()
    assert summary in proc.stdout  # printed and written
    for name in STEPS:
        assert f"| {name} | ok |" in summary
