"""How node 0 tells the other nodes what spans them: over a torch.distributed TCPStore that node 0's sweep holds
at the rendezvous endpoint's own port (each configuration's c10d rendezvous uses a port above it), node 0 publishes
the launches that span nodes, in order, each with a bound on how long it can take to reach it, and says "go" just
before each. The other nodes follow that list, so they never wait at a rendezvous that node 0 will reach only after
an hour of single-node work, and never wait for a configuration node 0 skips (done already on --resume)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

from bench.run.launch import KILL_WAIT_S, TERM_GRACE_S
from bench.run.nodes import Nodes

START_SLACK_S = 60.0
"""Start-up of a launch beyond its timeout, and the nodes' different start times."""
LAUNCH_MARGIN_S = 15.0
"""Per launch of node 0's own, beyond ending its tree: the output reader's end, the record, the next start."""


class NodeScheduleError(RuntimeError):
    """Node 0 cannot be reached, went away, or runs a different study."""


@dataclass(frozen=True)
class Launch:
    """One launch of a process tree that spans nodes (never an optimizer step)."""
    name: str
    """What node 0 launches: a configuration's key, or "comm:" + the key for the collectives before it."""
    within_s: float
    """The most node 0 can take, after the previous spanning launch ended (or after publishing), to start this."""


class NodeSchedule:
    def __init__(self, nodes: Nodes, timeout_s: float) -> None:
        host, _, port = nodes.rdzv_endpoint.rpartition(":")
        self.timeout_s = timeout_s
        try:
            self.store = dist.TCPStore(host, int(port), is_master=nodes.node_rank == 0, wait_for_workers=False,
                                       timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, OSError) as exc:
            where = "hold the" if nodes.node_rank == 0 else "reach node 0's"
            raise NodeScheduleError(f"cannot {where} study store at {nodes.rdzv_endpoint}: "
                                    f"{_first_line(exc)}") from None

    # node 0
    def publish(self, launches: list[Launch]) -> None:
        self.store.set("launches", json.dumps([[s.name, s.within_s] for s in launches]))

    def go(self, n: int) -> None:
        self.store.set(f"go/{n}", "")

    # the other nodes
    def launches(self) -> list[Launch]:
        self._wait("launches", self.timeout_s, "publish its plan")
        return [Launch(name, within_s) for name, within_s in json.loads(self.store.get("launches"))]

    def wait_go(self, n: int, launch: Launch) -> None:
        self._wait(f"go/{n}", launch.within_s, f"start {launch.name}")

    def _wait(self, key: str, within_s: float, what: str) -> None:
        try:
            self.store.wait([key], timedelta(seconds=within_s))
        except (RuntimeError, OSError) as exc:  # DistStoreError (timeout), DistNetworkError (node 0 gone)
            raise NodeScheduleError(f"node 0 did not {what} within {within_s:.0f} s (lost?): "
                                    f"{_first_line(exc)}") from None


def bound_s(local_launches: int, timeout_s: float) -> float:
    """How long node 0 can take to reach a spanning launch with `local_launches` of its own before it: each ends
    within its timeout (plus the tree's ending), then one start-up."""
    return local_launches * (timeout_s + TERM_GRACE_S + KILL_WAIT_S + LAUNCH_MARGIN_S) + START_SLACK_S


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
