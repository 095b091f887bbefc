"""The point prediction's model on constructed timelines: α-β fit, DDP's buckets, the replay of ddp, dp, fsdp and
accumulation, and contention κ."""

import math

import pytest

from bench.explain.replay import (
    AlphaBeta,
    ComputeProfile,
    Task,
    ddp_buckets,
    ddp_step,
    dp_step,
    fit_alpha_beta,
    fsdp_step,
    simulate,
)

MIB = 1024 * 1024


def ab(alpha=0.0, beta=0.0, op="all_reduce"):
    return AlphaBeta(op, 2, alpha, beta)


def test_alpha_beta_fit_recovers_constructed_latency_and_bandwidth():
    sizes = [4096 * 2**k for k in range(12)]
    fit = fit_alpha_beta("all_reduce", 2, sizes, [50e-6 + b / 1e9 for b in sizes])
    assert fit.alpha_s == pytest.approx(50e-6, rel=1e-6) and fit.beta_s_per_byte == pytest.approx(1e-9, rel=1e-6)
    assert fit.geomean_rel_error == pytest.approx(0, abs=1e-9) and fit.points == 12
    assert fit.large_beta_s_per_byte is None  # one line fits: no second size range
    assert fit.time_s(1e6) == pytest.approx(50e-6 + 1e-3) and fit.time_s(0) == 0.0


def test_alpha_beta_fit_weights_small_messages_and_reports_its_error():
    sizes = [4096, 65536, MIB, 16 * MIB]
    noisy = [(20e-6 + b / 2e9) * f for b, f in zip(sizes, (1.1, 0.9, 1.1, 0.9), strict=True)]
    fit = fit_alpha_beta("all_reduce", 4, sizes, noisy)
    assert 0.03 < fit.geomean_rel_error < 0.15  # ±10 % noise: an error near 10 %, not 0 and not huge
    assert fit.alpha_s > 0 and fit.beta_s_per_byte == pytest.approx(1 / 2e9, rel=0.15)
    flat = fit_alpha_beta("broadcast", 2, [4096, MIB], [1e-3, 1e-3])  # latency only: β clamps at 0
    assert flat.beta_s_per_byte == 0 and flat.alpha_s == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="at least 2 distinct sizes"):
        fit_alpha_beta("all_reduce", 2, [4096, 4096], [1e-3, 2e-3])


def test_a_token_bucket_link_fits_two_size_ranges():
    # tbf: messages within the burst pass at line rate, larger ones at the shaped rate (less the burst)
    sizes = [4096 * 2**k for k in range(13)]
    burst, rate = 128 * 1024, 25e6
    times = [2e-4 + max(0.0, b - burst) / rate + b / 5e9 for b in sizes]
    fit = fit_alpha_beta("all_reduce", 2, sizes, times)
    assert fit.large_beta_s_per_byte is not None and fit.bandwidth_bytes_per_s == pytest.approx(rate, rel=0.05)
    assert fit.geomean_rel_error < 0.05


def test_ddp_buckets_follow_torchs_assignment_with_a_small_first_bucket():
    sizes = [MIB // 2, MIB // 2, MIB, 3 * MIB, 2 * MIB, 100]
    assert ddp_buckets(sizes, 4 * MIB) == [[0, 1], [2, 3], [4, 5]]  # first closes at 1 MiB, the others at 4 MiB
    assert ddp_buckets(sizes, 100 * MIB) == [[0, 1], [2, 3, 4, 5]]
    assert ddp_buckets([10, 20], 1, first_bytes=1) == [[0], [1]]


def profile(step=1.0, fwd=0.3, bwd_end=0.9, ready=(0.5, 0.7, 0.9), sizes=(2 * MIB, 2 * MIB, 2 * MIB)):
    return ComputeProfile(step, bwd_end, tuple(ready), tuple(sizes), fwd)


def test_one_bucket_starts_after_backward_and_delays_the_optimizer():
    p = profile()
    r = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=100 * MIB, first_bytes=MIB)  # buckets: [2 MiB], [4 MiB]
    assert [b[3] for b in r.buckets] == [2 * MIB, 4 * MIB]
    assert [b[0] for b in r.buckets] == pytest.approx([0.5, 0.9])
    # bucket 0: 0.5-0.7; bucket 1 ready at 0.9: 0.9-1.3; optimizer 1.3-1.4
    assert r.buckets[1][1:3] == pytest.approx((0.9, 1.3))
    assert r.step_s == pytest.approx(1.4) and r.exposed_comm_s == pytest.approx(0.4)
    assert r.comm_s == pytest.approx(0.6) and r.overlap_share == pytest.approx(1 - 0.4 / 0.6)


