"""Command-line cases of issue 21 ("Reliability, round three"), run as a user would: one line, the right exit code,
nothing lost."""

import os
import subprocess
import sys
import time

import pytest
from helpers import TINY, sweep

from bench.records.results import read_records


def run(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.mark.parametrize("counts", ["3,8", "64"])
def test_comm_with_no_count_that_fits_is_one_line_exit_2(tmp_path, counts):
    proc = run("bench.comm", "--gpus", counts, "--device", "cpu", "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "fits this machine" in proc.stderr


def test_comm_help_shows_its_own_examples_and_exit_codes():
    proc = run("bench.comm", "--help")
    assert proc.returncode == 0 and "python -m bench.comm --gpus" in proc.stdout
    assert "training diverged" not in proc.stdout  # the trainer's exit codes are not bench.comm's


@pytest.mark.parametrize("args, flag", [
    (["--fsdp-wrap", "model"], "--fsdp-wrap"),
    (["--ddp-comm-hook", "bf16", "--modes", "fsdp"], "--ddp-comm-hook"),
    (["--powersgd-rank", "4", "--modes", "single"], "--powersgd-rank"),
])
def test_sweep_flags_that_would_do_nothing_are_one_line(tmp_path, args, flag):
    proc = sweep(tmp_path, *args, *TINY)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and flag in proc.stderr, proc.stderr


def test_a_study_that_measured_nothing_exits_1_in_one_line_and_keeps_its_records(tmp_path):
    proc = sweep(tmp_path, "--gpus", "1", "--modes", "single", *TINY, "--train-samples", "10")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"python -m bench.scaling: error: nothing measured: every configuration was skipped (the reasons are in "
        f"{tmp_path / 'summary.md'})")
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr  # no empty legend warned of
    assert {r["status"] for r in read_records(tmp_path / "results.jsonl")} == {"skipped"}
    assert "no whole step" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_refused_cells_are_skipped_with_the_reason_and_the_rest_runs(tmp_path):
    # --device cpu with dp, static graph with accumulation, a ddp-only flag (--compile: the unit test)
    proc = sweep(tmp_path, "--gpus", "1", "--modes", "dp,ddp,fsdp", "--device", "cpu", "--powersgd-rank", "4",
                 "--ddp-static-graph", "on", "--grad-accum", "1,2", *TINY, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    records = {(r["mode"], r["variant"]): r for r in read_records(tmp_path / "results.jsonl")}
    assert records["dp", ""]["status"] == "skipped" and "CUDA" in records["dp", ""]["error"]
    refused = records["ddp", "accum 2 static-graph rank 4"]
    assert refused["status"] == "skipped" and "143580" in refused["error"]
    assert records["ddp", "static-graph rank 4"]["status"] == "ok"


@pytest.mark.parametrize("stale", [
    {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"},  # the case
    {"MASTER_ADDR": "10.255.255.1", "MASTER_PORT": "29512"},                              # another: an old master
])
def test_the_trainer_by_hand_with_stale_rendezvous_variables_is_one_line_within_seconds(stale):
    env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RUN_ID"} | stale
    start = time.monotonic()
    proc = run("mgpu_core", "--mode", "ddp", "--dataset", "synthetic", env=env, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not started by torchrun" in proc.stderr
    assert time.monotonic() - start < 30  # not the whole --dist-timeout-s


def test_the_sweep_under_torchrun_is_refused_in_one_line():
    proc = run("bench.scaling", "--gpus", "1", env=os.environ | {"TORCHELASTIC_RUN_ID": "x"})
    assert proc.returncode == 2 and "not under torchrun" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("args, env, flag", [
    (["--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:70000"], {}, "rdzv_endpoint: port"),
    (["--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:65000"], {}, "rdzv_endpoint: port"),  # its plan: above 65535
    ([], {"PET_NNODES": "abc"}, "--nnodes"),
    ([], {"PET_NODE_RANK": "x"}, "--node-rank"),
    (["--nnodes", "0"], {}, "nnodes: must be >= 1"),
    (["--nnodes", "-1"], {}, "nnodes: must be >= 1"),
])
def test_node_flags_are_one_line_naming_the_right_flag(tmp_path, args, env, flag):
    proc = sweep(tmp_path, *args, *TINY, env=os.environ | env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and flag in proc.stderr, proc.stderr


@pytest.mark.slow
def test_out_of_memory_by_hand_is_one_line_naming_batch_and_image_size(tmp_path):
    from helpers import FAULTS, TRAIN_TINY
    env = os.environ | {"MGPU_TEST_FAULT": "oom", "MGPU_TEST_FAULT_RANK": "0",
                        "PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")])}
    proc = run("mgpu_core", *TRAIN_TINY, "--batch-size", "32", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m mgpu_core: error: out of memory at batch 32 "
                                                           "per device and image size 32: lower --batch-size")


@pytest.mark.slow
def test_resume_with_other_study_settings_is_refused_in_one_line_and_touches_nothing(tmp_path):
    args = ["--gpus", "1", "--modes", "single", *TINY, "--no-closing-baseline"]
    first = sweep(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    results = tmp_path / "results.jsonl"
    before = {p.name: p.read_bytes() for p in (results, tmp_path / "summary.md")}
    refused = sweep(tmp_path, *args, "--epochs", "2", "--resume")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.splitlines() == [
        f"python -m bench.scaling: error: --resume: {results} holds a study with epochs=1; this run asks epochs=2 "
        "(use another --out, or drop --resume to start a new study)"]
    assert {p.name: p.read_bytes() for p in (results, tmp_path / "summary.md")} == before
    again = sweep(tmp_path, *args, "--resume")  # the same study goes on (here: nothing left to run)
    assert again.returncode == 0 and "single x1 cpu trial 0: done already (--resume)" in again.stdout
    assert len(read_records(results)) == 1


@pytest.mark.parametrize("module, flag", [("bench.comm", "--max-bytes"), ("bench.scaling", "--comm-max-bytes")])
def test_a_collective_larger_than_host_memory_is_one_line_before_anything_runs(tmp_path, module, flag):
    # before: bench.comm doubled its sizes for minutes until the OOM killer ended rank 0 (exit 1, SIGKILL)
    proc = run(module, "--gpus", "2", "--device", "cpu", flag, str(10**23), "--out", str(tmp_path / "out"),
               *(["--modes", "ddp", "--dataset", "synthetic"] if module == "bench.scaling" else []), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and f"{flag}: an all-reduce of" in proc.stderr
    assert not (tmp_path / "out" / "comm.jsonl").exists()
