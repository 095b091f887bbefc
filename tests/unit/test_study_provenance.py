"""A study's provenance block (shared, differs, first and last timestamp) and its notice when the records were measured
by different software, on the page and in the summary's notices."""

import html
import re

import pytest
from helpers import record

from bench.explain.goal import Goal
from bench.records.results import append_record
from bench.records.study_provenance import mixed_software, study_provenance
from bench.render.summary import summarize


def _records(commits):
    out = []
    for i, commit in enumerate(commits):
        rec = record("single" if i % 2 == 0 else "ddp", 1 + i % 2, [10.0], trial=i // 2,
                     timestamp=f"2026-11-30T18:0{i}:00+00:00")
        rec["provenance"] |= {"git_commit": commit, "torch": "2.14.1", "seed": i // 2}
        out.append(rec)
    return out


def test_the_block_names_what_every_record_shares_and_counts_what_differs():
    block = study_provenance(_records(["abc", "abc", "abc", "def"]))
    assert block["records"] == 4
    assert block["measured"] == {"first": "2026-11-30T18:00:00+00:00", "last": "2026-11-30T18:03:00+00:00"}
    assert block["shared"] == {"host": "h", "torch": "2.14.1"}
    assert block["differs"] == {"git_commit": {"abc": 3, "def": 1}, "seed": {"0": 2, "1": 2}}
    with pytest.raises(ValueError, match="no records"):
        study_provenance([])


def test_records_of_different_code_make_a_notice_and_one_code_makes_none():
    assert mixed_software(_records(["abc"] * 4)) is None
    notice = mixed_software(_records(["abc", "abc", "abc", "def"]))
    assert notice.startswith("mixed software:") and "git_commit abc (3 records), def (1 record)" in notice
    assert notice in summarize(_records(["abc", "abc", "abc", "def"]), Goal()).notices
    assert not any(n.startswith("mixed software") for n in summarize(_records(["abc"] * 4), Goal()).notices)


def test_the_report_page_shows_the_studys_block_not_one_records(tmp_path):
    from bench.report import main as report_main
    for rec in _records(["abc", "abc", "abc", "def"]):
        append_record(tmp_path / "results.jsonl", rec)
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    page = html.unescape((tmp_path / "r" / "report.html").read_text())
    provenance = re.search(r'id="provenance".*?<pre>(.*?)</pre>', page, re.S).group(1)
    assert '"records": 4' in provenance and '"def": 1' in provenance
    assert '"last": "2026-11-30T18:03:00+00:00"' in provenance
    assert "mixed software: the records of this study" in page


def test_a_page_of_a_folder_holding_two_studies_names_the_other_and_how_to_draw_it(tmp_path):
    from bench.report import main as report_main
    first = record("single", 1, [1.0], epochs=3, timestamp="2026-11-28T01:00:00+00:00")
    second = record("single", 1, [1.0], epochs=2, timestamp="2026-11-28T02:00:00+00:00")
    for rec in (first, second):
        append_record(tmp_path / "results.jsonl", rec)
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    page = html.unescape((tmp_path / "r" / "report.html").read_text())
    assert f"1 other study in these results ({first['study']}) left out; showing study {second['study']}" in page
    assert "--study ID draws another" in page
