"""bench.one_config --results FILE: a file the harness cannot extend is refused in one line before anything trains
(as the sweep refuses it), never appended to."""

import subprocess
import sys

import pytest

TINY = ["--mode", "single", "--dataset", "synthetic", "--synthetic-train-size", "256", "--synthetic-test-size", "64",
        "--epochs", "1", "--device", "cpu"]


@pytest.mark.parametrize("content, link", [(b"\xff\xfe not a results file\n", False), (None, True)])
def test_a_results_file_it_cannot_extend_is_one_line_and_left_alone(tmp_path, content, link):
    path = tmp_path / "results.jsonl"
    if link:
        path.symlink_to("/dev/null")
    else:
        path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "bench.one_config", *TINY, "--results", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr
    assert "epoch 1/1" not in proc.stdout  # refused before training
    assert path.is_symlink() if link else path.read_bytes() == content
