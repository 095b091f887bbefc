"""The scaling model and the verdicts on constructed inputs (pure functions), and the explained study."""

import pytest
from helpers import record

from bench.explain.bottleneck import comm_points
from bench.explain.goal import Goal
from bench.explain.scaling_model import (
    COMM_BOUND_SHARE,
    HOST_BOUND_SLOWDOWN,
    INPUT_BOUND_SHARE,
    NEAR_IDEAL_EFFICIENCY,
    STRAGGLER_SPREAD,
    UNEXPLAINED_RESIDUAL,
    CommPoint,
    Evidence,
    bottleneck_of,
    collective_time,
    extrapolate,
    residual,
    speedup_band,
    step_band,
    straggler,
)
from bench.records.comm import comm_record as make_comm_record
from bench.render.summary import markdown_table, summarize
from mgpu_core.bandwidth import algbw, bus_factor, busbw


def test_bus_factors_follow_nccl_tests():
    assert bus_factor("all_reduce", 2) == 1.0 and bus_factor("all_reduce", 8) == pytest.approx(1.75)
    assert bus_factor("all_gather", 4) == bus_factor("reduce_scatter", 4) == pytest.approx(0.75)
    assert bus_factor("broadcast", 8) == bus_factor("reduce", 8) == 1.0
    assert bus_factor("all_reduce", 1) == 0.0
    assert algbw(1e9, 0.5) == 2e9 and busbw("all_reduce", 1e9, 0.5, 4) == pytest.approx(3e9)
    assert collective_time("all_reduce", 1e9, 3e9, 4) == pytest.approx(0.5)  # busbw's inverse
    assert collective_time("all_reduce", 1e9, 3e9, 1) == 0.0


def test_bounds_per_mode():
    ddp = step_band("ddp", compute_s=0.10, comm_s=0.04)
    assert (ddp.overlap_s, ddp.serial_s) == (0.10, pytest.approx(0.14))
    assert step_band("ddp", 0.02, 0.05).overlap_s == 0.05  # communication longer than compute
    dp = step_band("dp", 0.10, 0.04)
    assert dp.overlap_s == dp.serial_s == pytest.approx(0.14)  # DataParallel does not overlap
    assert step_band("single", 0.1, 0.0).comm_share == 0.0
    # weak scaling, 4 devices: an epoch has a quarter of the steps
    low, high = speedup_band(0.1, 128, ddp, 512)
    assert (low, high) == (pytest.approx(0.1 / 0.14 * 4), pytest.approx(4.0))
    assert residual(3.0, 2.0, 4.0) == 0 and residual(1.0, 2.0, 4.0) == -0.5 and residual(5.0, 2.0, 4.0) == 0.25


def test_extrapolation_holds_busbw_and_compute_at_the_largest_measured_count():
    measured = {2: CommPoint(2, 0.1, {"all_reduce": 0.01}, {"all_reduce": 8e8}),
                4: CommPoint(4, 0.12, {"all_reduce": 0.015}, {"all_reduce": 1e9})}
    points = extrapolate(measured, grad_bytes=1e7)
    assert sorted(points) == [2, 4, 8] and not points[8].measured and points[4].measured
    assert points[8].compute_step_s == 0.12 and points[8].busbw == {"all_reduce": 1e9}
    assert points[8].comm_s["all_reduce"] == pytest.approx(1e7 * 2 * 7 / 8 / 1e9)
    assert extrapolate({}, 1e7) == {}


def evidence(**overrides):
    values = dict(mode="ddp", devices=4, device_type="cuda", efficiency=0.6, rank_times_s=[1.0, 1.0, 1.0, 1.0],
                  data_wait_share=0.0, base_step_s=0.1, band=step_band("ddp", 0.1, 0.01), measured_step_s=0.1,
                  residual=0.0)
    return Evidence(**(values | overrides))


