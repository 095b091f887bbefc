"""bench.predict: presets, the nccl-tests parser, the scaled replay's monotonicity and ideal bound, bad input."""

import html
import json

import pytest
from helpers import record
from test_replay import comm_with_profile

from bench import predict
from bench.explain.interconnects import (
    ETH_100G,
    PRESETS,
    Link,
    link_for,
    link_from_nccl,
    on_baseline,
    parse_bandwidth,
    parse_duration,
    parse_nccl_tests,
    predict_count,
)
from bench.explain.replay import ComputeProfile
from bench.records.results import append_record

HEADER = ("# nThread 1 nGpus 8 minBytes 1024 maxBytes 1073741824 step: 2(factor) warmup iters: 5 iters: 20 "
          "agg iters: 1 validation: 1 graph: 0\n")
NCCL = HEADER + """\
#
# Using devices
#  Rank  0 Group  0 Pid  10 on     node1 device  0 [0x18] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid  11 on     node1 device  1 [0x2a] NVIDIA H100 80GB HBM3
#  Rank  2 Group  0 Pid  12 on     node1 device  2 [0x3a] NVIDIA H100 80GB HBM3
#  Rank  3 Group  0 Pid  13 on     node1 device  3 [0x5d] NVIDIA H100 80GB HBM3
#  Rank  4 Group  0 Pid  14 on     node1 device  4 [0x9a] NVIDIA H100 80GB HBM3
#  Rank  5 Group  0 Pid  15 on     node1 device  5 [0xab] NVIDIA H100 80GB HBM3
#  Rank  6 Group  0 Pid  16 on     node1 device  6 [0xba] NVIDIA H100 80GB HBM3
#  Rank  7 Group  0 Pid  17 on     node1 device  7 [0xdb] NVIDIA H100 80GB HBM3
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
        1024           256     float     sum      -1    20.10    0.05    0.09      0    19.90    0.05    0.09      0
     1048576        262144     float     sum      -1    32.00   32.77   57.34      0    31.80   32.97   57.70      0
    67108864      16777216     float     sum      -1   400.00  167.77  293.60      0   398.00  168.62  295.08      0
  1073741824     268435456     float     sum      -1  5800.00  185.13  323.98      0  5790.00  185.45  324.54      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 169.1
#
"""


def test_the_nccl_tests_parser_reads_the_out_of_place_columns_and_the_device_count():
    table = parse_nccl_tests(NCCL)
    assert table.devices == 8 and table.sizes_bytes == (1024, 1048576, 67108864, 1073741824)
    assert table.times_s[-1] == pytest.approx(5800e-6) and table.busbw_bytes_per_s[-1] == pytest.approx(323.98e9)
    link = link_from_nccl(table, "test")
    assert link.busbw_bytes_per_s == pytest.approx(324e9, rel=0.1) and 0 <= link.latency_s < 50e-6
    no_root = "\n".join(line.replace("     -1  ", "  ") for line in NCCL.splitlines())  # older nccl-tests
    assert parse_nccl_tests(no_root).times_s == table.times_s
    with pytest.raises(ValueError, match="not nccl-tests output"):
        parse_nccl_tests("size time\n1024 20\n")
    with pytest.raises(ValueError, match="line 18: not an nccl-tests data line"):
        parse_nccl_tests(NCCL.replace("    67108864", "    sixtyfour"))


def test_presets_name_their_source_and_rates_parse():
    assert {"nvlink4", "pcie5", "ib-ndr", "100gbe"} <= PRESETS.keys()
    for ic in PRESETS.values():
        for link in (ic.intra, ic.inter):
            assert "datasheet" in link.source or "Specification" in link.source or "IEEE" in link.source
            assert "assumptions" in link.source and link.busbw_bytes_per_s > 0
    assert PRESETS["nvlink4"].intra.busbw_bytes_per_s > PRESETS["pcie5"].intra.busbw_bytes_per_s
    assert link_for(16, PRESETS["pcie5"], gpus_per_node=8) is ETH_100G and link_for(8, PRESETS["pcie5"], 8) is not \
        ETH_100G
    assert parse_bandwidth("370GB/s") == 370e9 and parse_bandwidth("400Gbit/s") == 50e9
    assert parse_duration("10us") == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="370GB/s"):
        parse_bandwidth("fast")
    with pytest.raises(ValueError, match="above zero"):
        parse_bandwidth("0GB/s")


