"""python -m bench.scaling and python -m bench.report end to end, on CPU with a tiny synthetic set."""

import json
import re
import socket
import subprocess
import sys

import pytest
from helpers import TINY, TRAIN_TINY, by_label, processes_mentioning, record, sweep
from PIL import Image

from bench.records.results import append_record, read_records
from bench.render.plots import DPI, FIGSIZES

PROVENANCE = {"host", "device_names", "device_count", "driver", "cuda", "cudnn", "nccl", "torch", "torchvision",
              "cpu_model", "cpu_cores", "torch_threads", "precision", "git_commit", "seed", "argv", "timestamp"}


@pytest.mark.slow
def test_sweep_end_to_end_then_resume(tmp_path):
    proc = sweep(tmp_path, "--gpus", "1,2", *TINY, "--comm", "--comm-max-bytes", "65536")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no GPU in use" in proc.stdout
    records = read_records(tmp_path / "results.jsonl")
    rows = by_label(records)
    assert {k: r["status"] for k, r in rows.items()} == {
        ("single", 1): "ok", ("dp", 1): "skipped", ("ddp", 1): "ok", ("dp", 2): "skipped", ("ddp", 2): "ok"}
    ddp2 = rows["ddp", 2]
    assert ddp2["result"]["world_size"] == 2 and ddp2["device_type"] == "cpu" and ddp2["global_batch"] == 256
    assert ddp2["dataset"]["name"] == "synthetic" and len(ddp2["epoch_times_s"]) == 1
    assert PROVENANCE <= set(ddp2["provenance"])
    assert ddp2["provenance"]["argv"][:3] == ["python", "-m", "bench.scaling"]
    assert rows["dp", 1]["error"].startswith("dp needs CUDA")
    assert len({r["study"] for r in records}) == 1
    for name in ("summary.md", "comm.png", *FIGSIZES):
        assert (tmp_path / name).exists()
    assert "| 2 cpu | ddp | ok" in proc.stdout  # "ok |", or "ok; noisy |" on a busy machine
    # the collective benchmark ran once, for 2 processes, and the table explains ddp x2 with its band
    [comm] = [json.loads(line) for line in (tmp_path / "comm.jsonl").read_text().splitlines()]
    assert comm["devices"] == 2 and comm["study"] == ddp2["study"]
    ddp2_line = next(line for line in proc.stdout.splitlines() if line.startswith("| 2 cpu | ddp | ok"))
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| devices |")).split("|")
    cells = ddp2_line.split("|")
    assert len(cells) == len(header)
    predicted = cells[header.index(" predicted point [no overlap-overlap] ")].strip()
    # the point and the band, or, where this tiny run's baseline was slower than the ranks' compute allows, the
    # refusal with its reason (never a bare number above the ideal)
    assert re.match(r"[\d.]+x \[[\d.]+-[\d.]+x\]", predicted) or re.match(
        r"refused: predicted up to [\d.]+x, above the ideal 2x", predicted), predicted
    assert ddp2["prediction"]["predicted_epoch_s"] > 0 and ddp2["predicted_epoch_s"] > 0  # made before it ran
    assert ddp2["prediction"]["comm_timestamp"] < ddp2["provenance"]["timestamp"]
    assert "collectives x2 cpu: all-reduce of the model's gradients" in proc.stdout + proc.stderr
    assert len(ddp2["rank_epoch_times_s"][0]) == 2 and ddp2["provenance"]["topology"]["kind"] == "cpu"

    # resume after losing the last configuration: only that one runs again
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["key"] != ddp2["key"]]
    (tmp_path / "results.jsonl").write_text("\n".join(kept) + "\n")
    again = sweep(tmp_path, "--gpus", "1,2", *TINY, "--comm", "--comm-max-bytes", "65536", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done already (--resume)") == 3  # single x1, ddp x1 and the closing baseline
    assert "collectives x2: measured already" in again.stdout + again.stderr
    after = read_records(tmp_path / "results.jsonl")
    assert len(after) == len(kept) + 1 and after[-1]["key"] == ddp2["key"] and after[-1]["status"] == "ok"


@pytest.mark.slow
def test_failing_rank_is_recorded_and_the_sweep_goes_on(tmp_path):
    earlier = record("single", 1, [1.0])
    append_record(tmp_path / "results.jsonl", earlier)
    before = (tmp_path / "results.jsonl").read_text()
    proc = sweep(tmp_path, "--gpus", "2,1", "--modes", "ddp", *TINY, fault="raise")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results.jsonl").read_text().startswith(before)  # earlier results intact
    rows = by_label(read_records(tmp_path / "results.jsonl"))
    assert rows["ddp", 1]["status"] == "ok"
    assert rows["ddp", 2]["status"] == "failed"
    assert rows["ddp", 2]["error"] == "rank 1: RuntimeError: injected fault on rank 1"
    assert "ddp x2 cpu trial 0: FAILED: rank 1: RuntimeError: injected fault on rank 1" in proc.stderr + proc.stdout
    assert (tmp_path / "logs" / "ddp-x2-trial0.log").read_text().count("injected fault") >= 1


@pytest.mark.slow
def test_hung_rank_times_out_and_leaves_no_process(tmp_path):
    proc = sweep(tmp_path, "--gpus", "2", "--modes", "ddp", "--timeout", "30", *TINY, fault="hang")
    assert proc.returncode == 1, proc.stderr[-3000:]  # its one configuration failed: every one did
    [rec] = read_records(tmp_path / "results.jsonl")
    assert rec["status"] == "timeout" and rec["error"].startswith("timed out after 30 s")
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.slow
@pytest.mark.parametrize("args, text", [
    (["--gpus", "0"], "gpus: every count must be an integer >= 1"),
    (["--gpus", "a,b"], "not a comma-separated list of int"),
    (["--gpus", "2,2"], "duplicate items"),
    (["--batch-size", "0"], "batch_size: must be an integer >= 1"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar: no such file or folder"),
    (["--modes", "single,tp"], "unknown tp"),
])
def test_bad_arguments_one_line_nonzero_no_traceback(tmp_path, args, text):
    proc = sweep(tmp_path / "out", *args, timeout=120)
    assert proc.returncode == 2
    assert text in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.slow
def test_report_renders_plots_and_summary_from_results_files(tmp_path):
    node_a, node_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for rec in (record("single", 1, [10.0, 10.4], acc=0.80), record("ddp", 2, [5.5], acc=0.79),
                record("dp", 2, status="failed", error="CUDA out of memory")):
        append_record(node_a, rec)
    append_record(node_b, record("ddp", 4, [3.0], acc=0.77))
    append_record(node_b, record("dp", 4, status="skipped", error="4 GPUs requested, 2 visible"))
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(node_a), str(node_b), "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name, (width, height) in FIGSIZES.items():
        with Image.open(tmp_path / "r" / name) as image:
            image.load()  # decodes the whole file
            assert image.size == (round(width * DPI), round(height * DPI))
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "| 2 cuda | ddp | ok |" in summary and "| 4 cuda | ddp | ok |" in summary
    assert "dp x2: failed: CUDA out of memory" in summary and "dp x4: skipped" in summary
    bad = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path / "missing.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.jsonl: no such results file" in bad.stderr


@pytest.mark.slow
def test_one_configuration_across_two_nodes_merges_with_a_sweep(tmp_path):
    """Two torchrun agents on this host stand in for two nodes (c10d rendezvous on a port the OS picked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
            "-m", "bench.one_config", "--mode", "ddp", *TRAIN_TINY, "--results", str(tmp_path / "nodes.jsonl")]
    agents = [subprocess.Popen(node, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [agent.communicate(timeout=300)[0] for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    [multi] = read_records(tmp_path / "nodes.jsonl")  # only global rank 0 writes
    assert multi["devices"] == 2 and multi["provenance"]["nodes"] == 2

    proc = sweep(tmp_path / "sweep", "--gpus", "1", "--modes", "single", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path / "sweep" / "results.jsonl"),
                             str(tmp_path / "nodes.jsonl"), "--out", str(tmp_path / "merged")],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "other stud" not in report.stdout
    summary = (tmp_path / "merged" / "summary.md").read_text()
    # the sweep's single ran twice (the closing baseline); flags follow the machine's load ("ok (2/2); noisy", and
    # against a slowed baseline "ok; super-linear: suspect")
    assert "| 1 cpu | single | ok" in summary and "| 2 cpu, 2 nodes | ddp | ok" in summary
