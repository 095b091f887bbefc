"""The one hand-off between the parent and a child process tree (a configuration's training, the collective
benchmark of one device count, a GPU-check run): the parent names two files under <out>/.handoff; rank 0 of the
child writes its result to the first (--json), the child or bench.run.torchrun writes the root cause of a failure
to the second; the parent reads the result back and removes both, whatever happened."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.records.files import HANDOFF_DIR, LOGS_DIR
from bench.run.launch import Outcome, run_logged

NO_RESULT = "exited 0 but handed back no result"
"""The failure of a child that ended well but wrote no readable result."""


@dataclass(frozen=True)
class Handoff:
    """The two files of one launch, <out>/.handoff/<stem>.result.json and <stem>.failure.json."""

    result_file: Path
    failure_file: Path

    @classmethod
    def under(cls, out: Path, stem: str) -> Handoff:
        """The files of launch `stem` in `out`'s hand-off folder (created); an earlier run's result file is
        removed first, so it is never mistaken for this one's."""
        folder = out / HANDOFF_DIR
        folder.mkdir(parents=True, exist_ok=True)
        handoff = cls(folder / f"{stem}.result.json", folder / f"{stem}.failure.json")
        handoff.result_file.unlink(missing_ok=True)
        return handoff

    @property
    def flags(self) -> list[str]:
        """What the child's command line gets: where rank 0 writes its result."""
        return ["--json", str(self.result_file)]

    def read_text(self) -> str | None:
        """The result file's text as rank 0 wrote it; None when there is none on this node."""
        try:
            return self.result_file.read_text()
        except OSError:
            return None

    def read(self) -> dict | None:
        """The result the child handed back; None when there is no readable one."""
        return _parse(self.read_text())

    def clear(self) -> None:
        self.result_file.unlink(missing_ok=True)
        self.failure_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class Relay:
    """How a result comes home when global rank 0 ran on another node (several nodes: torchrun may give rank 0 to
    any of them): the node holding the result hands its text over, node 0 takes it over (through node 0's study
    store, bench.run.node_schedule)."""

    take_over: Callable[[], str | None]
    """Node 0: the text another node handed over, or None (bounded wait)."""
    hand_over: Callable[[str], None]
    """A node other than 0 that holds the result: send its text to node 0."""


def run_child(out: Path, stem: str, command: Callable[[list[str]], list[str]], timeout_s: float, *,
              on_line: Callable[[str], None] = lambda line: None, env: dict[str, str] | None = None,
              read_result: bool = True, relay: Relay | None = None,
              on_start: Callable[[int], None] | None = None) -> tuple[Outcome, dict | None]:
    """Run the child `command(hand-off flags)` with its output in <out>/logs/<stem>.log, ended after timeout_s
    (bench.run.launch.run_logged); (outcome, its result dict, or None). A child that exits 0 without a readable
    result is a failure (outcome.error NO_RESULT). With `read_result` off (a node other than 0, where rank 0 does
    not run) no result is expected here; with a `relay` the result comes home from whichever node held global
    rank 0. The hand-off files are gone afterwards."""
    handoff = Handoff.under(out, stem)
    try:
        outcome = run_logged(command(handoff.flags), timeout_s, out / LOGS_DIR / f"{stem}.log", on_line,
                             handoff.failure_file, env, on_start=on_start)
        text = handoff.read_text() if outcome.error is None else None
        if relay and outcome.error is None:
            if read_result and text is None:
                text = relay.take_over()
            elif not read_result and text is not None:
                relay.hand_over(text)
        result = None
        if outcome.error is None and read_result:
            result = _parse(text)
            if result is None:
                outcome.error = NO_RESULT
        return outcome, result
    finally:
        handoff.clear()


def _parse(text: str | None) -> dict | None:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None