PROFILE = ComputeProfile(0.1, 0.08, (0.03, 0.05, 0.08), (4 << 20, 4 << 20, 8 << 20), 0.02)


@pytest.mark.parametrize("scaling", ["weak", "strong"])
def test_more_bandwidth_never_predicts_slower_and_never_above_ideal(scaling):
    for n in (2, 4, 8, 16, 64, 512):
        previous = 0.0
        for busbw in (1e8, 1e9, 1e10, 1e11, 1e13):
            row = predict_count(PROFILE, n, Link(busbw, 1e-5, "t"), 25 << 20, scaling, largest_measured=2)
            assert row.speedup >= previous - 1e-12 and row.speedup <= n + 1e-9
            assert row.band_speedup[0] <= row.speedup * (1 + 1e-9)
            previous = row.speedup
        assert row.extrapolated == (n > 16)
    slow = predict_count(PROFILE, 8, Link(1e8, 1e-5, "t"), 25 << 20, "weak", 2)
    assert slow.dominant == "exposed communication"
    assert predict_count(PROFILE, 8, Link(1e13, 1e-9, "t"), 25 << 20, "weak", 2).dominant == "compute"
    assert predict_count(PROFILE, 8, Link(1e13, 0.05, "t"), 1 << 20, "weak", 2).dominant.startswith("launch")


def _study(tmp_path, profile=True, single=True):
    if single:
        append_record(tmp_path / "results.jsonl", record("single", 1, [10.0], steps=100))
    append_record(tmp_path / "results.jsonl", record("ddp", 2, [6.0], steps=50))
    comm = comm_with_profile() | {"kind": "comm", "backend": "gloo", "device_type": "cuda", "precision": "fp32",
                                  "batch_per_device": 128, "model": "simplecnn"}
    if not profile:
        comm.pop("compute_profile")
    (tmp_path / "comm.jsonl").write_text(json.dumps(comm) + "\n")
    return tmp_path


def test_predict_writes_the_table_plot_and_page(tmp_path, capsys):
    study = _study(tmp_path)
    assert predict.main([str(study), "--devices", "1,2,8,64", "--interconnect", "nvlink4,100gbe",
                         "--gpus-per-node", "8"]) == 0
    out = capsys.readouterr().out
    assert "All numbers are predicted but the measured column; accuracy unknown (no --validation)." in out
    assert "| 64 (extrapolated) | nvlink4 |" in out and "| 8 | 100gbe |" in out
    for name in predict.PREDICT_FILES:
        assert (study / name).stat().st_size > 0
    validation = tmp_path / "validate.jsonl"
    validation.write_text(json.dumps({"status": "ok", "error": -0.05}) + "\n" + json.dumps({"status": "ok",
                                                                                           "error": 0.15}) + "\n")
    assert predict.main([str(study), "--devices", "2", "--validation", str(validation)]) == 0
    assert "validated MAPE 10.0% (largest 15.0%) over 2 cells" in capsys.readouterr().out


def test_predicted_and_measured_speedups_share_the_studys_single_baseline(tmp_path, capsys):
    study = _study(tmp_path)  # single 10 s for 100 steps (0.1 s a step), ddp x2 measured 6 s: 1.67x
    assert predict.main([str(study), "--devices", "1,2", "--interconnect", "nvlink4"]) == 0
    rows = {r["devices"]: r for r in json.loads((study / "predict.json").read_text())["rows"]}
    assert rows[1]["predicted_speedup"] == 1.0 and rows[1]["predicted_epoch_s"] == 10.0
    assert rows[2]["measured_speedup"] == pytest.approx(10 / 6)
    # the predicted epoch is the baseline's 100 steps over 2 devices x the predicted step, its speedup 10 s / it
    assert rows[2]["predicted_speedup"] == pytest.approx(10.0 / rows[2]["predicted_epoch_s"])
    assert "| 2 | nvlink4 |" in capsys.readouterr().out


