"""The sweep's pure logic: planning, records, summaries and verdicts, flags round trip."""

import argparse

import pytest

from bench.plan import default_counts, plan
from bench.results import append_record, make_record, read_records
from bench.summary import select_study, summarize
from bench.sweep_config import SweepConfig
from mgpu_core.cli_args import add_config_arguments, config_to_argv
from mgpu_core.config import ConfigError, TrainConfig


def fake_result(epoch_times, val_acc, samples=1000, devices=1, val_accs=None):
    val_accs = val_accs or [val_acc] * len(epoch_times)
    return {"epochs": [{"time_s": t, "samples_per_s": samples / t, "samples_per_s_per_device": samples / t / devices,
                        "loss": 1.0, "train_acc": 0.5} for t in epoch_times],
            "evals": [{"accuracy": a} for a in val_accs],
            "final_val_acc": val_acc, "warmup_s": 0.1, "compile_s": 0.0, "dataset": {"name": "synthetic"},
            "device_name": "Test GPU"}


def record(mode, devices, times=None, acc=0.8, trial=0, status="ok", error=None, val_accs=None, **cfg):
    train = TrainConfig(mode=mode, devices=devices if mode == "dp" else 1, seed=trial, **cfg)
    return make_record(cfg=train, devices=devices, trial=trial, scaling="weak", device_type="cuda", status=status,
                       provenance={"host": "h"}, error=error,
                       result=fake_result(times, acc, devices=devices, val_accs=val_accs) if status == "ok" else None)


def test_plan_skips_with_reasons_and_single_only_at_one():
    entries = plan((1, 2, 4), ("single", "dp", "ddp"), trials=2, visible_gpus=2, cores=16, batch_size=128,
                   global_batch=False)
    labels = [(e.label, e.trial, e.skip) for e in entries]
    assert labels[:5] == [("single x1", 0, None), ("dp x1", 0, None), ("ddp x1", 0, None), ("dp x2", 0, None),
                          ("ddp x2", 0, None)]
    assert ("dp x4", 0, "4 GPUs requested, 2 visible") in labels
    assert [e.trial for e in entries] == [0] * 7 + [1] * 7  # trials outermost
    cpu = plan((1, 2, 4), ("single", "dp", "ddp"), 1, visible_gpus=0, cores=2, batch_size=128, global_batch=False)
    assert {e.label: e.skip for e in cpu}["dp x1"].startswith("dp needs CUDA")
    assert {e.label: e.skip for e in cpu}["ddp x4"] == "4 CPU processes requested, 2 cores usable"
    strong = plan((3,), ("ddp",), 1, visible_gpus=4, cores=8, batch_size=128, global_batch=True)
    assert "does not split evenly" in strong[0].skip


def test_default_counts():
    assert default_counts(8, 64) == (1, 2, 4, 8)
    assert default_counts(3, 64) == (1, 2)
    assert default_counts(0, 2) == (1, 2)
    assert default_counts(0, 1) == (1,)


@pytest.mark.parametrize("overrides", [{"gpus": (0,)}, {"gpus": (2, 2)}, {"gpus": ()}, {"trials": 0},
                                       {"timeout": 0}, {"min_val_acc": 101}, {"modes": ("ddp", "ddp")}])
def test_sweep_config_rejects(overrides):
    with pytest.raises(ConfigError):
        SweepConfig(**overrides)


def test_config_flags_round_trip():
    cfg = TrainConfig(mode="ddp", train_samples=77, augment=True, precision="bf16", data_dir="/x", lr=0.01)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    assert TrainConfig(**vars(parser.parse_args(config_to_argv(cfg)))) == cfg


def test_speedup_efficiency_and_verdicts():
    records = [record("single", 1, [10.0, 12.0, 11.0], acc=0.80),
               record("ddp", 2, [5.0, 6.0], acc=0.79),       # 45% faster and accurate: goal met
               record("dp", 2, [8.0], acc=0.85),             # 20% faster only
               record("ddp", 4, [3.0], acc=0.70),            # fast, inaccurate
               record("dp", 4, status="failed", error="rank 1: RuntimeError: boom")]
    study = summarize(records, min_time_cut=40, min_val_acc=78)
    rows = {(r.mode, r.devices): r for r in study.rows}
    assert [(r.mode, r.devices) for r in study.rows] == [("single", 1), ("dp", 2), ("ddp", 2), ("dp", 4), ("ddp", 4)]
    assert rows["single", 1].epoch_time_s == (11.0, 10.0, 12.0) and rows["single", 1].verdict == "baseline"
    assert rows["ddp", 2].speedup == pytest.approx(2.0) and rows["ddp", 2].efficiency == pytest.approx(1.0)
    assert rows["ddp", 2].verdict == "YES"
    assert rows["dp", 2].verdict.startswith("no: epoch -27%")
    assert "val 70.0% < 78%" in rows["ddp", 4].verdict
    assert rows["dp", 4].status == "failed" and rows["dp", 4].note == "rank 1: RuntimeError: boom"
    assert rows["ddp", 2].samples_per_s_per_device == pytest.approx((1000 / 5 + 1000 / 6) / 2 / 2)  # median of epochs


