"""bench.compare: the noise rules, pairing and refusals, the regression gate; report.html in a real browser."""

import json
from pathlib import Path

import pytest
from helpers import record

from bench.compare import EXIT_CANNOT_JUDGE
from bench.compare import main as compare_main
from bench.explain.noise import change_interval, judge, outliers
from bench.records.results import append_record
from bench.report import main as report_main


@pytest.mark.parametrize("base, new, verdict", [
    ([100, 101, 99, 100, 102], [120, 121, 119, 122, 120], "faster"),    # clearly apart
    ([100, 101, 99, 100, 102], [80, 81, 79, 82, 80], "slower"),
    ([100, 130, 90, 110, 95], [105, 125, 92, 111, 99], "no change"),   # within the noise
    ([100, 102], [110, 111], "faster"),                                 # few values: ranges apart
    ([100, 112], [110, 115], "no change"),                              # ranges overlap
    ([100], [150], "cannot judge"),                                     # one value: noise unknown
    ([100, 100.5], [103, 103.2], "no change"),                          # below the minimum change of 5%
])
def test_verdicts_are_declared_only_beyond_the_noise(base, new, verdict):
    assert judge(base, new, min_change=0.05, alpha=0.05)[0] == verdict


def test_one_outlier_epoch_cannot_hide_a_halving():
    # The min-max rule took the noise as (101 - 20) / 100 = 81% and called -50% "no change".
    base = [100, 101, 99, 100, 20]     # one epoch slowed by a loaded machine
    new = [50, 51, 49, 50, 52]
    verdict, change, why = judge(base, new, min_change=0.05)
    assert verdict == "slower" and change == pytest.approx(-0.5)
    assert "1 outlier in base (20)" in why
    assert outliers(base) == [20] and outliers(new) == []


def test_a_against_a_is_no_change():
    runs = [100, 102, 98, 101, 99, 100.5]
    again = [99.5, 101, 100, 98.5, 102, 100]
    verdict, change, why = judge(runs, again, min_change=0.05)
    assert verdict == "no change" and abs(change) < 0.01
    low, high = change_interval(runs, again, 0.05)
    assert low < 0 < high


def write_study(folder: Path, speed: float, spread: float = 0.01, **cfg) -> Path:
    """single x1 and ddp x2 with 5 epochs each around `speed` times the reference times."""
    folder.mkdir(parents=True, exist_ok=True)
    for mode, devices, base in (("single", 1, 10.0), ("ddp", 2, 5.5)):
        times = [base / speed * (1 + spread * k) for k in (-2, -1, 0, 1, 2)]
        append_record(folder / "results.jsonl", record(mode, devices, times, timestamp="2026-11-28T01:00:00", **cfg))
    return folder


def test_identical_studies_give_no_change_and_a_regression_fails_the_gate(tmp_path, capsys):
    a, b = write_study(tmp_path / "a", 1.0), write_study(tmp_path / "b", 1.0)
    assert compare_main([str(a), str(b), "--out", str(tmp_path / "same")]) == 0
    out = capsys.readouterr().out
    assert "0 faster, 0 slower, 2 no change" in out
    slow = write_study(tmp_path / "slow", 0.8)
    assert compare_main([str(a), str(slow), "--out", str(tmp_path / "cmp"), "--fail-on-regression", "10"]) == 1
    out = capsys.readouterr().out
    assert "| 1 cuda | single | 100 | 80 | -20.0% |" in out and "0 faster, 2 slower, 0 no change" in out
    assert (tmp_path / "cmp" / "compare.png").exists() and (tmp_path / "cmp" / "report.html").exists()
    assert compare_main([str(a), str(slow), "--out", str(tmp_path / "cmp"), "--fail-on-regression", "30"]) == 0


def _side(folder: Path, *records) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        append_record(folder / "results.jsonl", r)
    return folder


