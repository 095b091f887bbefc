"""Two hosts on one machine: network namespaces joined by a veth pair, each end with its own address, the link
shaped by tc's token bucket filter (tbf; netem is not needed). Needs root and iproute2 (ip, tc). Everything made is
removed on leaving the context, also after an error or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

RATE = re.compile(r"^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$")
UNSHAPED = "unshaped"
RATE_BITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
BURST_S = 0.01
"""tbf's bucket holds this many seconds of the rate (at least 64 KiB): enough for the kernel's timer granularity."""
QUEUE_LATENCY = "100ms"
"""How long a packet may wait in tbf's queue before it is dropped."""


class HostsError(RuntimeError):
    """Namespaces or shaping could not be set up; one line."""


def missing_privileges() -> str | None:
    """Why two hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces and tc need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"iproute2's {tool} is not installed"
    return None


def rate_bits_per_s(rate: str) -> float | None:
    """'200mbit' -> 2e8; 'unshaped' -> None; ValueError for anything else."""
    if rate == UNSHAPED:
        return None
    match = RATE.match(rate)
    if not match:
        raise ValueError(f"rate {rate!r}: write it as tc does, e.g. 50mbit, 1gbit, or 'unshaped'")
    return float(match[1]) * RATE_BITS[match[2]]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    interface: str

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def env(self) -> dict[str, str]:
        """gloo's interface: the veth end (host names do not resolve to these addresses)."""
        return {"GLOO_SOCKET_IFNAME": self.interface, "NCCL_SOCKET_IFNAME": self.interface}


def shape(hosts: list[Host], rate: str) -> None:
    """Shape both directions of the link to `rate` (tbf), or remove the shaping ('unshaped')."""
    bits = rate_bits_per_s(rate)
    for host in hosts:
        if bits is None:
            _run("ip", "netns", "exec", host.namespace, "tc", "qdisc", "del", "dev", host.interface, "root")
            continue
        burst = max(65536, int(bits / 8 * BURST_S))
        done = _run("ip", "netns", "exec", host.namespace, "tc", "qdisc", "replace", "dev", host.interface, "root",
                    "tbf", "rate", rate, "burst", str(burst), "latency", QUEUE_LATENCY)
        if done.returncode:
            raise HostsError(f"tc tbf rate {rate} on {host.interface}: {done.stderr.strip()}")


def end_processes_in(namespace: str) -> None:
    """SIGKILL whatever still runs in `namespace` (left over after a failure or Ctrl-C)."""
    for pid in _run("ip", "netns", "pids", namespace).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@contextlib.contextmanager
def two_hosts() -> Iterator[list[Host]]:
    """[host 0, host 1] joined by a veth pair on a random private subnet, with random names; removed afterwards
    whatever happened. HostsError where a step fails."""
    tag = f"mv{os.getpid() % 10000}{random.randrange(100)}"
    names, link = [f"{tag}a", f"{tag}b"], [f"{tag}x", f"{tag}y"]
    subnet = f"10.{random.randrange(64, 250)}.{random.randrange(1, 250)}"
    hosts = [Host(names[0], f"{subnet}.1", link[0]), Host(names[1], f"{subnet}.2", link[1])]
    try:
        steps = [("netns", "add", names[0]), ("netns", "add", names[1]),
                 ("link", "add", link[0], "type", "veth", "peer", "name", link[1]),
                 ("link", "set", link[0], "netns", names[0]), ("link", "set", link[1], "netns", names[1])]
        for host in hosts:
            steps += [("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.interface),
                      ("-n", host.namespace, "link", "set", host.interface, "up"),
                      ("-n", host.namespace, "link", "set", "lo", "up")]
        for step in steps:
            done = _run("ip", *step)
            if done.returncode:
                raise HostsError(f"ip {' '.join(step)}: {done.stderr.strip()}")
        yield hosts
    finally:
        for ns in names:
            end_processes_in(ns)
            _run("ip", "netns", "del", ns)  # takes its end of the veth pair with it
        _run("ip", "link", "del", link[0])