def test_a_given_bucket_cap_is_also_the_first_buckets():
    r = ddp_step(profile(), ab(0.0, 0.1 / MIB), cap_bytes=100 * MIB)  # one bucket, ready at the end of backward
    assert len(r.buckets) == 1 and r.step_s == pytest.approx(0.9 + 0.6 + 0.1) and r.overlap_share == 0


def test_many_buckets_hide_all_but_the_last():
    p = profile(ready=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9), sizes=(MIB,) * 6)
    r = ddp_step(p, ab(0.0, 0.05 / MIB), cap_bytes=MIB)
    assert len(r.buckets) == 6
    assert all(b[1] == pytest.approx(b[0]) for b in r.buckets)  # each starts when ready: comm is short
    assert r.step_s == pytest.approx(0.9 + 0.05 + 0.1)


def test_communication_longer_than_backward_queues_the_buckets():
    p = profile(ready=(0.4, 0.5, 0.6), sizes=(MIB,) * 3)
    r = ddp_step(p, ab(0.01, 0.3 / MIB), cap_bytes=MIB)
    starts = [b[1] for b in r.buckets]
    assert starts == pytest.approx([0.4, 0.71, 1.02])  # each waits for the one before
    assert r.step_s == pytest.approx(1.02 + 0.31 + 0.1)
    assert r.step_s > max(p.step_s, r.comm_s)  # between the band's bounds
    assert r.step_s <= p.step_s + r.comm_s


def test_accumulation_computes_k_times_and_communicates_once():
    p = profile()
    one = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=100 * MIB, first_bytes=MIB)
    four = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=100 * MIB, grad_accum=4, first_bytes=MIB)
    assert four.comm_s == pytest.approx(one.comm_s)
    assert four.step_s == pytest.approx(one.step_s + 3 * 0.9) and one.step_s == pytest.approx(1.4)
    assert four.compute_s == pytest.approx(1.0 + 2.7)


def test_a_bf16_hook_halves_the_bytes_on_the_wire():
    p = profile()
    full = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=100 * MIB)
    half = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=100 * MIB, bytes_scale=0.5)
    assert half.comm_s == pytest.approx(full.comm_s / 2)


def test_dp_overlaps_nothing():
    r = dp_step(1.0, ab(0.001, 1e-9, "broadcast"), ab(0.002, 2e-9, "reduce"), grad_bytes=1e8, grad_accum=2)
    assert r.step_s == pytest.approx(0.101 + 2.0 + 0.202) and r.exposed_comm_s == pytest.approx(r.comm_s)
    assert r.overlap_share == pytest.approx(0)


def test_fsdp_gathers_before_each_unit_and_scatters_after():
    p = profile(step=1.0, fwd=0.3, bwd_end=0.9)
    free = fsdp_step(p, [MIB, MIB], ab(0, 0, "all_gather"), ab(0, 0, "reduce_scatter"))
    assert free.step_s == pytest.approx(1.0)  # no communication cost: the compute step
    slow = fsdp_step(p, [MIB, MIB], ab(0.0, 0.2 / MIB, "all_gather"), ab(0.0, 0.1 / MIB, "reduce_scatter"))
    # forward: ag0 0-0.2, fwd0 0.2-0.35, ag1 0.2-0.4, fwd1 0.4-0.55; backward: ag1 0.55-0.75, bwd1 0.75-1.05,
    # ag0 0.75-0.95, rs1 1.05-1.15, bwd0 1.05-1.35, rs0 1.35-1.45, optimizer 1.45-1.55
    assert slow.step_s == pytest.approx(1.55)
    assert slow.comm_s == pytest.approx(4 * 0.2 + 2 * 0.1)
    accum = fsdp_step(p, [MIB, MIB], ab(0.0, 0.2 / MIB, "all_gather"), ab(0.0, 0.1 / MIB, "reduce_scatter"),
                      grad_accum=2)
    assert accum.comm_s == pytest.approx(8 * 0.2 + 2 * 0.1)  # gathers every micro-batch, scatters once
    with pytest.raises(ValueError, match="at least one unit"):
        fsdp_step(p, [], ab(), ab())


