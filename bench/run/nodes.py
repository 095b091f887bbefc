"""One study across hosts, on torchrun's own machinery: the same sweep command on every node; device counts up to
one node's devices run on node 0 alone, larger counts span nodes, each configuration a torchrun with the c10d
rendezvous at node 0's endpoint. Node 0 writes the records; the others only take part."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

import psutil

from bench.records.units import plural
from mgpu_core.config import ConfigError


def _env(name: str, default=None):
    """torchrun's own environment variables (PET_*) stand in for the flags, as they do for torchrun."""
    return os.environ.get(f"PET_{name}", default)


def _env_int(name: str, default: int):
    """An integer PET_* variable; a value that is not one is kept as text, so that validation names it (no
    traceback while the parser is built)."""
    value = _env(name, default)
    try:
        return int(value)
    except ValueError:
        return value


MAX_PORT = 65535
MAX_PLAN_PORTS = 1000
"""Ports above the endpoint's that a study's configurations may use (PORT + 1 + 2i): room for 500 configurations."""


@dataclass(frozen=True)
class Nodes:
    nnodes: int = field(default_factory=lambda: _env_int("NNODES", 1))
    """Hosts taking part in the study (torchrun's PET_NNODES when set). Run the same command on each."""

    node_rank: int = field(default_factory=lambda: _env_int("NODE_RANK", 0))
    """This host's place: 0 runs everything that fits on one node and writes the records; the others join the
    configurations that span nodes (PET_NODE_RANK)."""

    rdzv_endpoint: str | None = field(default_factory=lambda: _env("RDZV_ENDPOINT"))
    """HOST:PORT of node 0. PORT holds the study's store (node 0's schedule for the other nodes); configuration i
    of the plan meets at PORT + 1 + 2i (its collectives at PORT + 2 + 2i), so no rendezvous ever meets a finished
    one's store (PET_RDZV_ENDPOINT)."""

    local_addr: str | None = field(default_factory=lambda: _env("LOCAL_ADDR"))
    """This host's address as the others reach it (torchrun's --local-addr); needed where host names do not
    resolve to the hosts' addresses."""

    nproc_per_node: int | None = None
    """Devices (processes) per node; default: the visible GPUs, or on CPU the usable cores."""

    def __post_init__(self) -> None:
        for name in ("nnodes", "node_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}: must be an integer (got {value!r}; from --{name.replace('_', '-')} or "
                                  f"PET_{name.upper()})")
        if self.nnodes < 1:
            raise ConfigError(f"nnodes: must be >= 1 (got {self.nnodes})")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"node_rank: must be in [0, nnodes) (got {self.node_rank} of {self.nnodes})")
        if self.nnodes > 1:
            host, _, port = (self.rdzv_endpoint or "").rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"rdzv_endpoint: HOST:PORT of node 0 is needed with {self.nnodes} nodes "
                                  f"(got {self.rdzv_endpoint!r})")
            if int(port) > MAX_PORT - MAX_PLAN_PORTS:
                raise ConfigError(f"rdzv_endpoint: port must be at most {MAX_PORT - MAX_PLAN_PORTS} (the ports above "
                                  f"it serve the plan's configurations); got {port}")
        if self.nproc_per_node is not None and self.nproc_per_node < 1:
            raise ConfigError(f"nproc_per_node: must be >= 1 (got {self.nproc_per_node})")

    @property
    def multi(self) -> bool:
        return self.nnodes > 1

    def child_env(self) -> dict[str, str]:
        """Where host names resolve to a loopback address, gloo would advertise 127.0.0.1 to the other nodes: name
        the interface that holds --local-addr (GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME, unless already set)."""
        if not (self.multi and self.local_addr):
            return {}
        interface = next((name for name, addrs in psutil.net_if_addrs().items()
                          if any(a.address == self.local_addr for a in addrs)), None)
        if interface is None:
            return {}
        return {k: os.environ.get(k, interface) for k in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")}


@dataclass(frozen=True)
class Rendezvous:
    """torchrun's flags for one configuration that spans `nnodes` hosts."""
    nnodes: int
    endpoint: str
    rdzv_id: str
    is_host: bool
    local_addr: str | None
    timeout_s: float

    def torchrun_flags(self, nproc_per_node: int) -> list[str]:
        timeout = str(max(1, math.ceil(self.timeout_s)))
        conf = f"is_host={int(self.is_host)},read_timeout={timeout},join_timeout={timeout}"
        flags = ["--nnodes", str(self.nnodes), "--nproc-per-node", str(nproc_per_node), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", self.endpoint, "--rdzv-id", self.rdzv_id, "--rdzv-conf", conf]
        return flags + (["--local-addr", self.local_addr] if self.local_addr else [])


def nodes_needed(devices: int, per_node: int) -> int:
    return math.ceil(devices / per_node)


def span_skip(devices: int, per_node: int, nnodes: int) -> str | None:
    """Why `devices` cannot run on these nodes, or None."""
    needed = nodes_needed(devices, per_node)
    if needed > nnodes:
        return f"{plural(devices, 'device')} need {plural(needed, 'node')} of {per_node}; {nnodes} taking part"
    if needed > 1 and devices % per_node:
        return f"{plural(devices, 'device')} do not fill whole nodes of {per_node}"
    return None


def rendezvous(nodes: Nodes, index: int, key: str, devices: int, per_node: int, timeout_s: float) -> Rendezvous:
    """The rendezvous of the plan's configuration number `index` (same on every node: same command, same plan)."""
    host, _, port = nodes.rdzv_endpoint.rpartition(":")
    rdzv_id = "mgpu-" + hashlib.sha1(f"{key}-{index}".encode()).hexdigest()[:12]
    return Rendezvous(nodes_needed(devices, per_node), f"{host}:{int(port) + 1 + index}", rdzv_id,
                      nodes.node_rank == 0, nodes.local_addr, timeout_s)
