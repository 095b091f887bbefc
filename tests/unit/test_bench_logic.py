"""The sweep's pure logic: planning, records, summaries and verdicts, flags round trip."""

import argparse
import json

import pytest
from helpers import fake_result, record

from bench.explain.goal import Goal
from bench.records.results import append_record, config_key, make_record, read_records, study_id
from bench.render.summary import markdown_summary, markdown_table, select_study, summarize
from bench.run.axes import Axes
from bench.run.plan import PlanInput, default_counts, make_cell, plan
from bench.run.sweep_config import SweepConfig
from mgpu_core.cli_args import add_config_arguments, config_to_argv
from mgpu_core.config import ConfigError, TrainConfig


def test_plan_skips_with_reasons_and_single_only_at_one():
    base = TrainConfig(batch_size=128)
    entries = plan(PlanInput(base, "cuda", (1, 2, 4), ("single", "dp", "ddp"), trials=2, visible_gpus=2, cores=16))
    labels = [(e.label, e.trial, e.skip) for e in entries]
    assert labels[:5] == [("single x1", 0, None), ("dp x1", 0, None), ("ddp x1", 0, None), ("dp x2", 0, None),
                          ("ddp x2", 0, None)]
    assert ("dp x4", 0, "4 GPUs requested, 2 visible") in labels
    assert [e.trial for e in entries] == [0] * 7 + [1] * 7  # trials outermost
    cpu = plan(PlanInput(base, "cpu", (1, 2, 4), ("single", "dp", "ddp"), visible_gpus=0, cores=2))
    assert {e.label: e.skip for e in cpu}["dp x1"].startswith("dp needs CUDA")
    assert {e.label: e.skip for e in cpu}["ddp x4"] == "4 CPU processes requested, 2 cores usable"
    strong = plan(PlanInput(base, "cuda", (3,), ("ddp",), scaling="strong", visible_gpus=4, cores=8))
    assert "does not split evenly" in strong[0].skip
    explicit_cpu = plan(PlanInput(TrainConfig(device="cpu"), "cpu", (1,), ("dp",), cores=2))
    assert explicit_cpu[0].skip.startswith("dp needs CUDA")  # planned and recorded as skipped, not a crash


def test_messages_count_in_the_singular_for_one():
    one_core = plan(PlanInput(TrainConfig(), "cpu", (1, 2), ("ddp",), visible_gpus=0, cores=1))
    assert one_core[1].skip == "2 CPU processes requested, 1 core usable"
    study = summarize([record("single", 1, [1.0], epochs=1)], Goal())
    assert study.title.endswith(", 1 epoch") and "epoch(s)" not in study.title


def test_a_cell_holds_what_every_later_step_uses_computed_once():
    base = TrainConfig(batch_size=128, seed=5)
    given = PlanInput(base, "cuda", (1, 2), ("single", "ddp"), trials=2, scaling="strong", visible_gpus=2, cores=8,
                      axes=Axes(grad_accum=(1, 4)))
    cells = plan(given)
    cell = next(c for c in cells if c.mode == "ddp" and c.devices == 2 and c.trial == 1
                and dict(c.variant)["grad_accum"] == 4)
    assert cell.skip is None
    assert cell.config == base.for_mode("ddp", batch_size=64, seed=6, grad_accum=4)  # its share, the trial's seed
    assert cell.label == "ddp accum 4 x2" and cell.stem == "ddp-accum-4-x2-trial1" and cell.nodes == 1
    assert cell.key == config_key(cell.config, 2, 1, "strong", "cuda")
    assert {c.study_id for c in cells} == {study_id(base, 1, "strong", "cuda")}  # one study, all modes and variants
    assert len({c.key for c in cells}) == len(cells)  # and a key of its own per configuration-trial
    assert make_cell(given, "ddp", 2, 1, cell.variant) == cell
    record = make_record(cfg=cell.config, devices=2, trial=1, scaling="strong", device_type="cuda", status="skipped",
                         provenance={}, target_val_acc=0.8)
    assert (record["key"], record["study"], record["variant"]) == (cell.key, cell.study_id, "accum 4")
    assert record["global_batch"] == 64 * 2 * 4


def test_default_counts():
    assert default_counts(8, 64) == (1, 2, 4, 8)
    assert default_counts(3, 64) == (1, 2)
    assert default_counts(0, 2) == (1, 2)
    assert default_counts(0, 1) == (1,)


