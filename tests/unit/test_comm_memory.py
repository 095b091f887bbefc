"""The collective benchmark's largest message is checked against host memory before CPU ranks start."""

import psutil

from bench.run.comm_memory import comm_memory_error


def test_a_message_beyond_host_memory_is_one_line_naming_the_flag():
    line = comm_memory_error(10**23, 2, "cpu", "--comm-max-bytes")
    assert line.startswith("--comm-max-bytes: an all-reduce of 100,000,000,000,000,000,000,000 bytes on 2 CPU")
    assert "\n" not in line and "this host has" in line


def test_what_fits_passes_and_gpus_are_not_judged_here():
    assert comm_memory_error(256 * 2**20, 2, "cpu", "--max-bytes") is None  # the default
    half = psutil.virtual_memory().total // 4
    assert comm_memory_error(half, 2, "cpu", "--max-bytes") is None  # exactly the host's memory
    assert comm_memory_error(half + 1, 2, "cpu", "--max-bytes") is not None
    assert comm_memory_error(10**23, 1, "cpu", "--max-bytes") is None
    assert comm_memory_error(10**23, 8, "cuda", "--max-bytes") is None
