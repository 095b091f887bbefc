"""DDP's own measurement of how much of its communication it hid behind backward."""

from __future__ import annotations

from torch import nn
from torch.nn.parallel import DistributedDataParallel

NS = 1e-9


def ddp_overlap(model: nn.Module) -> dict | None:
    """DDP's logging data (DistributedDataParallel._get_ddp_logging_data(), a private torch API; None where the
    model is not DDP or torch lacks it): averages over the iterations DDP sampled of forward compute, backward
    compute, backward communication (first bucket's all-reduce start to last bucket's end) and their overlap, in
    seconds; the buckets reduced per step and their sizes after DDP rebuilt them in gradient-ready order."""
    inner = getattr(model, "_orig_mod", model)  # under torch.compile
    if not isinstance(inner, DistributedDataParallel) or not hasattr(inner, "_get_ddp_logging_data"):
        return None
    data = inner._get_ddp_logging_data()
    if not data.get("avg_backward_compute_time"):
        return None
    sizes = str(data.get("rebuilt_bucket_sizes") or data.get("bucket_sizes") or "")
    return {"forward_compute_s": data.get("avg_forward_compute_time", 0) * NS,
            "backward_compute_s": data["avg_backward_compute_time"] * NS,
            "backward_comm_s": data.get("avg_backward_comm_time", 0) * NS,
            "overlap_s": data.get("avg_backward_compute_comm_overlap_time", 0) * NS,
            "buckets": data.get("num_buckets_reduced"),
            "bucket_bytes": [int(s) for s in sizes.replace(",", " ").split()]}