@pytest.mark.parametrize("overrides, field", [
    ({"gpus": (0,)}, "gpus"), ({"gpus": (2, 2)}, "gpus"), ({"gpus": ()}, "gpus"), ({"trials": 0}, "trials"),
    ({"timeout": 0}, "timeout"), ({"timeout": float("inf")}, "timeout"), ({"modes": ("ddp", "ddp")}, "modes"),
    ({"out": ""}, "out"), ({"scaling": "global"}, "scaling")])
def test_sweep_config_rejects(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        SweepConfig(**overrides)


@pytest.mark.parametrize("overrides, field", [
    ({"min_val_acc": 1.01}, "min_val_acc"), ({"min_val_acc": float("nan")}, "min_val_acc"),
    ({"min_time_cut": 1.0}, "min_time_cut"), ({"min_time_cut": -0.01}, "min_time_cut")])
def test_goal_rejects(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}: must be a percentage"):
        Goal(**overrides)


def test_goal_is_percent_on_the_command_line_and_a_fraction_inside():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Goal)
    goal = Goal(**vars(parser.parse_args(["--min-val-acc", "80", "--min-time-cut", "25"])))
    assert goal == Goal(min_time_cut=0.25, min_val_acc=0.80) and goal.min_speedup == pytest.approx(4 / 3)
    assert Goal(**vars(parser.parse_args(config_to_argv(goal)))) == goal


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
    study = summarize(records, Goal(min_time_cut=0.40, min_val_acc=0.78))
    rows = {(r.mode, r.devices): r for r in study.rows}
    assert [(r.mode, r.devices) for r in study.rows] == [("single", 1), ("dp", 2), ("ddp", 2), ("dp", 4), ("ddp", 4)]
    assert rows["single", 1].epoch_time_s == (11.0, 10.0, 12.0) and rows["single", 1].goal_verdict == "baseline"
    assert rows["ddp", 2].speedup == pytest.approx(2.0) and rows["ddp", 2].efficiency == pytest.approx(1.0)
    assert rows["ddp", 2].goal_verdict == "YES"
    assert rows["dp", 2].goal_verdict.startswith("no: epoch -27%")
    assert "val 70.0% < 78%" in rows["ddp", 4].goal_verdict
    assert rows["dp", 4].status == "failed" and rows["dp", 4].note == "rank 1: RuntimeError: boom"
    # samples / median epoch time (even count: the mean of the middle two times), not the median of the rates
    assert rows["ddp", 2].samples_per_s[0] == pytest.approx(1000 / 5.5)
    assert rows["ddp", 2].samples_per_s_per_device == pytest.approx(1000 / 5.5 / 2)
    # TFLOP/s and MFU follow that samples/s/device (one definition), not the median of the per-epoch rates
    assert rows["ddp", 2].tflops_per_device == pytest.approx(1000 / 5.5 / 2 * 44_464_128.0 / 1e12)
    assert rows["ddp", 2].mfu == pytest.approx(rows["ddp", 2].tflops_per_device / 989.4)


def test_the_table_says_how_many_nodes_a_configuration_spanned():
    spanning = [record("ddp", 16, [2.0]), record("ddp", 16, status="timeout", error="rank 9: lost", trial=1)]
    spanning[0]["provenance"]["nodes"] = 2
    spanning[1]["provenance"]["nodes"] = 2  # a failed trial has no result: the sweep records the planned span
    table = markdown_table(summarize([record("single", 1, [8.0]), record("ddp", 8, [2.0]), *spanning], Goal()))
    assert "| 8 cuda | ddp |" in table and "| 16 cuda, 2 nodes | ddp | partial (1/2) |" in table


def test_retried_configuration_counts_once_success_wins():
    failed = record("ddp", 2, status="failed", error="x")
    ok = record("ddp", 2, [4.0], acc=0.8)
    study = summarize([record("single", 1, [8.0]), failed, ok], Goal())
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


def test_other_studies_are_left_out_with_a_notice_and_the_newest_wins_in_any_order():
    mine = record("single", 1, [1.0], epochs=2, timestamp="2026-11-28T02:00:00+00:00")
    other = record("single", 1, [1.0], epochs=3, timestamp="2026-11-28T01:00:00+00:00")
    notices = []
    assert select_study([other, mine], warn=notices.append) == [mine]
    assert select_study([mine, other], warn=notices.append) == [mine]
    assert "1 other study" in notices[0]
    assert select_study([mine, other], warn=notices.append, study=other["study"]) == [other]


