"""--resume against the study a results file holds (bench.run.resume): the comparison and its one line."""

import pytest
from helpers import record

from bench.records.results import append_record
from bench.records.study import study_identity
from bench.run.resume import ResumeError, check_resume, differing_settings


def identity(rec: dict) -> dict:
    return study_identity(rec["train_config"], rec["devices"], rec["scaling"], rec["device_type"])


def test_the_settings_that_differ_are_named_with_both_values():
    held = identity(record("single", 1, [1.0], epochs=1))
    asked = identity(record("ddp", 2, [1.0], epochs=2, lr_scaling="linear", sync_bn=True))
    # mode, device count and the variant (sync_bn) make no other study; epochs and lr_scaling do
    assert differing_settings(held, asked) == {"epochs": (1, 2), "lr_scaling": ("sqrt", "linear")}
    assert differing_settings(held, held) == {}
    assert differing_settings({"a": 1}, {}) == {"a": (1, None)}


def test_a_resume_of_another_study_is_refused_in_one_line_and_the_file_left_as_it_was(tmp_path):
    results = tmp_path / "results.jsonl"
    held = record("single", 1, [1.0], epochs=1)
    # nothing to resume: the whole study runs, and the sweep says so
    assert check_resume(results, held["study"], identity(held)) == (
        f"notice: --resume: nothing to resume in {results} (no records yet): the whole study runs")
    append_record(results, held)
    before = results.read_bytes()
    assert check_resume(results, held["study"], identity(held)) is None  # the same study goes on
    asked = record("single", 1, [1.0], epochs=2)
    with pytest.raises(ResumeError) as refused:
        check_resume(results, asked["study"], identity(asked))
    assert str(refused.value) == (f"--resume: {results} holds a study with epochs=1; this run asks epochs=2 (use "
                                  "another --out, or drop --resume to start a new study)")
    assert results.read_bytes() == before


def test_a_file_holding_the_asked_study_among_others_resumes_it(tmp_path):
    results = tmp_path / "results.jsonl"
    asked = record("single", 1, [1.0], epochs=2, timestamp="2026-01-01")
    append_record(results, asked)
    append_record(results, record("single", 1, [1.0], epochs=1, timestamp="2026-02-01"))  # newer, another study
    check_resume(results, asked["study"], identity(asked))
