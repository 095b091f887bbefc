"""Interference seen by a real sweep: CPU burners started (and ended) by the test compete during one configuration."""

import os
import subprocess
import sys
import time

import pytest
from helpers import TINY, by_label

from bench.explain.plausibility import NOISY_CPU_SHARE
from bench.records.results import read_records


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_a_cpu_burner_during_one_configuration_flags_that_row_noisy(tmp_path):
    results = tmp_path / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "bench.scaling", "--out", str(tmp_path), "--gpus", "2", "--modes",
                             "single,ddp", *TINY, "--no-closing-baseline"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    burners = []
    try:
        deadline = time.monotonic() + 300
        while _lines(results) < 2:  # the plan: single x1, ddp x1, ddp x2; two recorded: ddp x2 starts now
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                   for _ in range(len(os.sched_getaffinity(0)))]
        while _lines(results) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    rows = by_label(read_records(results))
    ddp2 = rows["ddp", 2]
    assert ddp2["interference"]["other_cpu_share"] > NOISY_CPU_SHARE
    assert ddp2["result"]["rank_threads"] and ddp2["design"]["closing_baseline"] is False
    line = next(x for x in out.splitlines() if x.startswith("| 2 cpu | ddp |"))
    assert "| ok; noisy" in line and "near ideal" not in line
    bottleneck = line.split(" | ")[-2]
    assert bottleneck.startswith(("noisy:", "super-linear: suspect")), line
    summary = (tmp_path / "summary.md").read_text()
    assert "rows measured while other processes ran" in summary.split("| devices |")[0]  # counted in the header
