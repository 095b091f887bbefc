"""bench.validate: the prediction checked on two hosts (network namespaces) over a tbf-shaped link."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from bench import validate
from bench.run.netns import rate_bits_per_s


def _our_namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return {name for name in listed if name.startswith("mv")}  # bench.run.netns's prefix


def test_without_root_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert validate.main(["--rates", "unshaped", "--models", "simplecnn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m bench.validate: error: network namespaces and tc need root (two hosts in network "
                   "namespaces, a shaped link)"]


def test_rates_are_written_as_tc_writes_them():
    assert rate_bits_per_s("50mbit") == 50e6 and rate_bits_per_s("1gbit") == 1e9
    assert rate_bits_per_s("unshaped") is None
    with pytest.raises(ValueError, match="write it as tc does"):
        rate_bits_per_s("50 Mbps")


@pytest.mark.slow
def test_a_reduced_grid_predicts_before_each_run_and_writes_the_table(tmp_path):
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")):
        pytest.skip("bench.validate needs root, ip and tc")
    before = _our_namespaces()
    proc = subprocess.run([sys.executable, "-m", "bench.validate", "--rates", "200mbit,unshaped", "--models",
                           "simplecnn", "--buckets", "25", "--out", str(tmp_path), "--synthetic-train-size", "1024",
                           "--warmup-steps", "2", "--timeout", "400"],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "validate.md").read_text()
    assert "| 200mbit | simplecnn | 25 MB |" in table and "| unshaped | simplecnn | 25 MB |" in table
    assert "MAPE" in table and "Kendall" in table and "Machine:" in table
    cells = [json.loads(line) for line in (tmp_path / "validate.jsonl").read_text().splitlines()]
    assert len(cells) == 2
    for cell in cells:
        assert cell["status"] == "ok" and math.isfinite(cell["error"])
        assert cell["prediction"]["predicted_epoch_s"] > 0 and cell["measured_epoch_s"] > 0
        assert cell["alpha_beta_error"]["all_reduce"] < 1  # a fit, not noise
    slow, fast = sorted(cells, key=lambda c: c["rate"] != "200mbit")
    assert slow["prediction"]["comm_s"] > fast["prediction"]["comm_s"]  # the shaped link predicts slower
    assert _our_namespaces() == before  # the hosts are gone
