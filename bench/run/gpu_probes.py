"""The GPU session's own programs, each run by bench.gpu_check as a child process under its step's timeout:

  python -m bench.run.gpu_probes env WORK              versions, the device, the peak-table lookup, bf16 matmul,
                                                       what Triton needs, every module imports -> WORK/env.json
  python -m bench.run.gpu_probes data WORK [flags]     decode the data once into the cache, then a cached reload
  python -m bench.run.gpu_probes probes WORK [flags]   confirm or refute each "likely" finding and check its fix
                                                       -> WORK/probes.json
  python -m bench.run.gpu_probes strategies WORK       each DDP/FSDP strategy once on a group of one
  python -m bench.run.gpu_probes matrix WORK [flags]   the input-path matrix against its targets -> WORK/matrix.json
  python -m bench.run.gpu_probes teardown BACKEND ORDER  (the teardown probe's own child: may hang by design)

[flags] are training flags (the data source, the device). A probe's verdict is one of: confirmed (the mechanism
shows here), refuted (it does not), and the fix's check: fix ok / FIX FAILED; or skipped, or error.

The programs live in modules named for what they hold: gpu_probe_env (env, data), gpu_probe_devices,
gpu_probe_timing and gpu_probe_ddp (the probes, by family), gpu_probe_strategies (strategies, matrix), and
gpu_probe_kit (what they share: the training config of the flags, the verdicts). This module runs them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.run.gpu_probe_ddp import probe_compile_no_sync, probe_teardown, teardown_child
from bench.run.gpu_probe_devices import probe_dp_autocast, probe_nccl_version, probe_peak_table
from bench.run.gpu_probe_env import data_probe, env_probe
from bench.run.gpu_probe_kit import Probes
from bench.run.gpu_probe_strategies import matrix, strategies
from bench.run.gpu_probe_timing import probe_partial_batch, probe_peak_memory, probe_profile


def probes(work: Path, argv: list[str]) -> None:
    import torch
    cuda = torch.cuda.is_available()
    found = Probes(work)
    found.run(8, "dp_autocast_dtype", probe_dp_autocast, cuda)
    found.run(11, "peak_table_and_tf32", probe_peak_table, cuda)
    found.run(12, "nccl_version", probe_nccl_version, cuda)
    found.run(13, "ddp_teardown", probe_teardown, ["gloo", "nccl"] if cuda else ["gloo"])
    found.run(9, "partial_last_batch", probe_partial_batch, argv, cuda)
    found.run(10, "profile_accounting", probe_profile, argv, cuda)
    found.run(4, "compile_no_sync", probe_compile_no_sync, cuda)
    found.run(5, "peak_memory", probe_peak_memory, argv, cuda)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    if what == "teardown":
        return teardown_child(*rest)
    work = Path(rest[0])
    work.mkdir(parents=True, exist_ok=True)
    if what == "env":
        env_probe(work)
    elif what == "data":
        data_probe(rest[1:])
    elif what == "probes":
        probes(work, rest[1:])
    elif what == "strategies":
        strategies()
    elif what == "matrix":
        spec = json.loads(rest[1])
        matrix(work, [tuple(r) for r in spec["plan"]], spec["epochs"], spec["per_row_s"], spec["deadline"],
               rest[2:])
    else:
        print(f"python -m bench.run.gpu_probes: error: unknown program {what!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
