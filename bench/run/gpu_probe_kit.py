"""What every GPU-session probe program uses (bench.run.gpu_probes): the training config of its flags, and the
verdicts of the probes, collected as they come."""

from __future__ import annotations

import json
import traceback
from pathlib import Path


def train_config(argv: list[str], **overrides):
    """The TrainConfig of these training flags (mgpu_core's parser) with `overrides`."""
    import dataclasses

    from mgpu_core.cli import build_parser
    from mgpu_core.cli_args import config_from_args
    from mgpu_core.config import TrainConfig
    parser = build_parser(prog="python -m bench.run.gpu_probes")
    cfg = config_from_args(TrainConfig, parser.parse_args(argv), parser)
    return dataclasses.replace(cfg, **overrides)


class Probes:
    """Collects each probe's verdict as it goes (printed as PROBE lines and kept in probes.json)."""

    def __init__(self, work: Path) -> None:
        self.work, self.found = work, []

    def add(self, item: int, name: str, verdict: str, detail: str) -> None:
        self.found.append({"item": item, "probe": name, "verdict": verdict, "detail": detail})
        print(f"PROBE {item} {name}: {verdict}: {detail}", flush=True)
        (self.work / "probes.json").write_text(json.dumps(self.found, indent=1))

    def run(self, item: int, name: str, fn, *args) -> None:
        try:
            verdict, detail = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a finding; the others still run
            traceback.print_exc()
            verdict, detail = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.add(item, name, verdict, detail)


def verdict_of(mechanism: bool, fix_ok: bool) -> str:
    """A probe's verdict: whether the mechanism shows here (confirmed / refuted), and its fix's check (fix ok /
    FIX FAILED)."""
    return f"{'confirmed' if mechanism else 'refuted'}; {'fix ok' if fix_ok else 'FIX FAILED'}"
