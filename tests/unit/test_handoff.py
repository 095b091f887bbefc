"""The one child hand-off: a result handed back, none handed back, a failure's root cause; files gone afterwards."""

import json
import sys

from bench.records.files import HANDOFF_DIR, LOGS_DIR
from bench.run.handoff import NO_RESULT, Handoff, run_child
from bench.run.torchrun import FAILURE_FILE_ENV

WRITE_RESULT = "import sys, json; open(sys.argv[sys.argv.index('--json') + 1], 'w').write(json.dumps({'ok': 1}))"
WRITE_FAILURE = (f"import os, json; open(os.environ['{FAILURE_FILE_ENV}'], 'w').write(json.dumps("
                 "{'rank': 1, 'message': 'RuntimeError: boom'})); raise SystemExit(3)")


def child(code: str):
    return lambda flags: [sys.executable, "-c", code, *flags]


def test_the_result_comes_back_and_the_hand_off_files_are_gone(tmp_path):
    lines = []
    outcome, result = run_child(tmp_path, "ddp-x2-trial0", child(WRITE_RESULT + "; print('hello')"), 60,
                                on_line=lines.append)
    assert outcome.error is None and result == {"ok": 1}
    assert lines == ["hello\n"] and (tmp_path / LOGS_DIR / "ddp-x2-trial0.log").read_text() == "hello\n"
    assert list((tmp_path / HANDOFF_DIR).iterdir()) == []


def test_exit_0_without_a_result_is_a_failure_unless_none_is_expected(tmp_path):
    outcome, result = run_child(tmp_path, "s", child("pass"), 60)
    assert result is None and outcome.error == NO_RESULT == "exited 0 but handed back no result"
    outcome, result = run_child(tmp_path, "s", child("pass"), 60, read_result=False)  # a node other than 0
    assert result is None and outcome.error is None


def test_a_failure_reads_its_root_cause_and_an_old_result_is_never_taken_for_a_new_one(tmp_path):
    stale = Handoff(tmp_path / HANDOFF_DIR / "s.result.json", tmp_path / HANDOFF_DIR / "s.failure.json")
    stale.result_file.parent.mkdir()
    stale.result_file.write_text(json.dumps({"old": True}))
    assert Handoff.under(tmp_path, "s") == stale and not stale.result_file.exists()
    stale.result_file.write_text(json.dumps({"old": True}))
    outcome, result = run_child(tmp_path, "s", child("pass"), 60)
    assert result is None and outcome.error == NO_RESULT
    outcome, result = run_child(tmp_path, "s", child(WRITE_FAILURE), 60)
    assert result is None and outcome.returncode == 3 and outcome.error == "rank 1: RuntimeError: boom"
    assert list((tmp_path / HANDOFF_DIR).iterdir()) == []


def test_the_root_cause_is_the_rank_that_failed_not_the_one_that_lost_its_peer():
    """Seen in CI: rank 0's "Connection closed by peer" carried an earlier timestamp than rank 1's OOM."""
    from types import SimpleNamespace

    from bench.run.torchrun import root_cause

    def failure(timestamp, message):
        return SimpleNamespace(timestamp=timestamp, exitcode=1, error_file_data={"message": {"message": message}},
                               message=message)
    lost = failure(1, "RuntimeError: [pair.cc:561] Connection closed by peer [127.0.0.1]:123")
    cause = failure(2, "OutOfMemoryError: CUDA out of memory")
    exc = SimpleNamespace(failures={0: lost, 1: cause}, get_first_failure=lambda: (0, lost))
    assert root_cause(exc) == (1, cause)
    only = SimpleNamespace(failures={0: lost}, get_first_failure=lambda: (0, lost))
    assert root_cause(only) == (0, lost)