def test_root_cause_comes_from_the_error_files(tmp_path):
    from bench.run.launch import failure_line
    from bench.run.torchrun import failure_message
    wrapper = tmp_path / "torchrun.json"
    wrapper.write_text(json.dumps({"rank": 1, "exitcode": 1, "message": "RuntimeError: boom"}))
    assert failure_line(1, wrapper, ["noise"]) == "rank 1: RuntimeError: boom"
    torch_file = tmp_path / "error.json"  # what torch's ErrorHandler.record_exception writes in a single process
    torch_file.write_text(json.dumps({"message": {"message": "DataError: /x: missing", "extraInfo": {}}}))
    assert failure_line(2, torch_file, []) == "DataError: /x: missing"
    absent = tmp_path / "none.json"
    assert failure_line(-9, absent, ["epoch 1"]) == "Signal 9 (SIGKILL)"
    assert failure_line(3, absent, ["a", "last words", ""]) == "exit code 3: last words"
    assert failure_line(3, absent, []) == "exit code 3 with no output"

    class Failure:
        exitcode, message = 2, {"message": "ConfigError: lr:\n bad", "extraInfo": {}}
    assert failure_message(Failure) == "ConfigError: lr: bad"
    Failure.message = "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"
    assert failure_message(Failure) == "exit code 2"


def test_time_to_target_accuracy_in_records_and_summary():
    single = record("single", 1, [10.0, 10.0, 10.0], acc=0.81, val_accs=[0.60, 0.79, 0.81])
    ddp = record("ddp", 2, [6.0, 6.0, 6.0], acc=0.77, val_accs=[0.50, 0.70, 0.77])
    assert single["time_to_target_s"] == 20.0 and single["epochs_to_target"] == 2
    assert ddp["time_to_target_s"] is None
    rows = {r.mode: r for r in summarize([single, ddp], Goal()).rows}
    assert rows["single"].time_to_target_s == 20.0 and rows["single"].reached == 1
    assert rows["ddp"].reached == 0
    later = {r.mode: r for r in summarize([single, ddp], Goal(min_val_acc=0.80)).rows}  # the report's target
    assert later["single"].time_to_target_s == 30.0


def test_gpu_check_report_ratios_and_verdicts():
    from bench.gpu_check import report
    rows = [("single", "dataloader fp32", fake_result([4.0], 0.8), None),
            ("single", "device bf16", fake_result([0.25], 0.8), None),
            ("ddp", "dataloader fp32", fake_result([4.2], 0.8), None),
            ("ddp", "device bf16", fake_result([0.27], 0.8), None),
            ("dp", "device bf16", None, "rank 0: RuntimeError: boom")]
    text = report(rows, "Test GPU")
    assert "| single | device bf16 | 0.250 | 4,000 | 16.0x | +0.0% |" in text
    assert "| ddp | device bf16 | 0.270 | 3,704 | 15.6x | +8.0% |" in text
    assert "| dp | device bf16 | failed: rank 0: RuntimeError: boom |" in text
    assert "- fast path (device bf16) epoch <= 0.3 s: PASS (0.250 s)" in text
    assert "- fast path >= 10x the DataLoader pipeline: PASS (16.0x)" in text
    assert "- ddp x1 within 5% of single: FAIL (+8.0%)" in text


def test_variants_are_their_own_series_and_compute_per_device_is_shown():
    records = [record("single", 1, [10.0]), record("ddp", 2, [5.0]), record("ddp", 2, [5.5], sync_bn=True)]
    assert len({r["study"] for r in records}) == 1 and len({r["key"] for r in records}) == 3
    study = summarize(records, Goal())
    assert [r.label for r in study.rows] == ["single", "ddp", "ddp sync-bn"]
    table = markdown_table(study)
    # 1000 samples in 10 s on one device x 44.46 MFLOP per sample = 0.00445 TFLOP/s, 0.0% of the 989 TFLOP/s peak
    assert "| 1 cuda | single | ok | 10.00 [10.00-10.00] | 100 | 100 | 0.00445 | 0.0% | 1.00x |" in table
    assert "| 2 cuda | ddp sync-bn | ok |" in table and "| 1.00 GiB |" in table
    assert "SimpleCNN (2.12M parameters, 8.1 MiB gradients)" in study.title
    study.parameters, study.gradient_bytes = 330, 1320  # a tiny user model (conv 3->8, BatchNorm, fc 8->10)
    assert "(330 parameters, 1.3 KiB gradients)" in study.title


