"""torchrun, unchanged, that also hands its root cause back to the sweep as JSON:

  MGPU_FAILURE_FILE=f.json python -m bench.run.torchrun [torchrun's flags] -m mgpu_core ...

torch.distributed.run does the launching, rendezvous and teardown; when a worker fails, its ChildFailedError names
the first failure (rank, exit code or signal, and the message from the worker's torch error file), which is written
to $MGPU_FAILURE_FILE as {"rank", "exitcode", "message"}. No output is parsed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from mgpu_core.distributed import USER_OMP_ENV
from mgpu_core.files import atomic_write

FAILURE_FILE_ENV = "MGPU_FAILURE_FILE"


def failure_message(failure) -> str:
    """The worker's one-line error (message of its error file), or the signal or exit code that ended it."""
    message = failure.message
    if isinstance(message, dict):  # torch's error-file layout: {"message": ..., "extraInfo": {...}}
        message = message.get("message", "")
    if not message or message.startswith("To enable traceback"):  # no error file was written
        return f"exit code {failure.exitcode}"
    return " ".join(str(message).split())


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing", "Broken pipe",
             "communicator was aborted")
"""Errors a rank raises because another rank died (gloo's and NCCL's words): a consequence, never the root cause."""


def root_cause(exc: ChildFailedError):
    """(rank, failure) that caused the others: the first by time (torch's choice, get_first_failure) unless its
    message says a peer was lost, then the first whose message does not; the ranks' error files are written at
    nearly the same moment, so the consequence can carry the earlier timestamp."""
    first_rank, first = exc.get_first_failure()
    if not any(words in failure_message(first) for words in PEER_LOST):
        return first_rank, first
    causes = sorted((f.timestamp, rank, f) for rank, f in exc.failures.items()
                    if not any(words in failure_message(f) for words in PEER_LOST))
    return (causes[0][1], causes[0][2]) if causes else (first_rank, first)


def main(argv: list[str] | None = None) -> int:
    # torchrun sets OMP_NUM_THREADS=1 for its workers when the user did not: keep what the user set (or that they
    # did not), so ranks choose their threads by the same rule as the single-process baseline.
    os.environ.setdefault(USER_OMP_ENV, os.environ.get("OMP_NUM_THREADS", ""))
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except ChildFailedError as exc:
        rank, failure = root_cause(exc)
        target = os.environ.get(FAILURE_FILE_ENV)
        if target:
            with atomic_write(Path(target)) as f:
                json.dump({"rank": rank, "exitcode": failure.exitcode, "message": failure_message(failure)}, f)
        print(f"torchrun: rank {rank} failed: {failure_message(failure)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
