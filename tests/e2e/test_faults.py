"""Reliability: injected faults (dead ranks, OOM, signals, torn files, concurrent sweeps, bad data, arguments and
environments), each with what must hold afterwards."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import TINY, by_label, processes_mentioning, record, sweep, write_official, write_tree

from bench.records.results import append_record, read_records
from bench.run.lock import exclusive
from bench.scaling import parse


@pytest.mark.slow
@pytest.mark.parametrize("fault, expected", [
    ("kill", "rank 1: Signal 9 (SIGKILL) received by PID"),
    ("oom", "rank 1: OutOfMemoryError: injected: CUDA out of memory. Tried to allocate 20.00 GiB"),
])
def test_rank_dying_mid_epoch_is_recorded_and_the_sweep_goes_on(tmp_path, fault, expected):
    earlier = record("single", 1, [1.0])
    append_record(tmp_path / "results.jsonl", earlier)
    before = (tmp_path / "results.jsonl").read_text()
    proc = sweep(tmp_path, "--gpus", "2", "--modes", "single,ddp", "--timeout", "120", *TINY, fault=fault)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results.jsonl").read_text().startswith(before)
    rows = by_label(read_records(tmp_path / "results.jsonl"))
    assert rows["ddp", 2]["status"] == "failed" and rows["ddp", 2]["error"].startswith(expected)
    assert rows["ddp", 2]["wall_s"] < 120  # torchrun's teardown ended it, not the sweep's timeout
    assert rows["single", 1]["status"] == "ok"
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, resume, ignored", [
    (signal.SIGTERM, 143, True, False), (signal.SIGINT, 130, False, False),
    (signal.SIGINT, 130, False, True),  # started in the background of a script: SIGINT inherited as ignored
])
def test_signal_on_the_sweep_keeps_finished_results_and_resume_completes(tmp_path, signum, code, resume, ignored):
    # 16k samples: an epoch lasts seconds, so the signal lands while the second configuration trains
    args = ["--gpus", "1,2", "--modes", "single,ddp", *TINY, "--synthetic-train-size", "16384"]
    proc = subprocess.Popen([sys.executable, "-m", "bench.scaling", "--out", str(tmp_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None)
    second_log = tmp_path / "logs" / "ddp-x1-trial0.log"
    deadline = time.monotonic() + 240
    while not (second_log.exists() and "warm-up" in second_log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "rerun with --resume" in stderr and "Traceback" not in stderr
    assert processes_mentioning(str(tmp_path)) == []
    records = read_records(tmp_path / "results.jsonl")
    assert [(r["mode"], r["devices"], r["status"]) for r in records] == [("single", 1, "ok")]  # cut-off one absent
    if not resume:  # one signal's resume stands for both: the same handler ends the sweep
        return
    again = sweep(tmp_path, *args, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "single x1 cpu trial 0: done already (--resume)" in again.stdout + again.stderr
    rows = by_label(read_records(tmp_path / "results.jsonl"))
    assert {k: r["status"] for k, r in rows.items()} == {("single", 1): "ok", ("ddp", 1): "ok", ("ddp", 2): "ok"}
    assert len(read_records(tmp_path / "results.jsonl")) == 4  # and the closing baseline (single x1 trial 1)


@pytest.mark.slow
def test_second_sweep_on_the_same_out_is_refused(tmp_path):
    with exclusive(tmp_path):
        proc = sweep(tmp_path, "--gpus", "1", *TINY, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"python -m bench.scaling: error: {tmp_path} is in use by another sweep "
                                   f"(pid {os.getpid()}); wait for it to finish or choose another --out")


@pytest.mark.slow
def test_torn_last_line_is_reported_ignored_and_not_merged(tmp_path):
    results = tmp_path / "results.jsonl"
    append_record(results, record("ddp", 8, [1.0]))
    with open(results, "a") as f:
        f.write(json.dumps(record("ddp", 16, [1.0]))[:80])  # a power cut mid-write
    # no --resume: the file holds another study (a resume of it is refused: tests/unit/test_resume.py)
    proc = sweep(tmp_path, "--gpus", "1", "--modes", "single", *TINY, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{results}:2: incomplete record ignored" in proc.stdout + proc.stderr
    warnings = []
    records = read_records(results, warn=warnings.append)
    # single x1, then the closing baseline (single x1 once more)
    assert [(r["mode"], r["devices"]) for r in records] == [("ddp", 8), ("single", 1), ("single", 1)]
    assert len(warnings) == 1  # the torn line stays torn; the new record starts on a line of its own


@pytest.mark.slow
def test_results_of_another_schema_version_are_refused(tmp_path):
    old = record("single", 1, [1.0]) | {"schema_version": 1}  # before time to accuracy was recorded
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n")
    proc = sweep(tmp_path, "--gpus", "1", *TINY, "--resume", timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "results.jsonl:1: results schema version 1, this harness reads 3" in proc.stderr
    report = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path / "results.jsonl")],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 2 and "schema version 1" in report.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("nine_classes", "9 class folders with images under train/ (CIFAR-10 has 10)"),
    ("unreadable_image", "train/cat/0000.png: unreadable image"),
    ("empty", "no CIFAR-10 there (expected cifar-10-batches-py/, cifar-10-python.tar.gz, train/ + test/"),
    ("truncated_batch", "data_batch_2: unreadable CIFAR-10 batch file"),
    ("missing_batch", "data_batch_5: missing CIFAR-10 batch file"),
    ("wrong_layout", "test_batch: not a CIFAR-10 batch"),
])
def test_bad_data_is_one_line_naming_the_path_before_training(tmp_path, damage, message):
    data = tmp_path / "data"
    data.mkdir()
    if damage == "nine_classes":
        write_tree(data, per_class=1, classes=[f"c{i}" for i in range(9)])
    elif damage == "unreadable_image":
        write_tree(data, per_class=1)
        (data / "train" / "cat" / "0000.png").write_bytes(b"\x89PNG broken")
    elif damage != "empty":
        write_official(data)
        batches = data / "cifar-10-batches-py"
        if damage == "truncated_batch":
            (batches / "data_batch_2").write_bytes((batches / "data_batch_2").read_bytes()[:100])
        elif damage == "missing_batch":
            (batches / "data_batch_5").unlink()
        else:
            import pickle
            with open(batches / "test_batch", "wb") as f:
                pickle.dump({"data": b"\0" * 3000, "labels": [1]}, f)
    proc = sweep(tmp_path / "out", "--dataset", "cifar10", "--data-dir", str(data), "--no-download",
                 "--cache-dir", str(tmp_path / "cache"), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and str(data) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "logs").exists()  # nothing started


@pytest.mark.parametrize("flags", [
    ["--trials", "0"], ["--trials", "x"], ["--trials", "-1"], ["--timeout", "0"], ["--timeout", "-5"],
    ["--timeout", "soon"], ["--min-time-cut", "100"], ["--min-time-cut", "-1"], ["--min-val-acc", "101"],
    ["--gpus", "1,,2"], ["--gpus", "-1"], ["--gpus", ""], ["--modes", ""], ["--modes", "ddp,ddp"],
    ["--modes", "tp"], ["--epochs", "0"], ["--epochs", "1.5"], ["--batch-size", "-3"], ["--eval-batch-size", "0"],
    ["--warmup-steps", "-1"], ["--warmup-epochs", "x"], ["--workers", "-1"], ["--lr", "0"], ["--lr", "fast"],
    ["--train-samples", "0"], ["--threads", "0"], ["--seed", "-1"], ["--synthetic-train-size", "0"],
    ["--precision", "fp8"], ["--pipeline", "tfdata"], ["--dataset", "imagenet"], ["--device", "tpu"],
    ["--optimizer", "lion"], ["--dist-timeout-s", "0"], ["--no-such-flag"], ["--lr", "inf"],
    ["--weight-decay", "inf"], ["--seed", str(2**64)], ["--dist-timeout-s", "1e300"], ["--min-time-cut", "nan"],
    ["--out", ""],
])
def test_every_flags_invalid_values_are_one_line_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("python -m bench.scaling: error: ")
    name = flags[0][2:]
    assert name in err or name.replace("-", "_") in err, err  # the line names the flag or its field


@pytest.mark.slow
def test_out_that_cannot_be_a_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    proc = sweep(tmp_path / "file" / "reports", "--gpus", "1", *TINY, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "file: is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # what torchrun sets in a worker (TORCHELASTIC_RUN_ID: started by torchrun, not variables left in a shell)
        env = os.environ | {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(port), "TORCHELASTIC_RUN_ID": "port-test"}
        proc = subprocess.run([sys.executable, "-m", "mgpu_core", "--mode", "ddp", "--dataset", "synthetic",
                               "--dist-timeout-s", "20"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"rendezvous at 127.0.0.1:{port} failed" in proc.stderr and "EADDRINUSE" in proc.stderr


@pytest.mark.slow
def test_empty_cuda_visible_devices(tmp_path):
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "mgpu_core", "--device", "cuda", "--dataset", "synthetic"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "python -m mgpu_core: error: device: cuda requested but no CUDA device is visible"
    swept = subprocess.run([sys.executable, "-m", "bench.scaling", "--out", str(tmp_path), "--gpus", "1",
                            "--modes", "dp", *TINY], env=env, capture_output=True, text=True, timeout=120)
    assert swept.returncode == 1 and "no GPU in use" in swept.stdout  # nothing measured: dp was skipped
    assert swept.stderr.strip().splitlines()[-1].startswith("python -m bench.scaling: error: nothing measured")
    [skipped] = read_records(tmp_path / "results.jsonl")
    assert skipped["status"] == "skipped" and skipped["error"] == "dp needs CUDA devices; none visible"
    refused = sweep(tmp_path / "cuda", "--gpus", "1", "--device", "cuda", *TINY, env=env, timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "python -m bench.scaling: error: device: cuda requested but no CUDA device is visible")
    assert not (tmp_path / "cuda").exists()  # refused before anything was created


@pytest.mark.slow
def test_sigkill_on_the_sweep_takes_its_children_with_it(tmp_path):
    args = ["--gpus", "2", "--modes", "ddp", *TINY, "--synthetic-train-size", "16384", "--dist-timeout-s", "60"]
    proc = subprocess.Popen([sys.executable, "-m", "bench.scaling", "--out", str(tmp_path), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "logs" / "ddp-x2-trial0.log"
    deadline = time.monotonic() + 240
    while not (log.exists() and "warm-up" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(tmp_path)) == []  # the parent-death signal ended torchrun, torchrun its workers


@pytest.mark.slow
def test_a_sweep_refuses_to_run_beside_leftovers_of_its_out(tmp_path):
    (tmp_path / ".handoff").mkdir()
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                 str(tmp_path / ".handoff" / "ddp-x2-trial0.result.json")])
    try:
        proc = sweep(tmp_path, "--gpus", "1", *TINY, "--resume", timeout=120)
    finally:
        leftover.kill()
        leftover.wait()
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"processes of an earlier sweep are still running (pid {leftover.pid})" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("folder", "results.jsonl: not a regular file"),
    ("devnull", "results.jsonl: not a regular file"),
    ("undecodable", "results.jsonl: not a results file (undecodable byte at offset 1)"),
    ("missing_keys", "results.jsonl:1: record without study, key"),
])
def test_a_results_file_that_cannot_be_extended_is_refused_before_training(tmp_path, damage, message):
    results = tmp_path / "results.jsonl"
    if damage == "folder":
        results.mkdir()
    elif damage == "devnull":
        results.symlink_to("/dev/null")
    elif damage == "undecodable":
        results.write_bytes(b"{\xff\xfe}\n")
    else:
        results.write_text(json.dumps({"schema_version": 2, "mode": "single"}) + "\n")
    proc = sweep(tmp_path, "--gpus", "1", "--modes", "single", *TINY, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_root_causes_and_divergence_are_recorded_in_one_line(tmp_path):
    # (a model that cannot work is refused before any configuration: tests/process/test_model_check.py)
    failing = sweep(tmp_path / "a", "--gpus", "2", "--modes", "ddp", *TINY, "--grad-accum", "1000", timeout=300)
    assert failing.returncode == 1, failing.stderr[-2000:]  # every configuration failed: exit 1, one line
    assert failing.stderr.strip().splitlines()[-1].startswith("python -m bench.scaling: error: every configuration")
    [rec] = read_records(tmp_path / "a" / "results.jsonl")
    assert rec["status"] == "failed"
    assert re.fullmatch(r"rank [01]: ConfigError: one optimizer step takes 128000 samples per rank .*--grad-accum.*",
                        rec["error"])
    diverged = sweep(tmp_path / "b", "--gpus", "1", "--modes", "single", *TINY, "--lr", "1e30", timeout=300)
    assert diverged.returncode == 1, diverged.stderr[-2000:]
    text = (tmp_path / "b" / "results.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    for rec in read_records(tmp_path / "b" / "results.jsonl"):  # single x1 and the closing baseline
        assert rec["status"] == "failed" and "training loss became non-finite" in rec["error"]
        assert "epoch 1" in rec["error"]


@pytest.mark.slow
def test_report_and_sweep_paths_and_flags_are_one_line(tmp_path):
    results = tmp_path / "results.jsonl"
    append_record(results, record("single", 1, [1.0]))
    (tmp_path / "file").write_text("")
    for args, text in ((["--out", str(tmp_path / "file")], "file: is a file, not a folder"),
                       (["--out", "/proc/mgpu"], "/proc/mgpu"),
                       (["--min-time-cut", "100"], "min_time_cut: must be a percentage in [0, 100)"),
                       (["--min-val-acc", "nan"], "min_val_acc: must be a percentage")):
        proc = subprocess.run([sys.executable, "-m", "bench.report", str(results), *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert text in proc.stderr and "Traceback" not in proc.stderr
    home = tmp_path / "home"
    proc = sweep("~/study", "--gpus", "1", "--modes", "single", *TINY, env=os.environ | {"HOME": str(home)},
                 timeout=300)
    assert proc.returncode == 0 and (home / "study" / "results.jsonl").exists()  # ~ expanded, as for --data-dir
    (tmp_path / "notadir").write_text("")
    proc = sweep(tmp_path / "out", "--gpus", "1", *TINY, "--cache-dir", str(tmp_path / "notadir"),
                 "--dataset", "cifar10", "--data-dir", str(tmp_path), timeout=120)
    assert proc.returncode == 2 and "notadir: not a folder (--cache-dir" in proc.stderr