def test_a_cpu_study_with_a_gpu_preset_says_what_it_predicts(tmp_path, capsys):
    study = _study(tmp_path)
    comm = json.loads((study / "comm.jsonl").read_text()) | {"device_type": "cpu"}
    (study / "comm.jsonl").write_text(json.dumps(comm) + "\n")
    assert predict.main([str(study), "--devices", "2", "--interconnect", "nvlink4"]) == 0
    assert "predicts these CPU processes over that link, not GPUs" in capsys.readouterr().out
    assert predict.main([str(study), "--devices", "2"]) == 0  # the study's own link: nothing to say
    assert "not GPUs" not in capsys.readouterr().out


def test_a_prediction_above_the_ideal_on_the_studys_baseline_is_refused():
    row = predict_count(PROFILE, 4, Link(1e12, 1e-6, "t"), 25 << 20, "weak", 2)
    base_steps = 100
    fair = on_baseline(row, PROFILE.step_s, PROFILE.step_s * base_steps, base_steps, 0.01)
    assert fair.refused is None and fair.speedup == pytest.approx(row.speedup) and fair.speedup <= 4
    slow_base = on_baseline(row, PROFILE.step_s, 2 * PROFILE.step_s * base_steps, base_steps, 0.01)
    assert slow_base.speedup is None and "above the ideal 4x" in slow_base.refused
    assert slow_base.epoch_s == pytest.approx(fair.epoch_s)  # the predicted epoch stands: it needs no baseline time
    one = on_baseline(predict_count(PROFILE, 1, Link(1e9, 1e-5, "t"), 25 << 20, "weak", 2),
                              PROFILE.step_s, 7.0, base_steps, None)
    assert (one.speedup, one.epoch_s) == (1.0, 7.0)  # one device is the baseline itself



def test_a_plot_whose_predictions_are_all_refused_says_why_in_its_legend(tmp_path):
    from bench.render.prediction import plot, refused_labels
    row = predict_count(PROFILE, 4, Link(1e12, 1e-6, "t"), 25 << 20, "weak", 2)
    slow_base = on_baseline(row, PROFILE.step_s, 2 * PROFILE.step_s * 100, 100, 0.01)
    fair = on_baseline(row, PROFILE.step_s, PROFILE.step_s * 100, 100, 0.01)
    assert refused_labels({"nvlink4": [slow_base], "pcie5": [fair]}) == [
        "nvlink4: refused at 4 devices, above the ideal (see the table)"]
    assert plot({"nvlink4": [slow_base]}, {}, "t", tmp_path / "p.png").stat().st_size > 0  # no line, still a plot


def test_the_prediction_is_a_section_of_the_studys_report_page(tmp_path, capsys):
    from bench.report import main as report_main
    study = _study(tmp_path)
    assert report_main([str(study), "--out", str(study)]) == 0
    assert "What more devices would buy" not in (study / "report.html").read_text()
    assert predict.main([str(study), "--devices", "2,4", "--interconnect", "pcie5"]) == 0
    assert "report.html" in capsys.readouterr().out.splitlines()[-1]
    page = (study / "report.html").read_text()
    assert page.count('<section id="what-more-devices-would-buy-predicted">') == 1
    assert page.index("what-more-devices") < page.index('<section id="plots">') and "<td>pcie5</td>" in page
    assert predict.main([str(study), "--devices", "2", "--interconnect", "100gbe"]) == 0  # replaced, not added
    page = (study / "report.html").read_text()
    assert page.count("what-more-devices-would-buy") == 1 and "<td>100gbe</td>" in page and "pcie5" not in page
    assert report_main([str(study), "--out", str(study)]) == 0  # a re-render keeps it (same study)
    assert "<td>100gbe</td>" in (study / "report.html").read_text()
    saved = json.loads((study / "predict.json").read_text())
    (study / "predict.json").write_text(json.dumps(saved | {"study": "another"}))
    assert report_main([str(study), "--out", str(study)]) == 0  # another study's prediction is never shown
    assert "what-more-devices" not in (study / "report.html").read_text()


