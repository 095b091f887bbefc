"""The collective benchmark: sizes, the sum check, and two gloo ranks end to end."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from mgpu_core import collectives
from mgpu_core.collectives import DDP_BUCKET_BYTES, CommCheckError, CommConfig, message_sizes, time_collective
from mgpu_core.distributed import DistEnv


def test_sizes_double_and_include_the_model_and_the_bucket():
    sizes = message_sizes(CommConfig(min_bytes=4096, max_bytes=65536), grad_bytes=8_488_744)
    assert sizes == [4096, 8192, 16384, 32768, 65536, 8_488_744, DDP_BUCKET_BYTES]


def test_a_wrong_result_is_a_failure_not_a_number(monkeypatch):
    env = DistEnv(rank=0, world_size=1, local_rank=0, local_world_size=1, device=torch.device("cpu"), backend=None,
                  threads=1)
    comm = CommConfig(iters=3, warmup_iters=0)
    monkeypatch.setattr(collectives, "_issue", lambda op, inp, out: None)  # one rank: all-reduce leaves it be
    assert time_collective(env, "all_reduce", 4096, comm) > 0
    monkeypatch.setattr(collectives, "_issue", lambda op, inp, out: out.mul_(3))  # a broken collective
    with pytest.raises(CommCheckError, match="all_reduce of 4096 bytes returned a wrong result"):
        time_collective(env, "all_reduce", 4096, comm)


@pytest.mark.parametrize("overrides, field", [({"max_bytes": 10, "min_bytes": 100}, "max_bytes"),
                                               ({"gpus": (1,)}, "gpus"), ({"budget_s": float("inf")}, "budget_s")])
def test_bad_settings_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        CommConfig(**overrides)


@pytest.mark.slow
def test_two_gloo_ranks_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.comm", "--gpus", "2", "--out", str(tmp_path),
                           "--max-bytes", "65536", "--budget-s", "0.05", "--compute-steps", "2", "--dataset",
                           "synthetic"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [rec] = [json.loads(line) for line in (tmp_path / "comm.jsonl").read_text().splitlines()]
    assert rec["devices"] == 2 and rec["backend"] == "gloo" and rec["grad_bytes"] == 2_122_186 * 4
    ops = {(r["op"], r["bytes"]) for r in rec["rows"]}
    assert ("all_reduce", rec["grad_bytes"]) in ops and ("all_reduce", DDP_BUCKET_BYTES) in ops
    assert ("broadcast", rec["grad_bytes"]) in ops and ("reduce", rec["grad_bytes"]) in ops
    assert ("all_gather", rec["grad_bytes"]) in ops and ("reduce_scatter", rec["grad_bytes"]) in ops
    for row in rec["rows"]:
        assert row["check"] == "ok" and row["time_s"] > 0
        factor = 0.5 if row["op"] in ("all_gather", "reduce_scatter") else 1.0  # (n-1)/n and 2(n-1)/n at n=2
        assert row["busbw_bytes_per_s"] == pytest.approx(row["algbw_bytes_per_s"] * factor)
    assert rec["compute_step_s"] > 0 and rec["provenance"]["topology"]["kind"] == "cpu"
    assert "| 2 cpu | all_reduce | 8.10 MiB (model) |" in proc.stdout
    with Image.open(tmp_path / "comm.png") as image:
        image.load()
    alone = subprocess.run([sys.executable, "-m", "bench.comm", "--gpus", "1"], capture_output=True, text=True,
                           timeout=120)
    assert alone.returncode == 2 and "gpus: collectives need at least 2" in alone.stderr
