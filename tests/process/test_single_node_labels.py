"""Nodes are counted only when --nnodes says so (issue 21, kind 10): a single-node study with fewer processes per
node than devices is one node, in its rendezvous, labels and provenance."""

from pathlib import Path

import pytest

from bench.explain.goal import Goal
from bench.run.nodes import Nodes
from bench.run.plan import PlanInput, make_cell
from bench.run.sweep import Sweep
from bench.run.sweep_config import SweepConfig
from mgpu_core.config import TrainConfig


@pytest.mark.parametrize("per_node, devices", [(2, 4), (1, 2), (3, 8)])
def test_a_single_node_study_spans_one_node_whatever_the_processes_per_node(per_node, devices):
    runner = Sweep(SweepConfig(), Goal(), TrainConfig(), "cpu", Path("/nonexistent"), [], Nodes(nnodes=1),
                   per_node)
    cell = make_cell(PlanInput(TrainConfig(), "cpu", (devices,), ("ddp",), cores=devices, per_node=per_node), "ddp",
                     devices, 0)
    runner.index = {cell.key: 0}
    assert cell.nodes == 1 and runner.rendezvous(cell, 0) is None


def test_two_nodes_span_when_nnodes_says_so():
    nodes = Nodes(nnodes=2, node_rank=0, rdzv_endpoint="127.0.0.1:29400")
    runner = Sweep(SweepConfig(), Goal(), TrainConfig(), "cpu", Path("/nonexistent"), [], nodes, 2)
    cell = make_cell(PlanInput(TrainConfig(), "cpu", (4,), ("ddp",), cores=2, nnodes=2, per_node=2), "ddp", 4, 0)
    runner.index = {cell.key: 0}
    assert cell.nodes == 2 and runner.rendezvous(cell, 0).nnodes == 2


@pytest.mark.parametrize("argv, skipped", [
    (["--compile", "--modes", "single,dp,ddp,fsdp"], {"dp": "compile", "fsdp": "compile"}),
    (["--device", "cpu", "--modes", "single,dp,ddp"], {"dp": "CUDA"}),
    (["--ddp-static-graph", "on", "--grad-accum", "1,2", "--modes", "ddp"], {"ddp accum 2 static-graph": "143580"}),
])
def test_the_sweeps_plan_skips_what_the_trainer_refuses(argv, skipped):
    """The issue's inputs through the sweep's own parse and plan (no traceback from plan())."""
    from bench.run.plan import plan
    from bench.scaling import parse
    sweep, goal, axes, nodes, base, device_type, _ = parse([*argv, "--no-comm"])
    # as if 2 GPUs were visible: only the trainer's refusals skip
    cells = plan(PlanInput(base, "cuda", (1, 2), sweep.modes, axes=axes, visible_gpus=2, cores=2, per_node=2))
    for cell in cells:
        reason = next((why for label, why in skipped.items() if cell.label.startswith(label + " ")), None)
        assert (cell.skip is None) == (reason is None) and (reason is None or reason in cell.skip), cell
        assert cell.key and cell.study_id  # refused or not: its record has a key and a study