def test_contention_slows_compute_only_while_a_collective_runs():
    tasks = [Task("a", "compute", 1.0), Task("c", "comm", 0.5)]
    assert simulate(tasks, kappa=1.0).end_s == pytest.approx(1.0)
    # 0.5 s beside the collective at half speed: 0.25 s of work done, 0.75 s left alone
    assert simulate(tasks, kappa=2.0).spans["a"] == pytest.approx((0.0, 1.25))
    p = profile(ready=(0.4, 0.5, 0.6), sizes=(MIB,) * 3)
    plain = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=MIB)
    slowed = ddp_step(p, ab(0.0, 0.1 / MIB), cap_bytes=MIB, kappa=1.5)
    assert slowed.step_s > plain.step_s
    # nothing overlaps in dp: κ has nothing to slow
    assert plain.step_s < p.step_s + plain.comm_s
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        simulate(tasks, kappa=0.5)


def test_simulate_refuses_tasks_that_wait_on_each_other():
    with pytest.raises(ValueError, match="wait on each other"):
        simulate([Task("a", "compute", 1.0, ("b",)), Task("b", "comm", 1.0, ("a",))])
    assert math.isclose(simulate([]).end_s, 0.0)


def comm_with_profile(alpha=1e-3, bw=1e8, kappa=1.2):
    sizes = [4096 * 4**k for k in range(6)]
    rows = [{"op": "all_reduce", "bytes": b, "time_s": alpha + b / bw, "busbw_bytes_per_s": b / (alpha + b / bw)}
            for b in sizes + [6 * MIB]]
    rows += [{"op": "broadcast", "bytes": 6 * MIB, "time_s": 0.05, "busbw_bytes_per_s": 6 * MIB / 0.05}]
    return {"devices": 2, "grad_bytes": 6 * MIB, "compute_step_s": 0.2, "compute_step_1_s": 0.1, "rows": rows,
            "compute_profile": {"param_names": ["a.weight", "a.bias", "b.weight"], "param_bytes": [2 * MIB, 0, 4 * MIB],
                                "ready_s": [0.09, 0.09, 0.06], "forward_s": 0.03, "backward_end_s": 0.09,
                                "step_s": 0.1},
            "contention": {"kappa": kappa}, "provenance": {"timestamp": "2026-11-30T00:00:00+00:00"}}


def test_a_prediction_from_one_collective_record_with_its_band_and_baseline():
    from bench.explain.prediction import BASELINE_SAME_RUN, BASELINE_SINGLE_EPOCH, Settings, fits_of, predict
    rec = comm_with_profile()
    fits = fits_of(rec)
    assert fits["all_reduce"].alpha_s == pytest.approx(1e-3) and fits["all_reduce"].geomean_rel_error < 1e-9
    assert fits["broadcast"].alpha_s == pytest.approx(1e-3) and fits["broadcast"].points == 1
    p = predict(Settings("ddp", 2, 256, 128, ddp_bucket_mb=25), rec, base_epoch_s=10.0, base_steps=100)
    assert p["baseline"] == BASELINE_SAME_RUN and p["steps_per_epoch"] == 50 and p["buckets"] == 1
    assert p["predicted_epoch_s"] == pytest.approx(50 * p["predicted_step_s"])
    # the profile is stretched to the 0.2 s N-rank step; against the 0.1 s 1-rank step 2 devices gain < 1x
    assert p["predicted_speedup"] == pytest.approx(0.1 / p["predicted_step_s"] * 2) and p["refused"] is None
    low, high = p["band_epoch_s"]
    assert low <= p["predicted_epoch_s"] <= high * 1.1  # κ may push the point a little past no overlap
    old = predict(Settings("ddp", 2, 256, 128), {k: v for k, v in rec.items() if k != "compute_step_1_s"},
                  base_epoch_s=10.0, base_steps=100)
    assert old["baseline"] == BASELINE_SINGLE_EPOCH  # a record from before the 1-rank step was measured
    above = predict(Settings("ddp", 2, 256, 128), rec | {"compute_step_1_s": 1.0}, base_epoch_s=10.0, base_steps=100)
    assert above["predicted_speedup"] is None and "above the ideal 2x" in above["refused"]
    assert above["predicted_epoch_s"] == pytest.approx(p["predicted_epoch_s"])  # the epoch stands
    faster_link = predict(Settings("ddp", 2, 256, 128), comm_with_profile(bw=1e10), base_epoch_s=10.0, base_steps=100)
    assert faster_link["predicted_speedup"] > p["predicted_speedup"]  # more bandwidth never predicts slower
    assert predict(Settings("ddp", 2, 256, 128, ddp_comm_hook="powersgd"), rec) is None
    assert predict(Settings("single", 1, 128, 128), rec) is None
    # strong scaling: a global batch of 256 split over 2 ranks; the 1-rank step was measured at the rank's 128,
    # one device trains all 256 per step: 2 devices that each take 0.1 s per 128 gain 2 x 0.1 / step, not 0.1 / step
    strong = predict(Settings("ddp", 2, 256, 256), rec | {"batch_per_device": 128}, base_epoch_s=10.0, base_steps=100)
    assert strong["predicted_speedup"] == pytest.approx(0.1 / strong["predicted_step_s"] * 2)
    assert strong["refused"] is None  # the ideal is 2x at 2 devices under strong scaling too, not 256 / 256
    fast = predict(Settings("ddp", 2, 256, 256), rec | {"batch_per_device": 128, "compute_step_1_s": 1.0},
                   base_epoch_s=10.0, base_steps=100)
    assert "above the ideal 2x" in fast["refused"]


