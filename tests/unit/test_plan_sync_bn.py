"""SyncBatchNorm on a model without BatchNorm is plain ddp under another label: the plan skips it with the reason."""

from bench.run.axes import Axes
from bench.run.plan import plan


def test_sync_bn_is_skipped_for_models_without_batchnorm():
    axes = Axes(sync_bn=("off", "on"))
    for model, skipped in (("simplecnn", True), ("vit_b_16", True), ("resnet18", False)):
        entries = plan((2,), ("ddp",), 1, visible_gpus=2, cores=8, batch_size=128, global_batch=False, axes=axes,
                       model=model)
        reasons = {dict(e.variant)["sync_bn"]: e.skip for e in entries}
        assert reasons[False] is None
        assert (reasons[True] == f"sync-bn: {model} has no BatchNorm layer (SyncBatchNorm would change nothing)"
                if skipped else reasons[True] is None)
