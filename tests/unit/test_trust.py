"""Numbers you can trust, on constructed inputs: impossible rows and bands, noise and interference, drift, the
sweep's order, oversubscription, threads."""

import pytest
from helpers import record
from test_scaling_model import comm_record

from bench.explain.goal import Goal
from bench.explain.plausibility import (
    MIN_TRIALS,
    NOISY_CPU_SHARE,
    SUPERLINEAR_SIGMAS,
    combined_noise,
    drift,
    noisy,
    provisional,
    refused_prediction,
    relative_noise,
    superlinear,
)
from bench.explain.scaling_model import Evidence, bottleneck_of
from bench.render.summary import markdown_summary, markdown_table, summarize
from bench.render.trust import oversubscribed
from bench.run.plan import PlanInput, plan
from mgpu_core.config import TrainConfig


def _trials(mode, devices, times_per_trial, **kw):
    return [record(mode, devices, times, trial=t, **kw) for t, times in enumerate(times_per_trial)]


def test_efficiency_of_160_percent_is_suspect_never_near_ideal():
    base = _trials("single", 1, [[10.0, 10.1], [9.9, 10.0]])
    fast = _trials("ddp", 2, [[3.125, 3.13], [3.12, 3.125]])  # 3.2x on 2 devices: efficiency 160%
    study = summarize(base + fast, Goal(min_time_cut=0.40, min_val_acc=0.5))
    row = next(r for r in study.rows if r.mode == "ddp")
    assert row.efficiency == pytest.approx(1.6, rel=0.01)
    assert row.explanation.bottleneck.startswith("super-linear: suspect (efficiency 160%")
    assert "near ideal" not in row.explanation.bottleneck
    assert "super-linear: suspect" in row.flags and row.goal_verdict.endswith("(super-linear: suspect)")
    assert any(n.startswith("super-linear: suspect: 1 of 2 rows") for n in study.notices)
    assert "| ok (2/2); super-linear: suspect |" in markdown_table(study)


def test_verdict_order_puts_plausibility_before_near_ideal():
    e = dict(mode="ddp", devices=2, device_type="cpu", rank_times_s=[1.0, 1.0], data_wait_share=0.0)
    assert bottleneck_of(Evidence(efficiency=1.6, noise=0.05, **e)).startswith("super-linear: suspect")
    within = bottleneck_of(Evidence(efficiency=1.05, noise=0.05, **e))  # 5% above ideal, noise 5%: within 2 sigma
    assert within == "compute-bound: near ideal (efficiency 105%)"
    assert bottleneck_of(Evidence(efficiency=0.95, noise=0.01, noisy="noisy: other processes used 60% of the CPU",
                            **e)).startswith("noisy: other processes used 60%")
    assert bottleneck_of(Evidence(efficiency=0.95, noise=0.01, trials_ok=1, **e)).endswith("; provisional: 1 trial")
    assert bottleneck_of(Evidence(efficiency=0.95, noise=None, **e)).endswith("; provisional: noise unknown")


def test_rules_and_thresholds():
    assert relative_noise([5.0]) is None and relative_noise([1.0, 1.0, 1.0]) == 0.0
    assert relative_noise([100, 101, 99, 100, 20]) == pytest.approx(1.4826 * 1 / 100)  # one slow epoch: robust
    assert combined_noise(0.03, 0.04) == pytest.approx(0.05) and combined_noise(0.03, None) is None
    assert superlinear(1.0 + SUPERLINEAR_SIGMAS * 0.05 - 1e-6, 0.05) is None
    assert superlinear(1.0 + SUPERLINEAR_SIGMAS * 0.05 + 1e-3, 0.05).startswith("super-linear: suspect")
    assert superlinear(1.01, None).startswith("super-linear: suspect")  # noise unknown: any excess
    assert superlinear(0.5, None) is None
    assert provisional(MIN_TRIALS, 0.01) is None and provisional(MIN_TRIALS - 1, 0.01) is not None
    assert noisy({"other_cpu_share": NOISY_CPU_SHARE + 0.01}).startswith("noisy: other processes used")
    assert noisy({"other_cpu_share": NOISY_CPU_SHARE}) is None and noisy(None) is None
    assert noisy({"other_cpu_share": 0.0, "gpu": {"other_processes": [4242], "throttle_reasons": ["sw_power_cap"]}}) \
        == "noisy: 1 other process on the GPUs"
    assert "hw_thermal_slowdown" in noisy({"gpu": {"throttle_reasons": ["hw_thermal_slowdown", "gpu_idle"]}})


