"""One study across two real hosts: two network namespaces joined by a veth pair, each with its own address, on
which the host name does not resolve. Skipped (with the reason) where namespaces cannot be made."""

import datetime
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import TRAIN_TINY, sweep

from bench.explain.goal import Goal
from bench.records.results import read_records
from bench.run.node_schedule import Launch, NodeSchedule, NodeScheduleError
from bench.run.nodes import Nodes, rendezvous, span_skip
from bench.run.plan import PlanInput, plan
from bench.run.sweep import Sweep
from bench.run.sweep_config import SweepConfig
from mgpu_core.config import TrainConfig

PORT = 29400


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _pids(ns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", ns).stdout.split()]


def _end_everything_in(ns: str) -> None:
    for pid in _pids(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def two_hosts():
    """[(namespace, address), (namespace, address)], removed afterwards whatever happened."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    tag = f"mg{os.getpid() % 10000}{random.randrange(100)}"
    names, link = [f"{tag}a", f"{tag}b"], [f"{tag}x", f"{tag}y"]
    subnet = f"10.{random.randrange(64, 250)}.{random.randrange(1, 250)}"
    hosts = [(names[0], f"{subnet}.1"), (names[1], f"{subnet}.2")]
    try:
        steps = [("netns", "add", names[0]), ("netns", "add", names[1]),
                 ("link", "add", link[0], "type", "veth", "peer", "name", link[1]),
                 ("link", "set", link[0], "netns", names[0]), ("link", "set", link[1], "netns", names[1])]
        for (ns, address), dev in zip(hosts, link, strict=True):
            steps += [("-n", ns, "addr", "add", f"{address}/24", "dev", dev), ("-n", ns, "link", "set", dev, "up"),
                      ("-n", ns, "link", "set", "lo", "up")]
        for step in steps:
            done = _ip(*step)
            if done.returncode:
                pytest.skip(f"cannot make network namespaces here: ip {' '.join(step)}: {done.stderr.strip()}")
        yield hosts
    finally:
        for ns in names:
            _end_everything_in(ns)
            _ip("netns", "del", ns)  # takes its end of the veth pair with it
        _ip("link", "del", link[0])


def node_command(hosts, rank: int, out, *args: str) -> list[str]:
    ns, address = hosts[rank]
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.scaling", "--out", str(out), "--nnodes", "2",
            "--node-rank", str(rank), "--rdzv-endpoint", f"{hosts[0][1]}:{PORT}", "--local-addr", address,
            "--nproc-per-node", "1", *args]


def test_plan_and_rendezvous_across_nodes():
    entries = plan(PlanInput(TrainConfig(), "cpu", (1, 2, 4), ("single", "ddp"), cores=1, nnodes=2, per_node=1))
    assert {e.label: e.skip for e in entries} == {"single x1": None, "ddp x1": None, "ddp x2": None,
                                                 "ddp x4": "4 devices need 4 nodes of 1; 2 taking part"}
    assert span_skip(3, 2, 2) == "3 devices do not fill whole nodes of 2"
    nodes = Nodes(nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400", local_addr="10.0.0.2")
    meeting = rendezvous(nodes, 3, "key", devices=4, per_node=2, timeout_s=60)
    assert meeting.endpoint == "10.0.0.1:29404" and meeting.nnodes == 2 and not meeting.is_host
    assert meeting.rdzv_id == rendezvous(Nodes(2, 0, "10.0.0.1:29400"), 3, "key", 4, 2, 60).rdzv_id
    assert "--local-addr" in meeting.torchrun_flags(2) and "is_host=0" in " ".join(meeting.torchrun_flags(2))
    with pytest.raises(ValueError, match="rdzv_endpoint: HOST:PORT of node 0 is needed"):
        Nodes(nnodes=2, node_rank=0, rdzv_endpoint=None)


def _runner(tmp_path, node_rank: int, endpoint: str, trials: int = 2) -> tuple[Sweep, list]:
    base = TrainConfig(dataset="synthetic")
    runner = Sweep(SweepConfig(trials=trials, timeout=100), Goal(), base, "cpu", tmp_path, [],
                   Nodes(2, node_rank, endpoint), per_node=1)
    entries = plan(PlanInput(base, "cpu", (1, 2), ("single", "ddp"), trials, cores=1, nnodes=2, per_node=1))
    runner.index = {entry.key: i for i, entry in enumerate(entries)}
    return runner, entries


def test_node_zero_lists_what_spans_nodes_with_how_long_it_may_take_to_get_there(tmp_path):
    runner, entries = _runner(tmp_path, 0, "10.0.0.1:29400")
    actions = runner.actions(entries, done={entries[0].key})  # single x1 trial 0 done already (--resume)
    assert [(kind, e.label, e.trial) for kind, e in actions] == [
        ("done", "single x1", 0), ("train", "ddp x1", 0), ("comm", "ddp x2", 0), ("train", "ddp x2", 0),
        ("train", "single x1", 1), ("train", "ddp x1", 1), ("train", "ddp x2", 1)]
    ddp2 = [e for e in entries if e.label == "ddp x2"]
    # each launch of node 0's own ends within --timeout (100 s) + 30 s; a minute of start-up on top
    assert runner.spanning_launches(actions) == [Launch("comm:" + ddp2[0].key, 1 * 130 + 60),
                                                 Launch(ddp2[0].key, 1 * 130 + 60),  # after the collectives
                                                 Launch(ddp2[1].key, 3 * 130 + 60)]  # ddp x2, single, ddp x1


def test_the_other_nodes_follow_node_zero_and_stop_in_one_line_when_it_is_gone(tmp_path):
    host = NodeSchedule(Nodes(2, 0, "127.0.0.1:0"), timeout_s=30)  # port 0: the OS picks
    endpoint = f"127.0.0.1:{host.store.port}"
    runner, entries = _runner(tmp_path, 1, endpoint)
    follower = NodeSchedule(runner.nodes, timeout_s=30)
    host.publish([Launch("comm:x", 5.0), Launch("y", 0.5)])
    assert follower.launches() == [Launch("comm:x", 5.0), Launch("y", 0.5)]
    host.go(0)
    follower.wait_go(0, Launch("comm:x", 5.0))
    with pytest.raises(NodeScheduleError, match=r"node 0 did not start y within 0 s \(lost\?\)"):
        follower.wait_go(1, Launch("y", 0.5))
    with pytest.raises(NodeScheduleError, match="which this node's plan lacks: run the same command"):
        runner._take_part(entries, follower)  # node 0's list names launches this node's plan does not have
    del host  # node 0 gone: the wait ends now, not when its bound has passed
    started = time.monotonic()
    with pytest.raises(NodeScheduleError, match="node 0 did not start y within 600 s"):
        follower.wait_go(1, Launch("y", 600))
    assert time.monotonic() - started < 60
    started = time.monotonic()
    with pytest.raises(NodeScheduleError, match=f"cannot reach node 0's study store at {endpoint}: connection "
                                                "refused for 1 s"):
        NodeSchedule(runner.nodes, timeout_s=1)
    assert time.monotonic() - started < 10


def _study(hosts, tmp_path, *args: str) -> list[str]:
    """The same sweep on both hosts; [node 1's output, node 0's output], both having exited 0."""
    nodes = [subprocess.Popen(node_command(hosts, rank, tmp_path / f"node{rank}", *args), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for rank in (1, 0)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    return outputs


@pytest.mark.slow
def test_a_two_node_study_matches_one_host(two_hosts, tmp_path):
    args = ["--gpus", "1,2", "--modes", "single,ddp", *TRAIN_TINY, "--comm-max-bytes", "65536", "--timeout", "240"]
    outputs = _study(two_hosts, tmp_path, *args)
    results = tmp_path / "node0" / "results.jsonl"
    records = {(r["mode"], r["devices"]): r for r in read_records(results)}
    assert not (tmp_path / "node1" / "results.jsonl").exists()  # node 0 writes the records
    ddp2 = records["ddp", 2]
    assert ddp2["status"] == "ok" and ddp2["provenance"]["nodes"] == 2 and ddp2["result"]["world_size"] == 2
    assert records["single", 1]["provenance"]["nodes"] == 1
    assert "| 2 cpu, 2 nodes | ddp | ok" in (tmp_path / "node0" / "summary.md").read_text()  # "; noisy" if busy
    comm = [line for line in (tmp_path / "node0" / "comm.jsonl").read_text().splitlines()]
    assert len(comm) == 1 and '"nodes": 2' in comm[0]  # the collectives measured between the hosts

    one_host = sweep(tmp_path / "one", "--gpus", "2", "--modes", "ddp", *TRAIN_TINY, "--no-comm")
    assert one_host.returncode == 0, one_host.stderr[-2000:]
    [local] = read_records(tmp_path / "one" / "results.jsonl")
    assert local["provenance"]["nodes"] == 1
    assert ddp2["train_loss"] == pytest.approx(local["train_loss"], rel=1e-5)  # the same training, two hosts
    assert ddp2["val_acc"] == local["val_acc"]

    # --resume across nodes: node 0 decides what is left (ddp x2, its record taken away) and node 1 follows
    kept = [line for line in results.read_text().splitlines() if '"devices": 2' not in line]
    results.write_text("\n".join(kept) + "\n")
    outputs = _study(two_hosts, tmp_path, *args, "--resume")
    assert "following node 0 through 1 launch spanning nodes" in outputs[0]
    assert "ddp x2 trial 0: done here" in outputs[0]
    assert "single x1 cpu trial 0: done already" in outputs[1]
    assert [(r["mode"], r["devices"], r["status"]) for r in read_records(results)][-1] == ("ddp", 2, "ok")


@pytest.mark.slow
def test_a_node_lost_mid_run_is_recorded_and_the_study_goes_on(two_hosts, tmp_path):
    """The configuration that loses a node ends by itself, at once: not cut by --timeout (it would be recorded as
    timeout), nor after the collective timeout (--dist-timeout-s, ten times longer, so a hang would be obvious).
    The bounds come from these settings, not from how fast this machine trains."""
    timeout_s, dist_timeout_s = 60, 600  # --timeout also bounds the rendezvous nobody comes to (ddp x2 trial 1)
    args = ["--gpus", "1,2", "--modes", "single,ddp", *TRAIN_TINY, "--synthetic-train-size", "16384", "--no-comm",
            "--trials", "2", "--timeout", str(timeout_s), "--dist-timeout-s", str(dist_timeout_s),
            "--no-closing-baseline"]
    node1_log = tmp_path / "node1.out"
    node1 = subprocess.Popen(node_command(two_hosts, 1, tmp_path / "node1", *args), stdout=node1_log.open("w"),
                             stderr=subprocess.STDOUT)
    node0 = subprocess.Popen(node_command(two_hosts, 0, tmp_path / "node0", *args), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = tmp_path / "node0" / "logs" / "ddp-x2-trial0.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and "warm-up" in log.read_text()):
        assert time.monotonic() < deadline and node0.poll() is None, (node0.communicate()[0][-3000:],
                                                                      node1_log.read_text()[-3000:])
        time.sleep(0.2)
    lost_at = datetime.datetime.now(datetime.UTC)
    _end_everything_in(two_hosts[1][0])  # the second host goes away mid-epoch
    node1.wait()
    output = node0.communicate(timeout=600)[0]
    assert node0.returncode == 0, output[-3000:]
    records = read_records(tmp_path / "node0" / "results.jsonl")
    rows = [(r["mode"], r["trial"], r["status"], r["error"], r["wall_s"])
            for r in records if r["devices"] != 1 or r["mode"] == "single"]
    assert {r["provenance"]["nodes"] for r in records if r["devices"] == 2} == {2}  # failed, yet planned on 2
    lost = next(r for r in records if (r["mode"], r["devices"], r["trial"]) == ("ddp", 2, 0))
    assert lost["status"] == "failed" and lost["error"] and "\n" not in lost["error"], rows  # not "timeout"
    assert lost["wall_s"] < timeout_s < dist_timeout_s, rows
    recorded_at = datetime.datetime.fromisoformat(lost["provenance"]["timestamp"])  # whole seconds
    assert (recorded_at - lost_at).total_seconds() < timeout_s, (lost_at, recorded_at)
    assert [r[:3] for r in rows if r[0] == "single"] == [("single", 0, "ok"), ("single", 1, "ok")]  # went on
    assert next(r for r in rows if r[:2] == ("ddp", 1))[2] in ("failed", "timeout")  # nobody to meet
    assert _pids(two_hosts[0][0]) == [] and _pids(two_hosts[1][0]) == []


@pytest.mark.parametrize("endpoint, message", [("192.0.2.1:29400", "is not an address of this host"),  # TEST-NET-1
                                               ("no-such-host.invalid:29400", "does not resolve")])
def test_node_zero_with_an_endpoint_elsewhere_fails_at_once(endpoint, message):
    started = time.monotonic()
    with pytest.raises(NodeScheduleError, match=message):
        NodeSchedule(Nodes(2, 0, endpoint), timeout_s=600)
    assert time.monotonic() - started < 15


def test_a_refused_endpoint_fails_after_a_short_grace_not_the_timeout(monkeypatch):
    from bench.run import node_schedule
    monkeypatch.setattr(node_schedule, "CONNECT_GRACE_S", 2.0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(NodeScheduleError, match="connection refused for 2 s"):
        NodeSchedule(Nodes(2, 1, f"127.0.0.1:{port}"), timeout_s=600)
    assert time.monotonic() - started < 10


def test_a_result_written_on_another_node_comes_home():
    host = NodeSchedule(Nodes(2, 0, "127.0.0.1:0"), timeout_s=30)
    follower = NodeSchedule(Nodes(2, 1, f"127.0.0.1:{host.store.port}"), timeout_s=30)
    follower.hand_over("key-1", '{"ok": 1}')
    assert host.take_over("key-1") == '{"ok": 1}'


def _connected(pid: int, port: int) -> bool:
    import psutil
    try:
        return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
                   for c in psutil.Process(pid).net_connections())
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_waiting_node_ends_at_once_on_a_signal(tmp_path, signum, code):
    host = NodeSchedule(Nodes(2, 0, "127.0.0.1:0"), timeout_s=600)  # node 0 holds the store, publishes nothing
    proc = subprocess.Popen([sys.executable, "-m", "bench.scaling", "--out", str(tmp_path), "--nnodes", "2",
                             "--node-rank", "1", "--rdzv-endpoint", f"127.0.0.1:{host.store.port}", "--gpus", "2",
                             "--modes", "ddp", *TRAIN_TINY, "--no-comm"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _connected(proc.pid, host.store.port):  # node 1 has reached the store and waits for the plan
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert time.monotonic() - sent < 10 and "Traceback" not in stderr
