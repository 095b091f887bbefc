"""SyncBatchNorm on a model without BatchNorm is plain ddp under another label: the plan skips it with the reason."""

from bench.run.axes import Axes
from bench.run.plan import PlanInput, plan
from mgpu_core.config import TrainConfig


def test_sync_bn_is_skipped_for_models_without_batchnorm():
    axes = Axes(sync_bn=("off", "on"))
    for model, image_size, skipped in (("simplecnn", 32, True), ("vit_b_16", 32, True), ("resnet18", 32, False)):
        base = TrainConfig(model=model, image_size=image_size)
        cells = plan(PlanInput(base, "cuda", (2,), ("ddp",), axes=axes, visible_gpus=2, cores=8))
        reasons = {dict(c.variant)["sync_bn"]: c.skip for c in cells}
        assert reasons[False] is None
        assert (reasons[True] == f"sync-bn: {model} has no BatchNorm layer (SyncBatchNorm would change nothing)"
                if skipped else reasons[True] is None)