def test_a_band_above_the_ideal_is_refused_as_a_prediction():
    assert refused_prediction(6.84, 2).startswith("refused: predicted up to 6.84x, above the ideal 2x")
    assert refused_prediction(2.0, 2) is None and refused_prediction(2.05, 2, noise=0.05) is None
    # the compute-only step measured at 0.03 s while the baseline took 0.1 s per step: a band of 6.7x for 2 devices
    records = [*_trials("single", 1, [[10.0, 10.1], [10.0, 9.9]], steps=100),
               *_trials("ddp", 2, [[5.5, 5.6], [5.5, 5.4]], steps=50, rank_times=[5.5, 5.4])]
    study = summarize(records, Goal(), [comm_record(2, 0.03, 0.001)])
    row = next(r for r in study.rows if r.mode == "ddp")
    assert row.explanation.predicted is None and row.explanation.residual is None
    assert row.explanation.refused.startswith("refused: predicted up to 6.")
    assert "| refused: predicted up to 6." in markdown_table(study)
    assert [p.refused is not None for p in study.bands["ddp"]] == [False, True, True]  # x1 is the baseline itself
    assert any(n.startswith("refused predictions: 1 row whose predicted band lies above the ideal speedup")
               for n in study.notices)
    # with the sweep's point prediction in the records (as every ddp row with a collective run has), the refused row
    # still shows no point, no band and no residual (the strong-scaling CPU study showed '5.59x [5.58-6.02x] | -31%')
    for r in records[2:]:
        r["prediction"] = {"predicted_speedup": 1.0, "band_speedup": [0.95, 1.05], "predicted_epoch_s": 1.5,
                           "baseline": "the collective benchmark's 1-rank compute-only step (same run)"}
    e = next(r for r in summarize(records, Goal(), [comm_record(2, 0.03, 0.001)]).rows if r.mode == "ddp").explanation
    assert e.refused and (e.point, e.predicted, e.residual, e.point_residual) == (None, None, None, None)


def test_noisy_rows_are_flagged_counted_and_never_near_ideal():
    records = [*_trials("single", 1, [[10.0, 10.1], [10.0, 9.9]]), *_trials("ddp", 2, [[5.0, 5.05], [5.0, 4.95]])]
    for r in records:
        r["interference"] = {"other_cpu_share": 0.6 if r["mode"] == "ddp" else 0.01}
    study = summarize(records, Goal(min_time_cut=0.4, min_val_acc=0.5))
    row = next(r for r in study.rows if r.mode == "ddp")
    assert row.flags == ["noisy: other processes used 60% of the CPU"]
    assert row.explanation.bottleneck.startswith("noisy:") and "near ideal" not in row.explanation.bottleneck
    assert "| ok (2/2); noisy |" in markdown_table(study)
    assert study.notices[0].startswith("noisy: 1 of 2 rows measured while other processes ran (using up to 60% of")
    assert markdown_summary(study, []).count("**noisy: 1 of 2 rows") == 1


