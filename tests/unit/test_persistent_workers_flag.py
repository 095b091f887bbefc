"""--persistent-workers where there are no DataLoader workers to keep (--workers 0, or the device pipeline) would
change nothing: refused in one line naming the flag, like --data-dir with --dataset synthetic."""

import pytest

from mgpu_core.config import ConfigError, TrainConfig


@pytest.mark.parametrize("cfg, why", [({"pipeline": "dataloader", "workers": 0}, "--workers 0"),
                                      ({"pipeline": "device"}, "dataloader pipeline")])
def test_persistent_workers_without_workers_is_refused(cfg, why):
    with pytest.raises(ConfigError, match=f"^persistent_workers: .*{why}"):
        TrainConfig(persistent_workers=True, **cfg)


def test_persistent_workers_with_workers_is_taken():
    assert TrainConfig(pipeline="dataloader", workers=1, persistent_workers=True).persistent_workers
