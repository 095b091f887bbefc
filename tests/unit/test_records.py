"""The data contract: schema versions and their up-converter, comm.jsonl versions, the study-invariant settings,
the one global-batch formula, the unit conversions."""

import json
from dataclasses import fields

import pytest
from helpers import record

from bench.records.comm import COMM_SCHEMA_VERSION, comm_record, read_comm
from bench.records.results import SCHEMA_VERSION, ResultsError, append_record, read_records, study_id
from bench.records.study import STUDY_INVARIANT_EXCLUDED, VARIANT_FIELDS, device_batch, fixed_settings, study_batch
from bench.records.units import gb_per_s, gib, mib, ms, percent, plural
from bench.run.axes import Axes
from mgpu_core.config import TrainConfig
from mgpu_core.recipe import global_batch


def schema_2(rec: dict) -> dict:
    """The record as schema 2 wrote it: no mfu."""
    old = {k: v for k, v in rec.items() if k != "mfu"}
    return old | {"schema_version": 2}


def test_a_schema_2_file_still_reads_up_converted_to_3(tmp_path):
    new = record("ddp", 2, [2.0, 4.0])
    assert new["schema_version"] == SCHEMA_VERSION == 3
    # 1000 samples/s per device... of 2: 250 and 125 samples/s per device x 44.46 MFLOP over a 989.4 TFLOP/s peak
    assert new["mfu"] == pytest.approx([250 * 44_464_128.0 / 989.4e12, 125 * 44_464_128.0 / 989.4e12])
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(schema_2(new)) + "\n")
    append_record(path, new)
    old_read, new_read = read_records(path)
    assert old_read == json.loads(json.dumps(new))  # the same record, whichever version wrote it
    assert new_read["schema_version"] == 3


def test_an_unknown_schema_version_is_refused_in_one_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("single", 1, [1.0]) | {"schema_version": 1}) + "\n")
    with pytest.raises(ResultsError, match=r"results.jsonl:1: results schema version 1, this harness reads 3"):
        read_records(path)


def test_comm_records_carry_a_version_and_an_unversioned_one_reads_as_1(tmp_path):
    rec = comm_record({"devices": 2, "rows": []}, study="s", wall_s=1.0, provenance={})
    assert rec["kind"] == "comm" and rec["schema_version"] == COMM_SCHEMA_VERSION == 1
    path = tmp_path / "comm.jsonl"
    unversioned = {k: v for k, v in rec.items() if k != "schema_version"}
    path.write_text(json.dumps(unversioned) + "\n" + json.dumps(rec) + "\n")
    assert [r["schema_version"] for r in read_comm(path)] == [1, 1]
    path.write_text(json.dumps(rec | {"schema_version": 9}) + "\n")
    with pytest.raises(ResultsError, match="comm.jsonl:1: comm schema version 9, this harness reads 1"):
        read_comm(path)


def test_the_study_invariant_settings_are_one_list_used_by_the_study_id_and_compare():
    base = TrainConfig()
    # every axis is a variant: the settings a sweep varies never split its study
    assert {f.name for f in fields(Axes)} <= set(VARIANT_FIELDS)
    same = [base.for_mode("ddp", grad_accum=4, seed=3, ddp_bucket_mb=1.0, data_dir="/x"),
            base.for_mode("fsdp"), base.for_mode("single", seed=9)]
    assert {study_id(c, 2, "weak", "cuda") for c in same} == {study_id(base, 1, "weak", "cuda")}
    assert {json.dumps(fixed_settings(c.to_dict()), sort_keys=True) for c in same} == {
        json.dumps(fixed_settings(base.to_dict()), sort_keys=True)}
    assert not set(fixed_settings(base.to_dict())) & set(STUDY_INVARIANT_EXCLUDED)
    assert study_id(base.for_mode("ddp", precision="bf16"), 2, "weak", "cuda") != study_id(base, 2, "weak", "cuda")
    # threads change timing: another --threads is another study, never pooled into one row
    assert study_id(base.for_mode("ddp", threads=2), 2, "weak", "cuda") != study_id(base, 2, "weak", "cuda")


def test_global_batch_is_one_formula_and_the_study_batch_inverts_the_split():
    assert global_batch(32, 4, 2) == 256 and global_batch(32, 4) == 128
    assert record("ddp", 4, [1.0], grad_accum=2, batch_size=32)["global_batch"] == 256
    assert device_batch(128, 4, "strong") == 32 and device_batch(128, 4, "weak") == 128
    assert study_batch(device_batch(128, 4, "strong"), 4, "strong") == 128 and study_batch(32, 4, "weak") == 32


def test_units_convert_one_way_each():
    assert ms(0.0125) == pytest.approx(12.5) and mib(3 * 2**20) == 3 and gib(2**31) == 2
    assert gb_per_s(2.5e9) == 2.5 and percent(0.25) == 25


def test_a_count_reads_with_its_noun_in_the_singular_only_for_one():
    assert [plural(n, "configuration") for n in (0, 1, 2)] == ["0 configurations", "1 configuration",
                                                                "2 configurations"]
    assert plural(1, "other study", "other studies") == "1 other study"
    assert plural(3, "other study", "other studies") == "3 other studies"
    assert plural(1, "CPU process", "CPU processes") == "1 CPU process"


def test_an_axis_declared_once_in_the_field_metadata_reaches_flags_plan_label_and_record():
    from bench.run.plan import PlanInput, plan
    from bench.scaling import build_parser
    from mgpu_core.config import AXES, DEFAULTS, VARIANT_LABELS
    flags = build_parser().format_help()
    other = {"grad_accum": 4, "ddp_bucket_mb": 1.0, "ddp_comm_hook": "bf16", "fsdp_wrap": "model"}
    for name, modes in AXES.items():
        assert name in {f.name for f in fields(Axes)} and "--" + name.replace("_", "-") in flags
        value = other.get(name, not DEFAULTS[name])
        shown = "on" if value is True else value
        [cell] = [c for c in plan(PlanInput(TrainConfig(), "cuda", (2,), (modes[0],), visible_gpus=2, cores=2,
                                            axes=Axes(**{name: (shown,)})))]
        label = VARIANT_LABELS[name] if isinstance(value, bool) else VARIANT_LABELS[name].format(value)
        assert cell.label.startswith(f"{modes[0]} {label}") and cell.label.endswith(" x2")  # fsdp: also unfused
        rec = record(modes[0], 2, [1.0], **{name: value})
        assert cell.label == f"{modes[0]} {rec['variant']} x2" and rec["study"] == record(modes[0], 2, [1.0])["study"]
