"""glibc malloc keeps what a step frees (mgpu_core.host_memory), through process_group on CPU: measured in minor page
faults in a fresh process whose malloc starts in the state that made a first epoch fault every step."""

import json
import platform
import subprocess
import sys

import pytest

CHILD = """
import ctypes, ctypes.util, json, resource, sys
import numpy as np
from mgpu_core.config import TrainConfig
from mgpu_core.distributed import process_group
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallopt(-3, 128 * 1024)  # glibc's starting mmap threshold, held fixed: each 4 MiB block is a fresh mapping

def faults_per_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = np.ones(2**20, dtype=np.float32)  # 4 MiB, touched, then freed
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

unmanaged = faults_per_block()
with process_group(TrainConfig(device="cpu", dataset="synthetic", keep_freed_memory=sys.argv[1] == "on")):
    faults_per_block()  # the first block after the change may still fault in its pages
    managed = faults_per_block()
print(json.dumps({"unmanaged": unmanaged, "managed": managed}))
"""


def _faults(setting: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, setting], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")
def test_process_group_keeps_freed_blocks_so_a_step_does_not_fault_them_in_again():
    on, off = _faults("on"), _faults("off")
    assert on["unmanaged"] > 500 and off["unmanaged"] > 500  # 1,024 pages of 4 KiB per block
    assert on["managed"] < 50, on
    assert off["managed"] > 500, off  # --no-keep-freed-memory leaves malloc as it was
