"""The replay's DDP bucket assignment against torch's own (torch.distributed._compute_bucket_assignment_by_size)."""

import pytest
import torch.distributed as dist

from bench.explain.replay import FIRST_BUCKET_BYTES, ddp_buckets
from mgpu_core.models import build_model


@pytest.mark.parametrize("model, cap_mb", [("simplecnn", 1), ("simplecnn", 25), ("resnet18", 1), ("resnet18", 25)])
def test_buckets_match_torchs_reducer(model, cap_mb):
    if not hasattr(dist, "_compute_bucket_assignment_by_size"):
        pytest.skip("this torch does not expose its bucket assignment")
    assert FIRST_BUCKET_BYTES == dist._DEFAULT_FIRST_BUCKET_BYTES
    params = [p for p in build_model(model, 10, 32).parameters()][::-1]  # DDP's initial order: reversed
    sizes = [p.numel() * p.element_size() for p in params]
    default, _ = dist._compute_bucket_assignment_by_size(params, [FIRST_BUCKET_BYTES, cap_mb * 2**20])
    assert ddp_buckets(sizes, cap_mb * 2**20) == [list(b) for b in default]  # DDP's default cap
    given, _ = dist._compute_bucket_assignment_by_size(params, [cap_mb * 2**20])
    assert ddp_buckets(sizes, cap_mb * 2**20, first_bytes=cap_mb * 2**20) == [list(b) for b in given]
