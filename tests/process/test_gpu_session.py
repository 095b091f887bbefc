"""bench.gpu_check's machinery: steps against one deadline (skipped when they no longer fit, ended at their limit),
the output contract (<= 8 files of <= 16 MiB), the targets, and bad arguments."""

import sys
import tarfile

import pytest

from bench.gpu_check import OUTPUT_FILES, STEPS, main, report, targets
from bench.run.gpu_session import MAX_FILE_BYTES, MAX_FILES, RESERVE_S, Session, pack_logs, write_capped


def session(tmp_path, budget_s=120.0, only=None):
    return Session(budget_s, tmp_path / "work", only, {}, say=lambda line: None)


def test_a_step_that_no_longer_fits_is_skipped_and_said_so(tmp_path):
    s = session(tmp_path, budget_s=RESERVE_S + 5)
    outcome = s.step("sweep", [sys.executable, "-c", "print('ran')"], budget_s=60, min_s=30)
    assert outcome.status == "skipped" and outcome.note.startswith("no time: ") and "needs 30 s" in outcome.note
    assert not s.log("sweep").exists()


def test_a_step_past_its_limit_is_ended_as_a_timeout(tmp_path):
    s = session(tmp_path)
    outcome = s.step("probes", [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
                     budget_s=2, min_s=1)
    assert outcome.status == "timeout" and outcome.seconds < 30 and outcome.limit_s == 2
    assert "started" in s.log("probes").read_text()


def test_a_failed_step_carries_its_last_line_and_only_selected_steps_run(tmp_path):
    s = session(tmp_path, only=("data",))
    bad = s.step("data", [sys.executable, "-c", "import sys; print('cannot read the archive'); sys.exit(3)"], 30, 1)
    assert bad.status == "failed" and bad.note == "exit code 3: cannot read the archive"
    assert s.step("env", [sys.executable, "-c", "pass"], 30, 1).status == "ok"  # env always runs
    assert s.step("sweep", [sys.executable, "-c", "pass"], 30, 1).note == "not selected (--only)"


def test_output_files_stay_within_the_limits(tmp_path):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "huge.log").write_bytes(b"first line\n" + bytes(range(256)) * (20 * 2**20 // 256) + b"LAST\n")
    (work / "logs" / "small.log").write_text("ok\n")
    pack_logs(work, tmp_path / "logs.tar.gz")
    assert (tmp_path / "logs.tar.gz").stat().st_size <= MAX_FILE_BYTES
    with tarfile.open(tmp_path / "logs.tar.gz") as tar:
        assert tar.extractfile("logs/huge.log").read().endswith(b"LAST\n")  # the tail kept
        assert tar.extractfile("logs/small.log").read() == b"ok\n"
    write_capped(tmp_path / "big.md", "x" * (MAX_FILE_BYTES + 10))
    assert (tmp_path / "big.md").stat().st_size == MAX_FILE_BYTES
    assert len(OUTPUT_FILES) <= MAX_FILES


def _row(mode, name, epoch_s):
    result = {"epochs": [{"time_s": epoch_s, "samples_per_s": 50_000 / epoch_s}] * 3, "compile_s": 0.0,
              "evals": [{"accuracy": 0.8}]}
    return mode, name, result, None


def test_targets_pass_fail_and_not_judged():
    rows = [_row("single", "device bf16", 0.25), _row("ddp", "device bf16", 0.27),
            _row("single", "dataloader fp32", 3.0)]
    found = targets(rows)
    assert found["fast_epoch"].endswith("PASS (0.250 s)")
    assert found["speedup"].endswith("PASS (12.0x)")
    assert found["ddp_overhead"].endswith("FAIL (+8.0%)")
    assert targets(rows[:1])["speedup"].endswith("not judged (a row it needs did not run)")
    assert "| single | device bf16 | 0.250 | 200,000 | 12.0x | +0.0% |" in report(rows, "NVIDIA H200")
    assert list(STEPS)[:3] == ["env", "data", "sweep"]


@pytest.mark.parametrize(("args", "text"), [
    ([], "data_dir: give the CIFAR-10 archive"),
    (["--data-dir", "/nonexistent/cifar.tar.gz"], "data_dir: /nonexistent/cifar.tar.gz: no such file or folder"),
    (["--dry-run", "--budget-s", "10"], "budget_s: must be at least 60 seconds"),
    (["--dry-run", "--only", "sweep,tp"], "unknown tp"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, text, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and text in err and len(err.strip().splitlines()) == 1


def test_an_output_folder_holding_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["--dry-run", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_docs_page_quotes_the_steps_and_targets():
    from pathlib import Path

    from bench.gpu_check import FAST_EPOCH_S, MAX_DDP_OVERHEAD, MIN_SPEEDUP
    page = (Path(__file__).resolve().parents[2] / "docs" / "gpu-session.md").read_text()
    for name, (budget_s, min_s, _) in STEPS.items():
        assert f"| `{name}` | {budget_s:g} | {min_s:g} |" in page
    assert f"≤ {FAST_EPOCH_S:g} s" in page and f"≥ {MIN_SPEEDUP:g}x" in page
    assert f"{MAX_DDP_OVERHEAD * 100:g} % slower" in page
    for name in OUTPUT_FILES:
        assert f"| `{name}` |" in page
