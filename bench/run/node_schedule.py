"""How node 0 tells the other nodes what spans them: over a torch.distributed TCPStore that node 0's sweep holds
at the rendezvous endpoint's own port (each configuration's c10d rendezvous uses a port above it), node 0 publishes
the launches that span nodes, in order, each with a bound on how long it can take to reach it, and says "go" just
before each. The other nodes follow that list, so they never wait at a rendezvous that node 0 will reach only after
an hour of single-node work, and never wait for a configuration node 0 skips (done already on --resume)."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

import psutil
import torch.distributed as dist

from bench.run.launch import KILL_WAIT_S, TERM_GRACE_S
from bench.run.nodes import Nodes

START_SLACK_S = 60.0
"""Start-up of a launch beyond its timeout, and the nodes' different start times."""
LAUNCH_MARGIN_S = 15.0
"""Per launch of node 0's own, beyond ending its tree: the output reader's end, the record, the next start."""
WAIT_SLICE_S = 1.0
"""Longest single blocking wait on the store: a signal is handled within it."""
CONNECT_TRY_S = 2.0
"""Longest single connection attempt to node 0's store."""
CONNECT_GRACE_S = 30.0
"""Connection refused this long: nobody listens at the endpoint (node 0 may start a little later than the others)."""
RESULT_WAIT_S = 60.0
"""How long node 0 waits for a result that global rank 0 wrote on another node (that node sends it as soon as its
launch has ended, which is when node 0's has)."""


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
        if nodes.node_rank == 0:
            problem = not_local(host)
            if problem:  # node 0 holds the endpoint: waiting could never help
                raise NodeScheduleError(f"--rdzv-endpoint {nodes.rdzv_endpoint}: {problem}; node 0 runs where the "
                                        "endpoint is (give one of this host's addresses)")
        else:
            wait_reachable(host, int(port), timeout_s)
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

    def take_over(self, name: str) -> str | None:
        """The result of launch `name` that global rank 0 wrote on another node (hand_over), or None when none
        comes within RESULT_WAIT_S."""
        try:
            self._wait(f"result/{name}", RESULT_WAIT_S, f"hand back the result of {name}")
        except NodeScheduleError:
            return None
        return self.store.get(f"result/{name}").decode()

    # the other nodes
    def launches(self) -> list[Launch]:
        self._wait("launches", self.timeout_s, "publish its plan")
        return [Launch(name, within_s) for name, within_s in json.loads(self.store.get("launches"))]

    def wait_go(self, n: int, launch: Launch) -> None:
        self._wait(f"go/{n}", launch.within_s, f"start {launch.name}")

    def hand_over(self, name: str, text: str) -> None:
        """Send node 0 the result of launch `name`, written here because global rank 0 ran on this node (the
        rendezvous gives ranks in the order the nodes join)."""
        self.store.set(f"result/{name}", text)

    def _wait(self, key: str, within_s: float, what: str) -> None:
        """Wait for `key` at most within_s, in slices of WAIT_SLICE_S: between them Python runs its signal
        handlers, so Ctrl-C and SIGTERM end a waiting node at once."""
        deadline = time.monotonic() + within_s
        while True:
            left = deadline - time.monotonic()
            try:
                self.store.wait([key], timedelta(seconds=max(0.01, min(WAIT_SLICE_S, left))))
                return
            except dist.DistStoreError as exc:  # this slice timed out
                if left <= WAIT_SLICE_S:
                    raise NodeScheduleError(f"node 0 did not {what} within {within_s:.0f} s (lost?): "
                                            f"{_first_line(exc)}") from None
            except (RuntimeError, OSError) as exc:  # DistNetworkError (node 0 gone)
                raise NodeScheduleError(f"node 0 did not {what} within {within_s:.0f} s (lost?): "
                                        f"{_first_line(exc)}") from None


def not_local(host: str) -> str | None:
    """Why `host` is not an address of this machine (it does not resolve, or resolves elsewhere), or None."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or exc})"
    local = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    if any(a in local or ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_unspecified
           for a in addresses):
        return None
    return f"{host} ({', '.join(sorted(addresses))}) is not an address of this host"


def wait_reachable(host: str, port: int, timeout_s: float) -> None:
    """Return once node 0's study store at host:port accepts a connection. NodeScheduleError at once where the
    cause is certain: the connection refused for CONNECT_GRACE_S (node 0's sweep is not running there); else
    after timeout_s (unreachable). Each try is short, so signals end the wait at once."""
    deadline = time.monotonic() + timeout_s
    refused_since = None
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(CONNECT_TRY_S, left))):
                return
        except ConnectionRefusedError:
            refused_since = refused_since or time.monotonic()
            grace = min(CONNECT_GRACE_S, timeout_s)
            if time.monotonic() - refused_since >= grace:
                raise NodeScheduleError(f"cannot reach node 0's study store at {host}:{port}: connection refused for "
                                        f"{grace:.0f} s (is node 0's sweep running, with this --rdzv-endpoint?)"
                                        ) from None
        except OSError as exc:  # timed out, no route, unreachable: maybe not yet
            refused_since = None
            if left <= CONNECT_TRY_S:
                raise NodeScheduleError(f"cannot reach node 0's study store at {host}:{port} within "
                                        f"{timeout_s:.0f} s ({exc.strerror or type(exc).__name__})") from None
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def bound_s(local_launches: int, timeout_s: float) -> float:
    """How long node 0 can take to reach a spanning launch with `local_launches` of its own before it: each ends
    within its timeout (plus the tree's ending), then one start-up."""
    return local_launches * (timeout_s + TERM_GRACE_S + KILL_WAIT_S + LAUNCH_MARGIN_S) + START_SLACK_S


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
