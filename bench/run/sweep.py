"""Running a planned study: each configuration in its own process group, its result handed back as a JSON file,
and every record (ok, failed, timeout, skipped) built and appended here, in the parent, by one helper."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bench.comm import run_count
from bench.explain.goal import Goal
from bench.explain.plausibility import noisy
from bench.records.comm import read_comm
from bench.records.files import COMM_FILE, RESULTS_FILE
from bench.records.results import append_record, make_record, read_records
from bench.records.units import gb_per_s, ms, plural
from bench.run.handoff import Relay, run_child
from bench.run.interference import InterferenceSampler
from bench.run.launch import Outcome, child_command
from bench.run.node_schedule import Launch, NodeSchedule, NodeScheduleError, bound_s
from bench.run.nodes import Nodes, Rendezvous, rendezvous
from bench.run.plan import Cell
from bench.run.prediction import prediction_before_run
from bench.run.provenance import collect
from bench.run.sweep_config import SweepConfig
from mgpu_core.cli_args import config_to_argv
from mgpu_core.collectives import CommConfig
from mgpu_core.config import TrainConfig

EPOCH_LINE = re.compile(r"^epoch \d+/\d+ ")
SINGLE_NODE = Nodes(nnodes=1, node_rank=0)
LAUNCHES = ("comm", "train")
"""The actions that launch a process tree (the others, "skip" and "done", only record or report)."""


@dataclass
class Sweep:
    sweep: SweepConfig
    goal: Goal
    base: TrainConfig
    """The training settings every configuration shares (each Cell holds the configuration its child trains)."""
    device_type: str
    out: Path
    command_line: list[str]
    nodes: Nodes = SINGLE_NODE
    per_node: int = 1
    """Devices (processes) per node."""
    index: dict[str, int] = field(default_factory=dict)
    """Each cell's place in the plan, by key: the same on every node, so it names the cell's rendezvous."""

    schedule: NodeSchedule | None = None
    """Node 0's schedule (several nodes only): also how a result written on another node comes home."""

    def takes_part(self, cell: Cell) -> bool:
        return self.nodes.node_rank < cell.nodes

    def rendezvous(self, cell: Cell, offset: int) -> Rendezvous | None:
        """The c10d rendezvous of a configuration that spans nodes (offset 0: training, 1: its collectives)."""
        if cell.nodes == 1:
            return None
        return rendezvous(self.nodes, 2 * self.index[cell.key] + offset, cell.key, cell.devices, self.per_node,
                          self.sweep.timeout)

    @property
    def results(self) -> Path:
        return self.out / RESULTS_FILE

    def record(self, cell: Cell, status: str, *, result: dict | None = None, error: str | None = None,
               wall_s: float | None = None, prediction: dict | None = None,
               interference: dict | None = None) -> dict:
        """Build and append the record of one configuration-trial, whatever its outcome; with the study's design
        (order seed, place in the plan, whether it is the closing baseline) and what else ran meanwhile."""
        cfg = cell.config
        record = make_record(cfg=cfg, devices=cell.devices, trial=cell.trial, scaling=self.sweep.scaling,
                             device_type=self.device_type, status=status, result=result, error=error, wall_s=wall_s,
                             provenance=collect(cfg.precision, cfg.seed, self.command_line, result, cell.nodes),
                             target_val_acc=self.goal.min_val_acc, prediction=prediction)
        record["design"] = {"order_seed": self.sweep.order_seed, "position": self.index.get(cell.key),
                            "closing_baseline": cell.trial == self.sweep.trials}
        record["interference"] = interference
        append_record(self.results, record)
        return record

    def launch(self, cell: Cell, on_epoch) -> tuple[Outcome, dict | None]:
        """Train one configuration in a child process tree, sampling what else runs meanwhile
        (bench.run.interference, on outcome.interference); (outcome, its RunResult dict or None). Node 0 records:
        global rank 0 hands back the result, from whichever node it ran on."""
        meeting = self.rendezvous(cell, 0)
        local = self.per_node if meeting else cell.devices
        sampler = InterferenceSampler(list(range(local)) if self.device_type == "cuda" else None).start()
        try:
            outcome, result = run_child(
                self.out, cell.stem,
                lambda flags: child_command(config_to_argv(cell.config) + flags, cell.mode, local,
                                            rendezvous=meeting),
                self.sweep.timeout, on_line=lambda line: on_epoch() if EPOCH_LINE.match(line) else None,
                env=self.nodes.child_env() if meeting else None, read_result=self.nodes.node_rank == 0,
                relay=self.relay(self.launch_name("train", cell)) if meeting else None, on_start=sampler.follow)
        finally:
            interference = sampler.stop()
        outcome.interference = interference
        return outcome, result

    def relay(self, name: str) -> Relay | None:
        """How launch `name`'s result comes home to node 0 through its study store (several nodes only)."""
        if self.schedule is None:
            return None
        return Relay(take_over=lambda: self.schedule.take_over(name),
                     hand_over=lambda text: self.schedule.hand_over(name, text))

    def comm_due(self, cell: Cell, measured: set[int]) -> bool:
        """Whether the collective benchmark runs before `cell`: once per device count (and not again on --resume),
        before the count's first configuration that communicates; one measurement serves every mode and variant."""
        if (not self.sweep.comm or cell.devices < 2 or cell.mode == "single" or cell.devices in measured):
            return False
        measured.add(cell.devices)
        if any(r.get("study") == cell.study_id and r["devices"] == cell.devices
               for r in read_comm(self.out / COMM_FILE)):
            tqdm.write(f"collectives x{cell.devices}: measured already")
            return False
        return True

    def measure_comm(self, cell: Cell) -> None:
        comm = CommConfig(max_bytes=self.sweep.comm_max_bytes, timeout=self.sweep.timeout)
        # the collectives do not depend on the mode or variant: measured as plain ddp of the cell's batch and seed
        meeting = self.rendezvous(cell, 1)
        plain = self.base.for_mode("ddp", dp_gpus=1, batch_size=cell.config.batch_size, seed=cell.config.seed)
        record, error = run_count(plain, comm, cell.devices, self.out, self.command_line,
                                  extra={"study": cell.study_id}, rendezvous=meeting,
                                  per_node=self.per_node, record=self.nodes.node_rank == 0,
                                  env=self.nodes.child_env(),
                                  relay=self.relay(self.launch_name("comm", cell)) if meeting else None)
        if error or record is None:
            tqdm.write(f"collectives x{cell.devices} {self.device_type}: "
                       + (f"FAILED: {error}" if error else f"took part as node {self.nodes.node_rank}"))
            return
        at_model = {r["op"]: r for r in record["rows"] if r["bytes"] == record["grad_bytes"]}["all_reduce"]
        tqdm.write(f"collectives x{cell.devices} {self.device_type}: all-reduce of the model's gradients "
                   f"{ms(at_model['time_s']):.2f} ms, busbw {gb_per_s(at_model['busbw_bytes_per_s']):.2f} GB/s; "
                   f"compute-only step {ms(record['compute_step_s']):.1f} ms")

    def actions(self, cells: list[Cell], done: set[str]) -> list[tuple[str, Cell]]:
        """What node 0 does, in order: ("skip" | "done" | "comm" | "train", cell)."""
        actions, measured = [], set()
        for cell in cells:
            if cell.skip:
                actions.append(("skip", cell))
            elif cell.key in done:
                actions.append(("done", cell))
            else:
                actions += [("comm", cell)] * self.comm_due(cell, measured) + [("train", cell)]
        return actions

    @staticmethod
    def launch_name(kind: str, cell: Cell) -> str:
        return ("comm:" if kind == "comm" else "") + cell.key

    def spanning_launches(self, actions: list[tuple[str, Cell]]) -> list[Launch]:
        """The launches that span nodes, each with how long node 0 can take to reach it."""
        spanning, local, after_spanning = [], 0, False
        for kind, cell in actions:
            if kind not in LAUNCHES:
                continue
            if cell.nodes == 1:
                local += 1
                continue
            spanning.append(Launch(self.launch_name(kind, cell), bound_s(local + after_spanning, self.sweep.timeout)))
            local, after_spanning = 0, True
        return spanning

    def run(self, cells: list[Cell], resume: bool) -> tuple[int, int]:
        """Run (or skip, or find done) every planned configuration, recording each; (launched, ok) on node 0.
        Nodes other than 0 take part in the configurations that span them and record nothing ((0, 0))."""
        self.index = {cell.key: i for i, cell in enumerate(cells)}
        schedule = self.schedule = NodeSchedule(self.nodes, self.sweep.timeout) if self.nodes.multi else None
        if self.nodes.node_rank:
            self._take_part(cells, schedule)
            return 0, 0
        recorded = {r["key"]: r["status"] for r in read_records(self.results)} if resume else {}
        done = {k for k, status in recorded.items() if status == "ok"}
        actions = self.actions(cells, done)
        if schedule:
            schedule.publish(self.spanning_launches(actions))
        spanned = launched = ok = 0
        todo = sum(kind == "train" for kind, _ in actions)
        print(f"{plural(len(cells), 'configuration')}: {todo} to run, {len(cells) - todo} skipped or done; "
              f"results in {self.results}")
        with tqdm(total=todo * self.base.epochs, unit="epoch", dynamic_ncols=True) as bar:
            for kind, cell in actions:
                name = f"{cell.label} {self.device_type} trial {cell.trial}"
                if schedule and kind in LAUNCHES and cell.nodes > 1:
                    schedule.go(spanned)
                    spanned += 1
                if kind == "skip":
                    if recorded.get(cell.key) != "skipped":
                        self.record(cell, "skipped", error=cell.skip)
                        tqdm.write(f"{name}: skipped ({cell.skip})")
                elif kind == "done":
                    tqdm.write(f"{name}: done already (--resume)")
                elif kind == "comm":
                    bar.set_description(f"collectives x{cell.devices}")
                    self.measure_comm(cell)
                else:
                    bar.set_description(name)
                    seen = bar.n
                    prediction = self.predict(cell)  # before it runs, from what was measured before
                    outcome, result = self.launch(cell, lambda: bar.update(1))
                    bar.update(seen + self.base.epochs - bar.n)  # a failed configuration's unfinished epochs
                    tqdm.write(f"{name}: {self._finish(cell, outcome, result, prediction)}")
                    launched += 1
                    ok += outcome.error is None
        return launched, ok

    def _take_part(self, cells: list[Cell], schedule: NodeSchedule) -> None:
        """Follow node 0's list of launches that span nodes; NodeScheduleError where node 0 is lost or its study
        differs from this node's."""
        mine = {self.launch_name(kind, c): (kind, c) for c in cells if c.skip is None and c.nodes > 1
                for kind in LAUNCHES}
        launches = schedule.launches()
        unknown = [s.name for s in launches if s.name not in mine]
        if unknown:
            raise NodeScheduleError(f"node 0 runs {unknown[0]}, which this node's plan lacks: run the same command, "
                                    "with the same flags, on every node")
        print(f"node {self.nodes.node_rank}: following node 0 through "
              f"{plural(len(launches), 'launch', 'launches')} spanning nodes (node 0 records them)", flush=True)
        for n, launch in enumerate(launches):
            schedule.wait_go(n, launch)  # also before launches without this node: the next bound counts from here
            kind, cell = mine[launch.name]
            if not self.takes_part(cell):
                continue
            if kind == "comm":
                self.measure_comm(cell)
                continue
            outcome, _ = self.launch(cell, lambda: None)
            print(f"{cell.label} trial {cell.trial}: " + (f"FAILED here: {outcome.error}" if outcome.error
                                                          else "done here"), flush=True)

    def predict(self, cell: Cell) -> dict | None:
        """The point prediction of `cell` from the study's records so far (bench.run.prediction)."""
        return prediction_before_run(self.out, cell.study_id, cell.config, cell.devices, self.base.batch_size)

    def _finish(self, cell: Cell, outcome: Outcome, result: dict | None, prediction: dict | None = None) -> str:
        """Record a launched configuration; the progress line that says how it went."""
        if outcome.error is not None:
            status = "timeout" if outcome.timed_out else "failed"
            self.record(cell, status, error=outcome.error, wall_s=outcome.wall_s, prediction=prediction,
                        interference=outcome.interference)
            return f"{'timeout' if outcome.timed_out else 'FAILED'}: {outcome.error}"
        record = self.record(cell, "ok", result=result, wall_s=outcome.wall_s, prediction=prediction,
                             interference=outcome.interference)
        predicted = (prediction or {}).get("predicted_epoch_s")
        noisy_line = noisy(outcome.interference)
        epoch_s = statistics.median(record["epoch_times_s"])
        samples = statistics.median(v * t for v, t in zip(record["samples_per_s"], record["epoch_times_s"],
                                                          strict=True))
        return (f"ok  epoch {epoch_s:.2f} s  " + (f"(predicted {predicted:.2f} s)  " if predicted else "")
                + f"{samples / epoch_s:,.0f} samples/s  val acc {record['val_acc']:.2%}  "
                f"({outcome.wall_s:.0f} s with start-up)" + (f"  {noisy_line}" if noisy_line else ""))
