"""Device counts beyond any machine (e.g. 10**20, past int64) are refused in one line where they are given, never
planned, recorded and then drawn on a log axis that cannot take them (a matplotlib traceback)."""

import pytest
from test_predict import _study

from bench import predict
from bench.run.sweep_config import SweepConfig
from mgpu_core.config import ConfigError
from mgpu_core.names import MAX_DEVICES


@pytest.mark.parametrize("count", [MAX_DEVICES + 1, 10**20])
def test_a_sweep_of_more_devices_than_any_machine_is_refused(count):
    with pytest.raises(ConfigError, match=f"^gpus: .*<= {MAX_DEVICES}"):
        SweepConfig(gpus=(1, count))
    assert SweepConfig(gpus=(1, MAX_DEVICES)).gpus[-1] == MAX_DEVICES


def test_predict_refuses_more_devices_than_any_machine_in_one_line(tmp_path, capsys):
    study = _study(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        predict.main([str(study), "--devices", f"2,{10**20}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "--devices" in err[0] and str(MAX_DEVICES) in err[0]
