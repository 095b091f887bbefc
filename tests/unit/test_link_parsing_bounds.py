"""A link given on the command line must be finite: 1e400s or a 400-digit bandwidth overflow to inf, which reached
the replay as a traceback ('task durations must be finite') instead of one line."""

import pytest
from test_predict import _study

from bench import predict
from bench.explain.interconnects import parse_bandwidth, parse_duration


@pytest.mark.parametrize("text", ["1e400s", "9" * 400 + "us"])
def test_an_infinite_latency_is_refused(text):
    with pytest.raises(ValueError, match="latency .*finite"):
        parse_duration(text)


def test_an_infinite_bandwidth_is_refused():
    with pytest.raises(ValueError, match="bandwidth .*finite"):
        parse_bandwidth("9" * 400 + "GB/s")


def test_predict_with_an_infinite_latency_is_one_line_and_exit_2(tmp_path, capsys):
    study = _study(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), "--busbw", "5GB/s", "--latency", "1e400s"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "latency '1e400s'" in err[0]