def test_a_strong_scaling_header_states_the_global_batch_whichever_record_is_newest():
    cells = [c for c in plan(PlanInput(TrainConfig(batch_size=128), "cuda", (1, 2, 4), ("single", "ddp"),
                                       scaling="strong", visible_gpus=4, cores=8)) if c.skip is None]
    records = [make_record(cfg=c.config, devices=c.devices, trial=0, scaling="strong", device_type="cuda",
                           status="ok", provenance={"host": "h"}, target_val_acc=0.78,
                           result=fake_result([10.0 / c.devices], 0.8, devices=c.devices, cfg=c.config))
               for c in cells]
    assert [r["batch_per_device"] for r in records] == [128, 128, 64, 32]
    expected = "global batch 128, split over the devices (64 per device at 2, 32 per device at 4), strong scaling"
    for ordered in (records, records[::-1]):  # the settings are read from the last successful record
        study = summarize(ordered, Goal())
        assert expected in study.title and "batch 128 per device" not in study.title
    assert "batch 128 per device, weak scaling" in summarize([record("single", 1, [1.0], batch_size=128)],
                                                             Goal()).title


def test_no_accuracy_target_is_claimed_for_a_model_the_recipe_was_not_tuned_for():
    records = [record("single", 1, [10.0], acc=0.3, model="resnet18"), record("ddp", 2, [5.0], acc=0.3,
                                                                              model="resnet18")]
    study = summarize(records, Goal())
    assert not study.accuracy_claimed and study.title.startswith("resnet18 (2.12M parameters")
    assert [r.goal_verdict for r in study.rows] == ["baseline", "time cut met (no accuracy target claimed)"]
    assert "not claimed here: the reference recipe is tuned for SimpleCNN" in markdown_summary(study, [])


def test_records_are_strict_json(tmp_path):
    rec = record("single", 1, [1.0])
    rec["train_loss"] = float("nan")
    rec["samples_per_s"] = [float("inf")]
    append_record(tmp_path / "r.jsonl", rec)
    text = (tmp_path / "r.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    [back] = read_records(tmp_path / "r.jsonl")
    assert back["train_loss"] is None and back["samples_per_s"] == [None]


def test_profile_divides_by_the_steps_that_ran():
    from bench.profile import table
    text = table([("data", 10.0, 0.0)], wall_s=0.2, steps=4, title="t", asked=30)
    assert "4 steps (of 30 asked: the epoch holds no more) in 0.200 s wall (50.0 ms/step)" in text
    assert "| data | 10.0 | 2.50 |" in text


def test_scaling_is_weak_or_strong_and_global_batch_is_its_older_name():
    from bench.scaling import build_parser
    parser = build_parser()
    assert parser.parse_args([]).scaling == "weak"
    assert parser.parse_args(["--scaling", "strong"]).scaling == parser.parse_args(["--global-batch"]).scaling
    assert SweepConfig(scaling="strong").scaling == "strong"
    with pytest.raises(SystemExit):
        parser.parse_args(["--scaling", "global"])


def test_a_cell_whose_samples_hold_no_whole_step_is_skipped_with_the_reason():
    """--train-samples 100 at batch 128 (found by a new user: a ConfigError about --grad-accum, never given)."""
    cells = plan(PlanInput(TrainConfig(train_samples=300), "cuda", (1, 2, 4), ("single", "ddp"), visible_gpus=4,
                           cores=8, axes=Axes(grad_accum=(1, 3))))
    skipped = {(c.label, c.skip.split(";")[0]) for c in cells if c.skip}
    assert skipped == {("ddp accum 3 x1", "--train-samples 300 holds no whole step of 384 samples (batch 128 x 1 "
                        "device x accumulation 3)"),
                       ("ddp x4", "--train-samples 300 holds no whole step of 512 samples (batch 128 x 4 devices x "
                        "accumulation 1)"),
                       ("ddp accum 3 x2", "--train-samples 300 holds no whole step of 768 samples (batch 128 x 2 "
                        "devices x accumulation 3)"),
                       ("ddp accum 3 x4", "--train-samples 300 holds no whole step of 1536 samples (batch 128 x 4 "
                        "devices x accumulation 3)")}


def test_plot_titles_stay_inside_the_figure(tmp_path):
    from matplotlib.image import imread

    from bench.render.plots import render
    records = [record("single", 1, [10.0]), record("ddp", 2, [5.0])]
    study = summarize(records, Goal())
    study.train_samples = 10_000  # the main CPU study's title: '... (10,000-sample subset), AMD EPYC (cpu), ...'
    for path in render(study, tmp_path):
        top = imread(path)[:60, :, :3]  # the title band
        edges = [top[:, :2], top[:, -2:]]
        assert all(edge.min() > 0.9 for edge in edges), f"{path.name}: the title touches the figure's edge"