@pytest.mark.parametrize("setup, args, text", [
    ({}, ["--interconnect", "warp-drive"], "unknown preset 'warp-drive'"),
    ({}, ["--interconnect", ""], "unknown preset ''"),  # never a silent fallback to the study's own link
    ({"single": False}, [], "no successful 1-device single record"),
    ({"profile": False}, [], "no collective record with the compute profile"),
    ({}, ["--busbw", "10GB/s"], "--busbw and --latency go together"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, args, text):
    study = _study(tmp_path, **setup)
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and text in err[0]


@pytest.mark.parametrize("lines", [[{"status": "ok"}], [{"status": "ok", "error": "big"}],
                                   [{"status": "ok", "error": None, "mode": "ddp"}]])
def test_a_validation_file_without_numeric_errors_is_one_line(tmp_path, capsys, lines):
    study = _study(tmp_path)
    validation = tmp_path / "validate.jsonl"
    validation.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), "--devices", "2", "--validation", str(validation)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "validate.jsonl" in err[0]


def test_a_malformed_nccl_tests_file_is_one_line(tmp_path, capsys):
    study = _study(tmp_path)
    bad = tmp_path / "nccl.txt"
    bad.write_text("# nThread 1 nGpus 8\n 1024 256 float sum -1 20.1 0.05\n")
    with pytest.raises(SystemExit):
        predict.main([str(study), "--nccl-tests", str(bad)])
    assert "nccl.txt: line 2: 7 columns" in capsys.readouterr().err


def test_ranks_that_share_a_host_compute_slower_and_faster_is_never_taken():
    link = Link(1e10, 1e-5, "t")
    alone = predict_count(PROFILE, 2, link, 25 << 20, "weak", 2)
    shared = predict_count(PROFILE, 2, link, 25 << 20, "weak", 2, compute_s=0.15)
    assert shared.speedup < alone.speedup
    assert predict_count(PROFILE, 2, link, 25 << 20, "weak", 2, compute_s=0.01).speedup == alone.speedup
    inputs = {"compute_at": {1: 0.1, 2: 0.15}, "scaling": "weak"}
    assert predict.compute_at(inputs, 8) == 0.15 and predict.compute_at(inputs | {"scaling": "strong"}, 8) == 0.0375
    assert predict.compute_at(inputs, 1) is None


def test_report_html_says_what_the_predicted_column_is_relative_to_as_summary_md_does(tmp_path):
    from bench.render.summary import PREDICTED_NOTE
    from bench.report import main as report_main
    study = _study(tmp_path)
    assert report_main([str(study), "--out", str(tmp_path / "r")]) == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    page = html.unescape((tmp_path / "r" / "report.html").read_text())
    notes = [PREDICTED_NOTE, *(line.removeprefix("- ") for line in summary.splitlines()
                               if line.startswith(("The point and its band", "- ddp x")))]
    assert PREDICTED_NOTE in summary and all(note in page for note in notes)
    # the provenance shown is the study's: how many records, and what they share
    assert '"records": 2' in page and '"shared": {' in page


def test_nccl_tests_wrong_results_are_refused_and_an_unchecked_run_is_read():
    lines = NCCL.splitlines()
    data = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    unchecked = [line.split() for line in lines]
    for i in data:  # all_reduce_perf -c 0 prints N/A (older) or -1 (newer) in both #wrong columns
        unchecked[i][-5], unchecked[i][-1] = "N/A", "-1"
    table = parse_nccl_tests("\n".join(" ".join(t) if i in data else lines[i] for i, t in enumerate(unchecked)))
    assert table == parse_nccl_tests(NCCL)
    wrong = list(lines)
    tokens = wrong[data[-1]].split()
    tokens[-5] = "17"
    wrong[data[-1]] = " ".join(tokens)
    with pytest.raises(ValueError, match=f"line {data[-1] + 1}: nccl-tests counted 17 wrong elements"):
        parse_nccl_tests("\n".join(wrong))


def test_help_says_the_whole_first_sentence(capsys):
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    assert "interconnects not measured (docs/prediction.md)" in " ".join(capsys.readouterr().out.split())


def test_an_nccl_tests_table_of_latency_bound_sizes_only_is_one_line_naming_the_file_once(tmp_path, capsys):
    study = _study(tmp_path)
    flat = tmp_path / "flat.txt"  # 8 B to 1 KiB: every time the same 18 us, no bandwidth term to fit
    flat.write_text(HEADER + "".join(f"{2**k:>12} {2**k // 4:>12} float sum -1 18.00 0.00 0.00 0 18.20 0.00 0.00 0\n"
                                     for k in range(3, 11)))
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), "--nccl-tests", str(flat)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count(str(flat)) == 1 and "up to 1 MiB or more" in err
    (tmp_path / "nccl.txt").write_text(NCCL)
    assert predict.main([str(study), "--nccl-tests", str(tmp_path / "nccl.txt")]) == 0
    assert f"nccl-tests nccl.txt: {tmp_path / 'nccl.txt'}" in capsys.readouterr().out  # the link names its file