def test_baseline_drift_is_reported_at_the_top():
    assert drift([100, 101, 99], [100, 100.5, 99.5]) is None
    assert drift([100, 101, 99], [80, 81, 79]).startswith("baseline drift: the 1-device baseline ran 20% slower")
    # a closing measurement of one epoch is judged with the earlier trials' noise (here about 1.5%)
    assert drift([100, 102], [80]).startswith("baseline drift: the 1-device baseline ran 21% slower")
    assert drift([100, 102], [100]) is None
    assert "drift not judged" in drift([100], [80])  # one epoch in all: stated, not judged
    base = _trials("single", 1, [[10.0, 10.1, 9.9], [12.5, 12.6, 12.4]])  # the closing measurement 20% slower
    for i, r in enumerate(base):
        r["design"] = {"order_seed": 7, "position": i * 5, "closing_baseline": i == 1}
    study = summarize([*base, *_trials("ddp", 2, [[6.0, 6.1, 5.9]])], Goal())
    assert any(n.startswith("baseline drift: the 1-device baseline ran 20% slower") for n in study.notices)
    assert "order: configurations shuffled within each trial round, seed 7" in study.notices


def test_plan_shuffles_each_round_with_its_seed_and_closes_with_the_baseline():
    def labels(**kw):
        return [(c.label, c.trial) for c in plan(PlanInput(TrainConfig(), "cuda", (1, 2, 4), ("single", "ddp"), 2,
                                                           visible_gpus=4, cores=8, **kw))]
    plain = labels()
    shuffled = labels(order_seed=3)
    assert shuffled == labels(order_seed=3) and shuffled != plain  # reproducible from the recorded seed
    assert sorted(shuffled) == sorted(plain)
    assert [t for _, t in shuffled] == [0] * 4 + [1] * 4  # still trial rounds, outermost
    closing = labels(closing_baseline=True)
    assert closing[:-1] == plain and closing[-1] == ("single x1", 2)


def test_oversubscription_is_stated_on_the_row():
    rec = record("ddp", 2, [5.0, 5.0])
    rec["result"] |= {"rank_threads": [2, 2], "world_size": 2, "nodes": 1}
    rec["provenance"]["cpu_cores"] = 2
    assert oversubscribed(rec) == "oversubscribed: 2 ranks x 2 threads on 2 cores"
    rec["result"]["rank_threads"] = [1, 1]
    assert oversubscribed(rec) is None


def test_the_docs_quote_every_threshold():
    import ast
    import importlib
    from pathlib import Path
    text = (Path(__file__).parents[2] / "docs" / "trust.md").read_text()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    quoted = {}
    for name, value, where, *_ in rows:
        module = importlib.import_module(where.strip("`").removesuffix(".py").replace("/", "."))
        quoted[name.strip("| `")] = (ast.literal_eval(value), getattr(module, name.strip("| `")))
    assert {k: v for k, (v, _) in quoted.items()} == {k: code for k, (_, code) in quoted.items()}
    import bench.explain.noise as noise
    import bench.explain.plausibility as plausibility
    constants = {n for m in (plausibility, noise) for n in dir(m) if n.isupper() and n not in ("MEDIAN_SE",)}
    assert constants - {"CANNOT_JUDGE", "VERDICTS"} <= set(quoted)  # every threshold of these modules is quoted


def test_a_prediction_above_ideal_let_through_by_noise_says_so_and_one_device_is_no_communication():
    records = [*_trials("single", 1, [[10.0, 10.1], [10.0, 9.9]]), *_trials("ddp", 1, [[10.0, 10.1], [10.1, 9.9]]),
               *_trials("ddp", 2, [[5.0, 5.05], [5.0, 4.95]])]
    study = summarize(records, Goal())
    table = markdown_table(study)
    assert "| 1.00x (no communication) |" in table
    two = next(r for r in study.rows if (r.mode, r.devices) == ("ddp", 2))
    two.explanation.predicted, two.explanation.point = (1.9, 2.1), None  # within a noisy baseline's margin
    assert "| 1.90-2.10x (above ideal, within the baseline's noise) |" in markdown_table(study)
    two.explanation.predicted = (1.8, 2.0)
    assert "above ideal" not in markdown_table(study)