def test_the_table_shows_the_point_beside_the_band_and_the_residual_against_the_point():
    from helpers import record

    from bench.explain.goal import Goal
    from bench.explain.prediction import BASELINE_SINGLE_EPOCH
    from bench.render.summary import markdown_table, overlap_lines, summarize
    ddp = record("ddp", 2, [6.0], steps=50)
    ddp["prediction"] = {"predicted_speedup": 2.0, "band_speedup": [1.5, 2.0], "predicted_epoch_s": 5.0,
                         "overlap_share": 0.4, "baseline": BASELINE_SINGLE_EPOCH}
    ddp["ddp_overlap"] = {"overlap_s": 0.03, "backward_comm_s": 0.1}
    study = summarize([record("single", 1, [10.0], steps=100), ddp], Goal())
    table = markdown_table(study)
    assert "| 2.00x [1.50-2.00x] | -17% (inside band) |" in table  # measured 10/6 = 1.67x against 2.00x
    assert overlap_lines(study) == [f"The point and its band are relative to {BASELINE_SINGLE_EPOCH}.",
                                    "- ddp x2: overlap measured by DDP 30%, replayed 40%"]


def test_a_point_made_against_the_same_runs_1_rank_step_is_read_against_the_single_run():
    """The residual compares like with like: a point made against the collective benchmark's faster 1-rank step
    is put on the measured scale through the predicted epoch (found by a new user: "+205%" beside "epoch 0.34 s
    (predicted 0.28 s)")."""
    from helpers import record

    from bench.explain.goal import Goal
    from bench.explain.prediction import BASELINE_SAME_RUN
    from bench.render.summary import markdown_table, summarize
    ddp = record("ddp", 2, [6.0], steps=50)
    ddp["prediction"] = {"predicted_speedup": 4.0, "band_speedup": [3.0, 4.0], "predicted_epoch_s": 5.0,
                         "baseline": BASELINE_SAME_RUN}
    study = summarize([record("single", 1, [10.0], steps=100), ddp], Goal())
    row = next(line for line in markdown_table(study).splitlines() if "| ddp |" in line)
    assert "| 2.00x [1.50-2.00x] | -17% (inside band) |" in row  # predicted 5 s against measured 6 s


def test_measured_collectives_interpolate_inside_the_sweep_and_fit_beyond():
    from bench.explain.replay import MeasuredCollective
    fit = AlphaBeta("all_reduce", 2, 1e-3, 1e-9)
    curve = MeasuredCollective(fit, (1024.0, 4096.0), (1e-3, 4e-3))
    assert curve.time_s(1024) == 1e-3 and curve.time_s(4096) == 4e-3
    assert curve.time_s(2048) == pytest.approx(2e-3)  # linear in log-log between neighbours
    assert curve.time_s(1e9) == fit.time_s(1e9) and curve.time_s(0) == 0.0
    one = MeasuredCollective(fit, (4096.0,), (5e-3,))
    assert one.time_s(4096) == 5e-3 and one.time_s(100) == fit.time_s(100)
