"""An efficiency far above ideal that the baseline's noise cannot rule out is not called 'near ideal': a 1 cpu ddp
row at 284% against a baseline that drifted 7x read 'compute-bound: near ideal (efficiency 284%)'."""

from bench.explain.scaling_model import NEAR_IDEAL_EFFICIENCY, Evidence, bottleneck_of

ROW = dict(mode="ddp", devices=1, device_type="cpu", rank_times_s=[1.0], data_wait_share=0.0)


def test_far_above_ideal_within_the_noise_is_said_as_such():
    verdict = bottleneck_of(Evidence(efficiency=2.84, noise=1.5, **ROW))
    assert "near ideal" not in verdict
    assert verdict.startswith("above ideal within the noise (efficiency 284%, noise 150%)")


def test_the_edge_of_near_ideal_is_symmetric():
    assert bottleneck_of(Evidence(efficiency=1 / NEAR_IDEAL_EFFICIENCY, noise=0.2, **ROW)).startswith(
        "compute-bound: near ideal (efficiency 111%)")
    assert bottleneck_of(Evidence(efficiency=1.12, noise=0.2, **ROW)).startswith("above ideal within the noise")
