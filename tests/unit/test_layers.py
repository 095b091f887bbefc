"""The shape holds: readers of records load no torch, and a mistyped flag is refused before torch loads."""

import subprocess
import sys

TORCH_LOADED = "print(sorted(m for m in ('torch', 'torchvision', 'torch.distributed.run') if m in sys.modules))"


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_record_readers_load_no_torch():
    assert _run("import sys, bench.report, bench.compare, bench.records.results, bench.records.comm, "
                f"bench.explain.bottleneck, mgpu_core.config; {TORCH_LOADED}") == "[]"


def test_a_bad_sweep_argument_is_refused_before_torch_loads():
    code = ("import sys, contextlib, io, bench.scaling as s\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n        s.main(['--gpus', '0'])\n    except SystemExit as e:\n        print(e.code)\n"
            f"{TORCH_LOADED}")
    assert _run(code).splitlines() == ["2", "[]"]
