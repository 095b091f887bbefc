"""--nccl-tests takes all_reduce_perf's output; another test's table (all_gather_perf: redop 'none', or a header that
names it) is refused in one line, never fitted as all-reduce with the wrong bus factor."""

import pytest
from test_predict import NCCL

from bench.explain.interconnects import parse_nccl_tests


def test_an_all_gather_table_is_refused():
    gather = NCCL.replace("float     sum", "float    none")
    with pytest.raises(ValueError, match="redop 'none'.*not all_reduce_perf"):
        parse_nccl_tests(gather)


def test_a_header_naming_another_test_is_refused_and_all_reduce_is_read():
    with pytest.raises(ValueError, match="reduce_scatter_perf.*not all_reduce_perf"):
        parse_nccl_tests("# Collective test starting: reduce_scatter_perf\n" + NCCL)
    assert parse_nccl_tests("# Collective test starting: all_reduce_perf\n" + NCCL).devices == 8