def test_retried_configuration_counts_once_success_wins():
    failed = record("ddp", 2, status="failed", error="x")
    ok = record("ddp", 2, [4.0], acc=0.8)
    study = summarize([record("single", 1, [8.0]), failed, ok], 40, 78)
    row = [r for r in study.rows if r.mode == "ddp"][0]
    assert row.trials == 1 and row.status == "ok" and row.speedup == pytest.approx(2.0)


def test_torn_last_line_is_reported_and_ignored(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, record("single", 1, [1.0]))
    with open(path, "a") as f:
        f.write('{"schema_version": 2, "stat')
    warnings = []
    assert len(read_records(path, warn=warnings.append)) == 1
    assert warnings == [f"warning: {path}:2: incomplete record ignored"]


def test_other_studies_are_left_out_with_a_notice():
    mine = record("single", 1, [1.0], epochs=2)
    other = record("single", 1, [1.0], epochs=3)
    notices = []
    assert select_study([other, mine], warn=notices.append) == [mine]
    assert "1 other study" in notices[0]


def test_failure_summary_names_the_root_cause_rank():
    from bench.launch import summarize_failure
    torchrun_output = [
        "[rank0]: RuntimeError: Connection closed by peer [127.0.0.1]:37035.",
        "[rank1]:     raise RuntimeError('boom')",
        "[rank1]: RuntimeError: boom",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
        "Failures:", "  rank      : 0 (local_rank: 0)",
        "Root Cause (first observed failure):", "[0]:", "  rank      : 1 (local_rank: 1)",
    ]
    assert summarize_failure(torchrun_output) == "rank 1: RuntimeError: boom"
    single = ["Traceback (most recent call last):", '  File "x.py", line 1',
              "torch.OutOfMemoryError: CUDA out of memory."]
    assert summarize_failure(single) == "torch.OutOfMemoryError: CUDA out of memory."
    assert summarize_failure(["python -m mgpu_core: error: mode: bad"]) == "python -m mgpu_core: error: mode: bad"


def test_time_to_target_accuracy_in_records_and_summary():
    single = record("single", 1, [10.0, 10.0, 10.0], acc=0.81, val_accs=[0.60, 0.79, 0.81])
    ddp = record("ddp", 2, [6.0, 6.0, 6.0], acc=0.77, val_accs=[0.50, 0.70, 0.77])
    assert single["time_to_target_s"] == 20.0 and single["epochs_to_target"] == 2
    assert ddp["time_to_target_s"] is None
    rows = {r.mode: r for r in summarize([single, ddp], 40, 78).rows}
    assert rows["single"].time_to_target_s == 20.0 and rows["single"].reached == 1
    assert rows["ddp"].reached == 0
    later = {r.mode: r for r in summarize([single, ddp], 40, 80).rows}  # the report's target, not the sweep's
    assert later["single"].time_to_target_s == 30.0


def test_gpu_check_report_ratios_and_verdicts():
    from bench.gpu_check import report
    rows = [("single", "classic fp32", record("single", 1, [4.0]), None),
            ("single", "fast bf16", record("single", 1, [0.25]), None),
            ("ddp", "classic fp32", record("ddp", 1, [4.2]), None),
            ("ddp", "fast bf16", record("ddp", 1, [0.27]), None),
            ("dp", "fast bf16", None, "rank 0: RuntimeError: boom")]
    text = report(rows, "Test GPU")
    assert "| single | fast bf16 | 0.250 | 4,000 | 16.0x | +0.0% |" in text
    assert "| ddp | fast bf16 | 0.270 | 3,704 | 15.6x | +8.0% |" in text
    assert "| dp | fast bf16 | failed: rank 0: RuntimeError: boom |" in text
    assert "- fast path epoch <= 0.3 s: PASS (0.250 s)" in text
    assert "- fast path >= 10x classic: PASS (16.0x)" in text
    assert "- ddp x1 <= 5% over single: FAIL (+8.0%)" in text
