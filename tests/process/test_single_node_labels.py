"""Nodes are counted only when --nnodes says so (issue 21, kind 10): a single-node study with fewer processes per
node than devices is one node, in its rendezvous, labels and provenance."""

from pathlib import Path

import pytest

from bench.explain.goal import Goal
from bench.run.nodes import Nodes
from bench.run.plan import Planned
from bench.run.sweep import Sweep
from bench.run.sweep_config import SweepConfig
from mgpu_core.config import TrainConfig


@pytest.mark.parametrize("per_node, devices", [(2, 4), (1, 2), (3, 8)])
def test_a_single_node_study_spans_one_node_whatever_the_processes_per_node(per_node, devices):
    runner = Sweep(SweepConfig(), Goal(), TrainConfig(), "cpu", Path("/nonexistent"), [], Nodes(nnodes=1),
                   per_node)
    entry = Planned("ddp", devices, 0)
    runner.index = {entry: 0}
    assert runner.spans(entry) == 1 and runner.rendezvous(entry, 0) is None


def test_two_nodes_span_when_nnodes_says_so():
    nodes = Nodes(nnodes=2, node_rank=0, rdzv_endpoint="127.0.0.1:29400")
    runner = Sweep(SweepConfig(), Goal(), TrainConfig(), "cpu", Path("/nonexistent"), [], nodes, 2)
    entry = Planned("ddp", 4, 0)
    runner.index = {entry: 0}
    assert runner.spans(entry) == 2 and runner.rendezvous(entry, 0).nnodes == 2