def test_strong_scaling_takes_one_devices_step_at_the_whole_global_batch(tmp_path):
    # strong scaling, global batch 256: the collective run measured its 1-rank step (0.1 s) at the 2 ranks' share of
    # 128, so one device takes 0.2 s per 256-sample step; a free link at 2 devices is then near 2x, never 1x
    single = record("single", 1, [10.0], steps=100, batch_size=256) | {"scaling": "strong"}
    append_record(tmp_path / "results.jsonl", single)
    comm = comm_with_profile() | {"kind": "comm", "backend": "gloo", "device_type": "cuda", "precision": "fp32",
                                  "batch_per_device": 128, "model": "simplecnn", "compute_step_s": 0.1}
    (tmp_path / "comm.jsonl").write_text(json.dumps(comm) + "\n")
    inputs = predict.study_inputs(tmp_path)
    assert inputs["scaling"] == "strong" and inputs["profile_1"].step_s == pytest.approx(0.2)
    row = predict_count(inputs["profile_1"], 2, Link(1e13, 1e-9, "t"), 25 << 20, "strong", 2, 1.0,
                        predict.compute_at(inputs, 2))
    assert row.speedup == pytest.approx(2.0, rel=0.01)


def test_one_given_link_beyond_gpus_per_node_is_said_to_be_assumed(tmp_path, capsys):
    study = _study(tmp_path)
    (tmp_path / "nccl.txt").write_text(NCCL)  # 8 GPUs of one node
    assert predict.main([str(study), "--nccl-tests", str(tmp_path / "nccl.txt"), "--devices", "8,16",
                         "--gpus-per-node", "8", "--interconnect", "ib-ndr"]) == 0
    out = capsys.readouterr().out
    assert "beyond 8 per node the same link is ASSUMED across nodes" in out
    assert out.count("ASSUMED") == 1  # a preset has its own inter-node figures (ib-ndr: the same by design)


def test_a_count_that_was_skipped_or_failed_is_not_the_largest_measured(tmp_path, capsys):
    study = _study(tmp_path)  # measured: single x1, ddp x2; ddp x4 skipped and ddp x8 failed measured nothing
    append_record(study / "results.jsonl", record("ddp", 4, status="skipped", error="4 CPU processes requested"))
    append_record(study / "results.jsonl", record("ddp", 8, status="failed", error="rank 1: Signal 9"))
    assert predict.study_inputs(study)["largest"] == 2
    assert predict.main([str(study), "--devices", "16,32", "--interconnect", "nvlink4"]) == 0
    out = capsys.readouterr().out
    assert "| 32 (extrapolated) | nvlink4 |" in out and "| 16 | nvlink4 |" in out
    assert "the largest measured (2)" in out


def test_an_nccl_tests_file_that_is_not_text_is_one_line_naming_it(tmp_path, capsys):
    study = _study(tmp_path)
    binary = tmp_path / "all_reduce_perf.bin"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), "--nccl-tests", str(binary)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and str(binary) in err[0] and "not text" in err[0]


def test_a_validation_file_that_is_not_there_says_so(tmp_path, capsys):
    study = _study(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), "--validation", str(tmp_path / "valdiate.jsonl")])  # a typo
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "valdiate.jsonl: no such file" in err[0]