@pytest.mark.parametrize("overrides, start", [
    ({"rank_times_s": [1.0, 1.0, 1.0, 1.0 + STRAGGLER_SPREAD + 0.05]}, "straggler: rank 3 15% slower"),
    ({"data_wait_share": INPUT_BOUND_SHARE + 0.01}, "input-bound: data wait 21%"),
    ({"efficiency": NEAR_IDEAL_EFFICIENCY}, "compute-bound: near ideal (efficiency 90%)"),
    ({"mode": "dp", "band": step_band("dp", 0.1, 0.01)}, "host/launch-bound: one process drives 4 GPUs"),
    ({"band": step_band("ddp", 0.1 * HOST_BOUND_SLOWDOWN + 0.01, 0.01)}, "host-bound: compute alone 1.6x slower"),
    ({"residual": -UNEXPLAINED_RESIDUAL - 0.05}, "unexplained: 30% slower than the model's band"),
    ({"band": step_band("ddp", 0.1, 0.1 * COMM_BOUND_SHARE * 2)}, "communication-bound: collectives 50.0 ms of a"),
    ({}, "within the model's band"),
    ({"band": None, "residual": None}, "no collective measurement to explain it"),
])
def test_each_verdict_and_its_trigger(overrides, start):
    assert bottleneck_of(evidence(**overrides)).startswith(start)


def test_straggler_needs_two_ranks_and_the_spread():
    assert straggler([5.0]) is None
    assert straggler([1.0, 1.0 + STRAGGLER_SPREAD]) is None  # at the threshold: not yet
    assert straggler([1.0, 2.0, 1.0]) == (1, pytest.approx(1.0))


def comm_record(devices, compute_s, allreduce_s, grad=8_000_000, batch=128, timestamp="2026-11-28T00:00:00+00:00"):
    rows = [{"op": "all_reduce", "bytes": grad, "time_s": allreduce_s,
             "busbw_bytes_per_s": busbw("all_reduce", grad, allreduce_s, devices)},
            {"op": "all_reduce", "bytes": 4096, "time_s": 1e-4, "busbw_bytes_per_s": 1.0}]
    measured = {"devices": devices, "backend": "nccl", "device_type": "cuda", "threads": 4, "nodes": 1,  # measure()'s
                "grad_bytes": grad, "bucket_bytes": 25 * 2**20, "model": "simplecnn", "image_size": 32,
                "batch_per_device": batch, "precision": "fp32", "compute_step_s": compute_s, "rows": rows}
    return make_comm_record(measured, provenance={"timestamp": timestamp})


def test_summary_explains_rows_with_the_band_and_extrapolates():
    records = [record("single", 1, [10.0], steps=100),              # 0.1 s per step
               record("ddp", 2, [5.5], steps=50, rank_times=[5.5, 5.4]),
               record("ddp", 4, [4.0], steps=25, rank_times=[4.0, 3.0, 3.0, 3.0])]
    comm = [comm_record(2, 0.1, 0.01), comm_record(4, 0.1, 0.015),
            comm_record(4, 0.5, 0.5, timestamp="2026-11-27T00:00:00+00:00"),  # older: ignored
            comm_record(2, 0.1, 0.01, batch=64)]  # another batch: ignored
    points, grad = comm_points(comm, "cuda", "fp32", lambda n: 128)
    assert grad == 8_000_000 and points[4].comm_s["all_reduce"] == 0.015
    study = summarize(records, Goal(), comm)
    rows = {(r.mode, r.devices): r for r in study.rows}
    ddp2 = rows["ddp", 2].explanation
    assert ddp2.step_time_s == pytest.approx(0.11) and ddp2.predicted == (pytest.approx(2 * 0.1 / 0.11),
                                                                          pytest.approx(2.0))
    # one trial of one epoch: the verdict stands, marked provisional (bench.explain.plausibility)
    assert ddp2.residual == 0 and ddp2.bottleneck == ("compute-bound: near ideal (efficiency 91%); "
                                                      "provisional: 1 trial")
    assert rows["ddp", 4].explanation.bottleneck.startswith("straggler: rank 0 33% slower than the median rank")
    band = {p.devices: p for p in study.bands["ddp"]}
    assert sorted(band) == [1, 2, 4, 8] and not band[8].measured and band[4].measured
    table = markdown_table(study)
    assert "| 2 cuda | ddp | ok | 5.50 [5.50-5.50] |" in table and "| 1.82-2.00x | inside |" in table
    assert summarize(records, Goal()).bands == {}  # no collective measurement: no band, and the verdict says so
    # CPU processes share the host's cores: the band covers the measured counts only, no extrapolation
    cpu_records = [r | {"device_type": "cpu"} for r in records]
    cpu_comm = [c | {"device_type": "cpu"} for c in comm]
    assert sorted(p.devices for p in summarize(cpu_records, Goal(), cpu_comm).bands["ddp"]) == [1, 2, 4]
