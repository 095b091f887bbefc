"""The collective benchmark: bandwidth of the collectives a study's modes use, per device count, on the study's
backend and process layout, with the compute-only step time the scaling model starts from.

  python -m bench.comm --gpus 2,4 --out reports        # launches itself under torchrun for each count
  torchrun --standalone --nproc-per-node 4 -m bench.comm --json comm4.json   # one count, by hand

Records go to <out>/comm.jsonl (with provenance), the plot to <out>/comm.png. The sweep runs the same measurement
once per device count before that count's configurations (--no-comm skips it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from bench.records.comm import comm_record, read_comm
from bench.records.files import COMM_FILE
from bench.records.results import ResultsError, append_record
from bench.records.units import plural
from bench.render.plots import render_comm
from bench.run.comm_memory import comm_memory_error
from bench.run.handoff import Relay, run_child
from bench.run.launch import child_command
from bench.run.nodes import Rendezvous
from bench.run.provenance import collect
from mgpu_core.cli import build_parser, one_line_error
from mgpu_core.cli_args import add_config_arguments, config_from_args, config_to_argv
from mgpu_core.collectives import CommCheckError, CommConfig, measure, table
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import process_group, usable_cores
from mgpu_core.files import atomic_write
from mgpu_core.hardware import pick_device_type

EXAMPLES = """examples:
  python -m bench.comm --gpus 2,4 --out reports
  torchrun --standalone --nproc-per-node 2 -m bench.comm --json comm2.json
exit codes: 0 every count measured, 1 a count failed (or a collective returned a wrong result), 2 bad arguments
  or no count that fits this machine (one line on stderr)"""

WORKER_ENV = "TORCHELASTIC_RUN_ID"
"""Set by torchrun in its workers: with it this process measures; without it, it launches the workers."""


def worker(cfg: TrainConfig, comm: CommConfig, json_path: Path | None, smoke: bool = False) -> int:
    try:
        with process_group(dataclasses.replace(cfg, mode="ddp")) as env:
            if env.world_size < 2 and not smoke:
                raise ConfigError("collectives need >= 2 ranks: run bench.comm without torchrun to launch it for "
                                  "--gpus, or under torchrun with --nproc-per-node >= 2")
            result = measure(cfg, comm, env)
    except (ConfigError, CommCheckError) as exc:
        one_line_error("python -m bench.comm", exc)
        return 2 if isinstance(exc, ConfigError) else 1
    if env.is_main:
        if json_path:
            with atomic_write(json_path) as f:
                json.dump(result, f)
        print(table([result]), flush=True)
    return 0


def run_count(cfg: TrainConfig, comm: CommConfig, devices: int, out: Path, command_line: list[str],
              extra: dict | None = None, rendezvous: Rendezvous | None = None, per_node: int | None = None,
              record: bool = True, env: dict[str, str] | None = None,
              relay: Relay | None = None) -> tuple[dict | None, str | None]:
    """Measure one device count in its own torchrun (across nodes with `rendezvous`, `per_node` processes each);
    append its record to <out>/comm.jsonl unless `record` is off (nodes other than 0). Across nodes global rank 0
    may run on any node: `relay` brings its result home (bench.run.handoff.Relay). (record, None) or (None, the
    failure line)."""
    outcome, result = run_child(
        out, f"comm-x{devices}",
        lambda flags: child_command(config_to_argv(cfg) + config_to_argv(dataclasses.replace(comm, gpus=None)) + flags,
                                    "ddp", per_node if rendezvous else devices, module="bench.comm",
                                    rendezvous=rendezvous),
        comm.timeout, env=env if rendezvous else None, read_result=record, relay=relay)
    if outcome.error or not record:
        return None, outcome.error
    rec = comm_record(result, **(extra or {}), wall_s=outcome.wall_s,
                      provenance=collect(cfg.precision, cfg.seed, command_line, {"threads": result["threads"],
                                                                                 "nodes": result["nodes"]}))
    append_record(out / COMM_FILE, rec)
    return rec, None


def launch_all(cfg: TrainConfig, comm: CommConfig, out: Path, command_line: list[str]) -> int:
    device_type = pick_device_type(cfg.device)
    visible = torch.cuda.device_count() if device_type == "cuda" else usable_cores()
    counts = comm.gpus or tuple(n for n in (2, 4, 8, 16, 32) if n <= max(2, visible))
    if not [n for n in counts if n <= visible]:  # measuring nothing is not a success
        unit = "GPUs" if device_type == "cuda" else "CPU processes (usable cores)"
        raise ConfigError(f"gpus: no count of {','.join(map(str, counts))} fits this machine: {visible} {unit}")
    too_big = comm_memory_error(comm.max_bytes, max(n for n in counts if n <= visible), device_type, "--max-bytes")
    if too_big:
        raise ConfigError(too_big)
    results = []
    for n in counts:
        if n > visible:
            what = plural(n, "GPU") if device_type == "cuda" else plural(n, "CPU process", "CPU processes")
            print(f"{what}: skipped ({visible} available)")
            continue
        rec, error = run_count(cfg, comm, n, out, command_line)
        print(f"{n} x {device_type}: " + (f"FAILED: {error}" if error else "ok"), flush=True)
        if rec:
            results.append(rec)
    if results:
        print("\n" + table(results) + "\n")
        path = render_comm(read_comm(out / COMM_FILE), out)
        print(f"wrote {out / COMM_FILE}, {path}")
    return 0 if len(results) == len([n for n in counts if n <= visible]) else 1


@record
def main(argv: list[str] | None = None) -> int:
    parser = build_parser(prog="python -m bench.comm", description=__doc__, epilog=EXAMPLES)
    add_config_arguments(parser.add_argument_group("collective benchmark"), CommConfig)
    parser.add_argument("--json", type=Path, help="(under torchrun) write the measurement here")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="comm.jsonl and comm.png go here")
    parser.add_argument("--smoke", action="store_true",
                        help="one rank in this process, on the real backend (NCCL on a GPU): runs every collective's "
                             "code path and checks its result on a 1-GPU machine; measures no link (busbw of 1 rank "
                             "is 0 by definition), writes nothing to comm.jsonl (--json still works)")
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, parser)
    comm = config_from_args(CommConfig, args, parser)
    if args.smoke:
        if comm.gpus:
            parser.error("--smoke runs one rank; --gpus does not apply")
        print("smoke: 1 rank, no link measured (busbw 0 by definition); checks the collectives' code path",
              flush=True)
        return worker(cfg, comm, args.json, smoke=True)
    if os.environ.get(WORKER_ENV):
        return worker(cfg, comm, args.json)
    try:
        return launch_all(cfg, comm, args.out.expanduser(), ["python", "-m", "bench.comm", *(argv or sys.argv[1:])])
    except (ConfigError, ResultsError) as exc:
        parser.error(str(exc))
    except OSError as exc:
        parser.error(f"{exc.filename or args.out}: {exc.strerror}")


if __name__ == "__main__":
    sys.exit(main())
