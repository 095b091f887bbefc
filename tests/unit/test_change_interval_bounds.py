"""The interval of a change in samples/s never reaches below -100%: a throughput cannot fall below zero."""

from bench.explain.noise import change_interval, judge


def test_a_wide_interval_of_the_change_stops_at_minus_100_percent():
    noisy = [906.0, 363.0, 3245.0]  # three single x1 epochs of a loaded 2-core machine (bench.compare A A)
    low, high = change_interval(noisy, noisy, 0.05)
    assert low >= -1.0 and high > 1.0
    verdict, change, why = judge(noisy, noisy, 0.05)
    assert verdict == "no change" and change == 0.0
    assert "interval of the change -100.0% to" in why


def test_a_narrow_interval_is_untouched():
    low, high = change_interval([100.0, 101.0, 99.0, 100.5, 99.5], [110.0, 111.0, 109.0, 110.5, 109.5], 0.05)
    assert low < 0.1 < high and high - low < 0.05  # +10% change, tight noise: the clamp changes nothing
