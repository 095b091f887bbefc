"""Running a planned study: each configuration in its own process group, its result handed back as a JSON file,
and every record (ok, failed, timeout, skipped) built and appended here, in the parent, by one helper."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bench.comm import run_count
from bench.explain.goal import Goal
from bench.explain.plausibility import noisy
from bench.records.comm import read_comm
from bench.records.files import COMM_FILE, HANDOFF_DIR, LOGS_DIR, RESULTS_FILE
from bench.records.results import append_record, config_key, make_record, read_records, study_id, variant_label
from bench.run.interference import InterferenceSampler
from bench.run.launch import Outcome, child_command, run_logged
from bench.run.node_schedule import NodeSchedule, NodeScheduleError, Step, bound_s
from bench.run.nodes import Nodes, Rendezvous, nodes_needed, rendezvous
from bench.run.plan import Planned
from bench.run.provenance import collect
from bench.run.sweep_config import SweepConfig
from mgpu_core.cli_args import config_to_argv
from mgpu_core.collectives import CommConfig
from mgpu_core.config import TrainConfig
from mgpu_core.names import DISTRIBUTED_MODES

EPOCH_LINE = re.compile(r"^epoch \d+/\d+ ")
SINGLE_NODE = Nodes(nnodes=1, node_rank=0)
LAUNCHES = ("comm", "train")
"""The steps that start a process tree (the others, "skip" and "done", only record or report)."""


@dataclass
class Sweep:
    sweep: SweepConfig
    goal: Goal
    base: TrainConfig
    """The training settings every configuration shares (mode, devices and seed are set per configuration)."""
    device_type: str
    out: Path
    command_line: list[str]
    nodes: Nodes = SINGLE_NODE
    per_node: int = 1
    """Devices (processes) per node."""
    index: dict[Planned, int] = field(default_factory=dict)
    """Each entry's place in the plan: the same on every node, so it names the entry's rendezvous."""

    def spans(self, entry: Planned) -> int:
        """How many nodes `entry` runs on (1: node 0 alone)."""
        return nodes_needed(entry.devices, self.per_node) if entry.mode in DISTRIBUTED_MODES else 1

    def takes_part(self, entry: Planned) -> bool:
        return self.nodes.node_rank < self.spans(entry)

    def rendezvous(self, entry: Planned, offset: int) -> Rendezvous | None:
        """The c10d rendezvous of a configuration that spans nodes (offset 0: training, 1: its collectives)."""
        if self.spans(entry) == 1:
            return None
        return rendezvous(self.nodes, 2 * self.index[entry] + offset, self.key(entry), entry.devices, self.per_node,
                          self.sweep.timeout)

    @property
    def results(self) -> Path:
        return self.out / RESULTS_FILE

    @property
    def scaling(self) -> str:
        return "strong" if self.sweep.global_batch else "weak"

    def child_config(self, entry: Planned) -> TrainConfig:
        """The configuration one child trains: its mode and devices, its share of the batch, the trial's seed."""
        batch = self.base.batch_size // entry.devices if self.sweep.global_batch else self.base.batch_size
        return self.base.for_mode(entry.mode, dp_gpus=entry.devices if entry.mode == "dp" else 1,
                                  batch_size=max(1, batch), seed=self.base.seed + entry.trial, **dict(entry.variant))

    def variant_label(self, mode: str, variant: tuple[tuple[str, object], ...]) -> str:
        """How a variant of the template reads in tables, legends and file names."""
        return variant_label(self.base.for_mode(mode, **dict(variant)))

    def key(self, entry: Planned) -> str:
        return config_key(self.child_config(entry), entry.devices, entry.trial, self.scaling, self.device_type)

    def study(self, entry: Planned) -> str:
        return study_id(self.child_config(entry), entry.devices, self.scaling, self.device_type)

    def record(self, entry: Planned, status: str, *, result: dict | None = None, error: str | None = None,
               wall_s: float | None = None, interference: dict | None = None) -> dict:
        """Build and append the record of one configuration-trial, whatever its outcome; with the study's design
        (order seed, place in the plan, whether it is the closing baseline) and what else ran meanwhile."""
        cfg = self.child_config(entry)
        record = make_record(cfg=cfg, devices=entry.devices, trial=entry.trial, scaling=self.scaling,
                             device_type=self.device_type, status=status, result=result, error=error, wall_s=wall_s,
                             provenance=collect(cfg.precision, cfg.seed, self.command_line, result, self.spans(entry)),
                             target_val_acc=self.goal.min_val_acc)
        record["design"] = {"order_seed": self.sweep.order_seed, "position": self.index.get(entry),
                            "closing_baseline": entry.trial == self.sweep.trials}
        record["interference"] = interference
        append_record(self.results, record)
        return record

    def launch(self, entry: Planned, on_epoch) -> tuple[Outcome, dict | None]:
        """Train one configuration in a child process tree; (outcome, its RunResult dict or None)."""
        stem = entry.stem
        handoff = self.out / HANDOFF_DIR
        handoff.mkdir(exist_ok=True)
        result_file, failure_file = handoff / f"{stem}.result.json", handoff / f"{stem}.failure.json"
        result_file.unlink(missing_ok=True)  # never mistake an earlier run's file for this one's
        argv = config_to_argv(self.child_config(entry)) + ["--json", str(result_file)]
        meeting = self.rendezvous(entry, 0)
        local = self.per_node if meeting else entry.devices
        cmd = child_command(argv, entry.mode, local, rendezvous=meeting)
        sampler = InterferenceSampler(list(range(local)) if self.device_type == "cuda" else None).start()
        try:
            outcome = run_logged(cmd, self.sweep.timeout,
                                 self.out / LOGS_DIR / f"{stem}.log",
                                 lambda line: on_epoch() if EPOCH_LINE.match(line) else None, failure_file,
                                 self.nodes.child_env() if meeting else None, on_start=sampler.follow)
        finally:
            interference = sampler.stop()
        outcome.interference = interference
        result = None
        if outcome.error is None and self.nodes.node_rank == 0:  # global rank 0, on node 0, hands back the result
            try:
                result = json.loads(result_file.read_text())
            except (OSError, ValueError):
                outcome.error = "exited 0 but handed back no result"
        result_file.unlink(missing_ok=True)
        failure_file.unlink(missing_ok=True)
        return outcome, result

    def comm_due(self, entry: Planned, measured: set[int]) -> bool:
        """Whether the collective benchmark runs before `entry`: once per device count (and not again on --resume),
        before the count's first configuration that communicates; one measurement serves every mode and variant."""
        if (not self.sweep.comm or entry.devices < 2 or entry.mode == "single" or entry.devices in measured):
            return False
        measured.add(entry.devices)
        if any(r.get("study") == self.study(entry) and r["devices"] == entry.devices
               for r in read_comm(self.out / COMM_FILE)):
            tqdm.write(f"collectives x{entry.devices}: measured already")
            return False
        return True

    def measure_comm(self, entry: Planned) -> None:
        comm = CommConfig(max_bytes=self.sweep.comm_max_bytes, timeout=self.sweep.timeout)
        plain = dataclasses.replace(entry, mode="ddp", variant=())  # the collectives do not depend on the variant
        record, error = run_count(self.child_config(plain), comm, entry.devices, self.out, self.command_line,
                                  extra={"study": self.study(entry)}, rendezvous=self.rendezvous(entry, 1),
                                  per_node=self.per_node, record=self.nodes.node_rank == 0,
                                  env=self.nodes.child_env())
        if error or record is None:
            tqdm.write(f"collectives x{entry.devices} {self.device_type}: "
                       + (f"FAILED: {error}" if error else f"took part as node {self.nodes.node_rank}"))
            return
        at_model = {r["op"]: r for r in record["rows"] if r["bytes"] == record["grad_bytes"]}["all_reduce"]
        tqdm.write(f"collectives x{entry.devices} {self.device_type}: all-reduce of the model's gradients "
                   f"{at_model['time_s'] * 1e3:.2f} ms, busbw {at_model['busbw_bytes_per_s'] / 1e9:.2f} GB/s; "
                   f"compute-only step {record['compute_step_s'] * 1e3:.1f} ms")

    def steps(self, entries: list[Planned], done: set[str]) -> list[tuple[str, Planned]]:
        """What node 0 does, in order: ("skip" | "done" | "comm" | "train", entry)."""
        steps, measured = [], set()
        for entry in entries:
            if entry.skip:
                steps.append(("skip", entry))
            elif self.key(entry) in done:
                steps.append(("done", entry))
            else:
                steps += [("comm", entry)] * self.comm_due(entry, measured) + [("train", entry)]
        return steps

    def step_name(self, kind: str, entry: Planned) -> str:
        return ("comm:" if kind == "comm" else "") + self.key(entry)

    def node_steps(self, steps: list[tuple[str, Planned]]) -> list[Step]:
        """The launches that span nodes, each with how long node 0 can take to reach it."""
        spanning, local, after_spanning = [], 0, False
        for kind, entry in steps:
            if kind not in LAUNCHES:
                continue
            if self.spans(entry) == 1:
                local += 1
                continue
            spanning.append(Step(self.step_name(kind, entry), bound_s(local + after_spanning, self.sweep.timeout)))
            local, after_spanning = 0, True
        return spanning

    def run(self, entries: list[Planned], resume: bool) -> None:
        """Run (or skip, or find done) every planned configuration, recording each. Nodes other than 0 take part
        in the configurations that span them and record nothing."""
        self.index = {entry: i for i, entry in enumerate(entries)}
        schedule = NodeSchedule(self.nodes, self.sweep.timeout) if self.nodes.multi else None
        if self.nodes.node_rank:
            return self._take_part(entries, schedule)
        recorded = {r["key"]: r["status"] for r in read_records(self.results)} if resume else {}
        done = {k for k, status in recorded.items() if status == "ok"}
        steps = self.steps(entries, done)
        if schedule:
            schedule.publish(self.node_steps(steps))
        spanned = 0
        todo = sum(kind == "train" for kind, _ in steps)
        print(f"{len(entries)} configurations: {todo} to run, {len(entries) - todo} skipped or done; "
              f"results in {self.results}")
        with tqdm(total=todo * self.base.epochs, unit="epoch", dynamic_ncols=True) as bar:
            for kind, entry in steps:
                name = f"{entry.label} {self.device_type} trial {entry.trial}"
                if schedule and kind in LAUNCHES and self.spans(entry) > 1:
                    schedule.go(spanned)
                    spanned += 1
                if kind == "skip":
                    if recorded.get(self.key(entry)) != "skipped":
                        self.record(entry, "skipped", error=entry.skip)
                        tqdm.write(f"{name}: skipped ({entry.skip})")
                elif kind == "done":
                    tqdm.write(f"{name}: done already (--resume)")
                elif kind == "comm":
                    bar.set_description(f"collectives x{entry.devices}")
                    self.measure_comm(entry)
                else:
                    bar.set_description(name)
                    seen = bar.n
                    outcome, result = self.launch(entry, lambda: bar.update(1))
                    bar.update(seen + self.base.epochs - bar.n)  # a failed configuration's unfinished epochs
                    tqdm.write(f"{name}: {self._finish(entry, outcome, result)}")

    def _take_part(self, entries: list[Planned], schedule: NodeSchedule) -> None:
        """Follow node 0's list of launches that span nodes; NodeScheduleError where node 0 is lost or its study
        differs from this node's."""
        mine = {self.step_name(kind, e): (kind, e) for e in entries if e.skip is None and self.spans(e) > 1
                for kind in LAUNCHES}
        steps = schedule.steps()
        unknown = [s.name for s in steps if s.name not in mine]
        if unknown:
            raise NodeScheduleError(f"node 0 runs {unknown[0]}, which this node's plan lacks: run the same command, "
                                    "with the same flags, on every node")
        print(f"node {self.nodes.node_rank}: following node 0 through {len(steps)} launches that span nodes "
              "(node 0 records them)", flush=True)
        for n, step in enumerate(steps):
            schedule.wait_go(n, step)  # also before launches without this node: the next bound counts from here
            kind, entry = mine[step.name]
            if not self.takes_part(entry):
                continue
            if kind == "comm":
                self.measure_comm(entry)
                continue
            outcome, _ = self.launch(entry, lambda: None)
            print(f"{entry.label} trial {entry.trial}: " + (f"FAILED here: {outcome.error}" if outcome.error
                                                            else "done here"), flush=True)

    def _finish(self, entry: Planned, outcome: Outcome, result: dict | None) -> str:
        """Record a launched configuration; the progress line that says how it went."""
        if outcome.error is not None:
            status = "timeout" if outcome.timed_out else "failed"
            self.record(entry, status, error=outcome.error, wall_s=outcome.wall_s, interference=outcome.interference)
            return f"{'timeout' if outcome.timed_out else 'FAILED'}: {outcome.error}"
        record = self.record(entry, "ok", result=result, wall_s=outcome.wall_s, interference=outcome.interference)
        noisy_line = noisy(outcome.interference)
        epoch_s = statistics.median(record["epoch_times_s"])
        samples = statistics.median(v * t for v, t in zip(record["samples_per_s"], record["epoch_times_s"],
                                                          strict=True))
        return (f"ok  epoch {epoch_s:.2f} s  {samples / epoch_s:,.0f} samples/s  val acc {record['val_acc']:.2%}  "
                f"({outcome.wall_s:.0f} s with start-up)" + (f"  {noisy_line}" if noisy_line else ""))