def test_a_gate_that_cannot_judge_never_passes(tmp_path, capsys):
    gate = ["--fail-on-regression", "5", "--out", str(tmp_path / "out")]
    one = _side(tmp_path / "one", record("single", 1, [10.0], timestamp="t"))        # the quick default: one epoch
    one_again = _side(tmp_path / "one2", record("single", 1, [10.0], timestamp="t"))
    assert compare_main([str(one), str(one_again), *gate]) == EXIT_CANNOT_JUDGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gate: cannot judge: unknown noise in 1 of 1 pair (")
    assert compare_main([str(one), str(one_again), "--out", str(tmp_path / "out")]) == 0  # no gate: a report
    failed = _side(tmp_path / "failed", record("single", 1, status="failed", error="boom", timestamp="t"))
    assert compare_main([str(one), str(failed), *gate]) == EXIT_CANNOT_JUDGE
    assert "new has only failed records" in capsys.readouterr().err
    good = write_study(tmp_path / "good", 1.0)
    other = _side(tmp_path / "other", record("ddp", 4, [3.0, 3.1, 3.0], timestamp="t"),
                  record("single", 1, status="failed", error="boom", timestamp="t"))
    assert compare_main([str(good), str(other), *gate]) == EXIT_CANNOT_JUDGE
    assert "no configuration ran successfully on both sides" in capsys.readouterr().err
    half = _side(tmp_path / "half", *[r for r in (record("single", 1, [10.0, 10.1, 9.9, 10.0, 10.05], timestamp="t"),
                                                  record("ddp", 2, status="failed", error="x", timestamp="t"))])
    assert compare_main([str(good), str(half), *gate]) == EXIT_CANNOT_JUDGE
    assert "ddp x2 ran in base and failed in new" in capsys.readouterr().err


def test_refused_settings_unpaired_rows_and_force(tmp_path, capsys):
    a = write_study(tmp_path / "a", 1.0)
    other = write_study(tmp_path / "bf16", 1.0, precision="bf16")
    with pytest.raises(SystemExit) as info:
        compare_main([str(a), str(other), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "the studies differ in precision: fp32 vs bf16" in err
    assert compare_main([str(a), str(other), "--out", str(tmp_path / "x"), "--force"]) == 0
    extra = write_study(tmp_path / "extra", 1.0)
    append_record(extra / "results.jsonl", record("ddp", 4, [3.0, 3.1], timestamp="2026-11-28T01:00:00"))
    assert compare_main([str(a), str(extra), "--out", str(tmp_path / "y")]) == 0
    out = capsys.readouterr().out
    assert "only in new: ddp x4" in out
    shown = write_study(tmp_path / "pipeline", 1.0, pipeline="dataloader")  # the point of a comparison: shown
    assert compare_main([str(a), str(shown), "--out", str(tmp_path / "z")]) == 0
    assert "settings differ: pipeline: device -> dataloader" in capsys.readouterr().out


@pytest.mark.slow
def test_report_html_renders_in_a_real_browser_with_every_image_loaded(tmp_path):
    from browser import Page, find_browser
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    study = write_study(tmp_path / "study", 1.0)
    append_record(study / "results.jsonl", record("dp", 2, status="failed", error="CUDA out of memory",
                                                 timestamp="2026-11-28T01:00:00"))
    assert report_main([str(study / "results.jsonl"), "--out", str(tmp_path / "r")]) == 0
    page = tmp_path / "r" / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    for width in (1366, 800):  # a laptop, and a narrow window
        viewer = Page(browser, tmp_path / f"profile{width}")
        try:
            viewer.open(page.as_uri(), width=width)
            loaded = json.loads(viewer.evaluate(
                "JSON.stringify([...document.images].map(i => i.complete && i.naturalWidth > 0))"))
            assert loaded and all(loaded), loaded
            assert viewer.evaluate("document.querySelectorAll('table tr').length") >= 4
            overflow = viewer.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow} px wider than a {width} px window"
            assert viewer.errors() == []
            viewer.screenshot(tmp_path / f"report-{width}.png")
        finally:
            viewer.close()
    assert (tmp_path / "report-1366.png").stat().st_size > 10_000


def test_an_a_a_pair_of_identical_studies_differs_in_no_setting(tmp_path, capsys):
    """The settings that do not split a study (mode, variant, seed, where data live) are one definition: whichever
    configuration is newest on each side, two identical studies show no 'settings differ'."""
    accum = ("ddp", {"grad_accum": 4, "ddp_bucket_mb": 1.0})
    sides = []
    for name, order in (("a", ("single", accum, "ddp", "fsdp")), ("b", ("single", "fsdp", "ddp", accum))):
        folder = tmp_path / name
        folder.mkdir()
        for mode in order:
            mode, variant = mode if isinstance(mode, tuple) else (mode, {})
            for trial in range(2):
                append_record(folder / "results.jsonl", record(mode, 1 if mode == "single" else 2,
                                                               [10.0, 10.1, 9.9], trial=trial, **variant))
        sides.append(folder)  # newest: fsdp (no fused optimizer) on one side, ddp with accumulation on the other
    assert compare_main([str(sides[0]), str(sides[1]), "--out", str(tmp_path / "aa")]) == 0
    out = capsys.readouterr().out
    assert "settings differ" not in out and "0 faster, 0 slower, 4 no change" in out


def test_a_strong_scaling_study_is_known_by_its_global_batch_whichever_record_is_newest():
    from bench.compare import Side, study_settings
    one, two = record("single", 1, [1.0], batch_size=128), record("ddp", 2, [1.0], batch_size=64)
    for rec in (one, two):
        rec["scaling"] = "strong"
    newest_two, newest_one = (study_settings(Side(Path("x"), recs, None)) for recs in ([one, two], [two, one]))
    assert newest_two == newest_one and newest_one["batch"] == 128
    one["scaling"] = two["scaling"] = "weak"  # weak: the batch per device is the study's
    assert study_settings(Side(Path("x"), [one], None))["batch"] == 128


def test_report_draws_the_study_asked_for_among_several(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    for epochs, stamp in ((1, "2026-01-01"), (2, "2026-02-01")):
        append_record(results, record("single", 1, [1.0] * epochs, epochs=epochs, timestamp=stamp))
    older = record("single", 1, [1.0], epochs=1)["study"]
    assert report_main([str(results), "--out", str(tmp_path / "older"), "--study", older]) == 0
    assert "1 epoch" in (tmp_path / "older" / "summary.md").read_text().splitlines()[2]
    with pytest.raises(SystemExit) as exit_:
        report_main([str(results), "--out", str(tmp_path / "x"), "--study", "nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "--study nope: not in these results" in err[0]


def test_a_collective_record_given_as_results_is_named_as_such(tmp_path, capsys):
    comm = tmp_path / "comm.jsonl"
    comm.write_text(json.dumps({"kind": "comm", "schema_version": 1, "devices": 2, "rows": []}) + "\n")
    with pytest.raises(SystemExit) as exit_:
        report_main([str(comm), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "not a results file (a record of the collective" in err[0]


def test_an_out_that_is_a_file_is_named_so_in_one_line(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    append_record(results, record("single", 1, [1.0]))
    (tmp_path / "afile").write_text("")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(SystemExit) as exit_:
            report_main([str(results), "--out", str(out)])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip() == (f"python -m bench.report: error: {tmp_path / 'afile'}: is a file, "
                                                   "not a folder")
