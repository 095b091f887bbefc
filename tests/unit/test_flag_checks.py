"""Flags that would silently do nothing, and configurations the trainer refuses: refused in one line, or skipped by
the plan with the reason (issue 21, kinds 2 and 8)."""

import argparse

import pytest

from bench.run.axes import Axes
from bench.run.flag_checks import template, thread_notice, unused_flag
from bench.run.plan import PlanInput, plan
from mgpu_core.cli_args import add_config_arguments
from mgpu_core.config import ConfigError, TrainConfig


@pytest.mark.parametrize("train, axes, modes, flag", [
    ({}, Axes(fsdp_wrap=("model",)), ("single", "dp", "ddp"), "--fsdp-wrap"),
    ({}, Axes(ddp_comm_hook=("bf16",)), ("fsdp",), "--ddp-comm-hook"),
    ({"powersgd_rank": 4}, Axes(), ("single", "dp"), "--powersgd-rank"),
    ({}, Axes(grad_accum=(2,)), ("single",), "--grad-accum"),  # another of the kind
])
def test_a_flag_for_modes_not_swept_is_refused_in_one_line(train, axes, modes, flag):
    line = unused_flag(train, axes, modes)
    assert line.startswith(flag) and "\n" not in line and "--modes" in line


def test_flags_for_a_swept_mode_pass():
    assert unused_flag({"powersgd_rank": 4}, Axes(fsdp_wrap=("model",)), ("ddp", "fsdp")) is None


def test_the_template_takes_a_ddp_only_setting_when_ddp_is_swept():
    base = template({"powersgd_rank": 4}, ("single", "dp", "ddp"))
    assert base.mode == "ddp" and base.powersgd_rank == 4
    assert base.for_mode("single").powersgd_rank == 2  # other modes get their default back
    assert template({}, ("single", "ddp")).mode == "single"
    assert template({"compile": True}, ("dp",)).mode == "single"  # the plan then skips dp, with the reason
    with pytest.raises(ConfigError, match="batch_size"):
        template({"batch_size": 0}, ("single", "ddp"))


def test_static_graph_with_accumulation_is_refused():
    with pytest.raises(ConfigError, match="143580"):
        TrainConfig(mode="ddp", ddp_static_graph=True, grad_accum=2)
    TrainConfig(mode="ddp", ddp_static_graph=True, grad_accum=1)
    TrainConfig(mode="ddp", grad_accum=2)


@pytest.mark.parametrize("base, modes, axes, refused", [
    (TrainConfig(compile=True), ("single", "dp", "ddp"), Axes(), {"dp"}),
    (TrainConfig(compile=True), ("single", "ddp", "fsdp"), Axes(), {"fsdp"}),
    (TrainConfig(device="cpu"), ("single", "dp", "ddp"), Axes(), {"dp"}),
    (TrainConfig(), ("ddp",), Axes(grad_accum=(1, 2), ddp_static_graph=("off", "on")), {"ddp accum 2 static"}),
])
def test_the_plan_skips_what_the_trainer_refuses_with_the_reason(base, modes, axes, refused):
    cells = plan(PlanInput(base, "cuda", (1, 2), modes, axes=axes, visible_gpus=2, cores=2))
    skipped = {c for c in cells if c.skip}
    assert skipped and all(c.skip.startswith("refused: ") for c in skipped)
    for c in cells:
        words = f"{c.mode} accum {dict(c.variant).get('grad_accum', 1)} " \
                f"{'static' if dict(c.variant).get('ddp_static_graph') else ''}"
        assert bool(c.skip) == any(words.startswith(r) for r in refused), (c, words)
        assert c.key and c.study_id  # refused or not: its record has a key and a study


def test_help_with_a_percent_sign_is_not_garbled():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    assert ">= 80% at global batch" in " ".join(parser.format_help().split())


def test_threads_above_the_cores_is_a_notice():
    assert "exceeds" in thread_notice(10_000, 1)
    assert thread_notice(None, 4) is None and thread_notice(1, 1) is None
