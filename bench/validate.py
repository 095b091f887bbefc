"""Check the point prediction against measurements it did not see: two hosts (network namespaces joined by a veth
pair) whose link is shaped with tc's token bucket filter to several rates, crossed with DDP bucket sizes and models.

  sudo python -m bench.validate --rates 50mbit,200mbit,1gbit,unshaped --buckets 1,25 --models simplecnn,resnet18

Per rate and model, in this order: the 1-device single configuration on host 0 (the single-host measurement), the
collective benchmark across the two hosts over the shaped link (α-β sweep, compute profile, contention κ, the
compute-only step at 1 and 2 ranks), then per bucket size the prediction (bench.explain.prediction), written
before the run, and the measured ddp x2 epoch across the hosts. Prints and writes <out>/validate.md (predicted,
measured, error per cell; MAPE, largest error, share inside the band, Kendall's τ) and <out>/validate.jsonl (one
record per cell). Needs root; without it, one line and exit 2. Removes what it created, also on failure and
Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.explain.prediction import Settings, fits_of, predict
from bench.records.results import append_record
from bench.records.units import plural
from bench.run.netns import (
    UNSHAPED,
    Host,
    HostsError,
    end_processes_in,
    missing_privileges,
    rate_bits_per_s,
    shape,
    two_hosts,
)
from mgpu_core.cli import build_parser
from mgpu_core.cli_args import add_config_arguments, config_from_args, config_to_argv
from mgpu_core.collectives import CommConfig
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.files import atomic_write

VALIDATE_FILE = "validate.jsonl"
VALIDATE_TABLE = "validate.md"
TRAIN_DEFAULTS = {"dataset": "synthetic", "synthetic_train_size": 2048, "synthetic_test_size": 256, "epochs": 2,
                  "threads": 1}
"""A small study per cell; one thread per process, so two ranks fill two cores without oversubscription."""


@dataclass(frozen=True)
class ValidateConfig:
    rates: tuple[str, ...] = ("50mbit", "200mbit", "1gbit", UNSHAPED)
    """Link rates between the two hosts, as tc writes them (kbit, mbit, gbit), or 'unshaped'."""

    buckets: tuple[float, ...] = (1.0, 25.0)
    """DDP bucket_cap_mb values."""

    models: tuple[str, ...] = ("simplecnn", "resnet18")
    """Models (mgpu_core's registry), trained at --image-size."""

    out: str = "reports/validate"
    """Folder for validate.md, validate.jsonl and the logs."""

    timeout: float = 1200.0
    """Seconds one launch (single, collectives, or one ddp run) may take before both hosts' processes end."""

    comm_iters: int = 5
    """Timed iterations per size of the collective sweep (3 untimed first)."""

    def __post_init__(self) -> None:
        for rate in self.rates:
            rate_bits_per_s(rate)
        if not self.rates or not self.buckets or not self.models:
            raise ConfigError("rates, buckets and models: give at least one of each")
        if any(not (math.isfinite(b) and b > 0) for b in self.buckets):
            raise ConfigError(f"buckets: every value must be > 0 (got {self.buckets!r})")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout: must be a finite number of seconds > 0 (got {self.timeout})")
        if self.comm_iters < 3:
            raise ConfigError(f"comm_iters: must be >= 3 (got {self.comm_iters})")


class LaunchError(RuntimeError):
    """A launch failed or timed out; one line."""


def _launch(hosts: list[Host], argvs: list[list[str]], timeout: float, log: Path) -> None:
    """Run argvs[i] in hosts[i] (all at once), wait for all; LaunchError naming the first that failed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank, (host, argv) in enumerate(zip(hosts, argvs, strict=False)):
        handle = log.with_suffix(f".node{rank}.log").open("w")
        procs.append((subprocess.Popen(host.command(argv), stdout=handle, stderr=subprocess.STDOUT,
                                       env=os.environ | host.env()), handle))
    deadline = time.monotonic() + timeout
    try:
        for rank, (proc, _) in enumerate(procs):
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise LaunchError(f"timed out after {timeout:.0f} s (node {rank}); see {log.parent}") from None
            if code:
                tail = log.with_suffix(f".node{rank}.log").read_text().strip().splitlines()[-1:] or ["?"]
                raise LaunchError(f"node {rank} exited {code}: {tail[0][:300]}")
    finally:
        for proc, handle in procs:
            if proc.poll() is None:
                for host in hosts:
                    end_processes_in(host.namespace)
                proc.wait()
            handle.close()


def _torchrun(hosts: list[Host], rank: int, port: int, module: str, args: list[str]) -> list[str]:
    """torchrun with the static rendezvous at host 0, one process on this host."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(hosts)), "--node-rank", str(rank),
            "--nproc-per-node", "1", "--master-addr", hosts[0].address, "--master-port", str(port),
            "--local-addr", hosts[rank].address, "-m", module, *args]


def _port() -> int:
    return random.randrange(20000, 40000)


def _median_epoch(result: dict) -> float:
    return statistics.median(e["time_s"] for e in result["epochs"])


def run_cell_group(hosts: list[Host], cfg: TrainConfig, vcfg: ValidateConfig, rate: str, out: Path,
                   report) -> list[dict]:
    """One rate and model: single on host 0, the collectives across both hosts, then per bucket size the
    prediction (made first) and the measured ddp x2 epoch. The cells, as written to validate.jsonl."""
    tag = f"{rate}-{cfg.model}"
    handoff = out / ".handoff"
    handoff.mkdir(parents=True, exist_ok=True)
    single_json = handoff / f"{tag}-single.json"
    _launch(hosts[:1], [[sys.executable, "-m", "mgpu_core", *config_to_argv(cfg.for_mode("single")),
                         "--json", str(single_json)]], vcfg.timeout, out / "logs" / f"{tag}-single")
    single = json.loads(single_json.read_text())
    base_epoch = _median_epoch(single)
    base_steps = statistics.median(e["steps"] for e in single["epochs"])
    report(f"{tag}: single x1 epoch {base_epoch:.2f} s")

    comm_json = handoff / f"{tag}-comm.json"
    comm = CommConfig(max_bytes=1 << max(16, math.ceil(math.log2(max(1, _grad_bytes(cfg))))), iters=vcfg.comm_iters,
                      warmup_iters=3, budget_s=0.2, sharded=False, compute_steps=10)
    comm_args = config_to_argv(cfg.for_mode("ddp")) + config_to_argv(dataclasses.replace(comm, gpus=None))
    port = _port()
    _launch(hosts, [_torchrun(hosts, r, port, "bench.comm", comm_args + (["--json", str(comm_json)] if r == 0 else []))
                    for r in range(2)], vcfg.timeout, out / "logs" / f"{tag}-comm")
    comm_rec = json.loads(comm_json.read_text())
    fit = fits_of(comm_rec)["all_reduce"]
    report(f"{tag}: collectives: all-reduce α {fit.alpha_s * 1e6:.0f} us, {fit.bandwidth_bytes_per_s / 1e6:.1f} MB/s "
           f"(fit error {fit.geomean_rel_error:.1%} over {plural(fit.points, 'size')}); compute-only step 1 rank "
           f"{comm_rec['compute_step_1_s'] * 1e3:.1f} ms, 2 ranks {comm_rec['compute_step_s'] * 1e3:.1f} ms; "
           f"κ {comm_rec['contention']['kappa']:.2f}")

    cells = []
    for bucket in vcfg.buckets:
        train = cfg.for_mode("ddp", ddp_bucket_mb=bucket)
        settings = Settings("ddp", 2, train.batch_size * 2 * train.grad_accum, cfg.batch_size,
                            grad_accum=train.grad_accum, ddp_bucket_mb=bucket, ddp_comm_hook=train.ddp_comm_hook)
        prediction = predict(settings, comm_rec, base_epoch_s=base_epoch, base_steps=base_steps)
        cell = {"kind": "validate", "rate": rate, "model": cfg.model, "bucket_mb": bucket, "prediction": prediction,
                "predicted_at": time.time(), "single_epoch_s": base_epoch,
                "alpha_beta_error": {op: f.geomean_rel_error for op, f in fits_of(comm_rec).items() if f.points > 1},
                "kappa": comm_rec["contention"]["kappa"], "compute_step_1_s": comm_rec["compute_step_1_s"],
                "compute_step_s": comm_rec["compute_step_s"]}
        ddp_json = handoff / f"{tag}-ddp{bucket:g}.json"
        ddp_json.unlink(missing_ok=True)
        port = _port()
        try:
            _launch(hosts, [_torchrun(hosts, r, port, "mgpu_core", config_to_argv(train)
                                      + (["--json", str(ddp_json)] if r == 0 else [])) for r in range(2)],
                    vcfg.timeout, out / "logs" / f"{tag}-ddp{bucket:g}")
            result = json.loads(ddp_json.read_text())
            measured = _median_epoch(result)
            low, high = prediction["band_epoch_s"]
            cell |= {"status": "ok", "measured_epoch_s": measured,
                     "error": prediction["predicted_epoch_s"] / measured - 1,
                     "inside_band": low * (1 - 1e-9) <= measured <= high * (1 + 1e-9),
                     "ddp_overlap": result.get("ddp_overlap")}
        except LaunchError as exc:
            cell |= {"status": "failed", "error_message": str(exc)}
        append_record(out / VALIDATE_FILE, cell)
        cells.append(cell)
        report(f"{tag} bucket {bucket:g} MB: predicted {prediction['predicted_epoch_s']:.2f} s, "
               + (f"measured {cell['measured_epoch_s']:.2f} s ({cell['error']:+.1%})" if cell["status"] == "ok"
                  else f"FAILED: {cell['error_message']}"))
    return cells


def _grad_bytes(cfg: TrainConfig) -> int:
    from mgpu_core.models import build_model, gradient_bytes  # torch: only once the run starts
    return gradient_bytes(build_model(cfg.model, 10, cfg.image_size))


def summary(cells: list[dict]) -> dict:
    """MAPE, largest error (and its cell), share inside the band and Kendall's τ over the cells that ran."""
    from scipy.stats import kendalltau

    ok = [c for c in cells if c.get("status") == "ok"]
    if not ok:
        return {"cells": len(cells), "ok": 0}
    errors = [abs(c["error"]) for c in ok]
    worst = max(ok, key=lambda c: abs(c["error"]))
    tau = (kendalltau([c["prediction"]["predicted_epoch_s"] for c in ok], [c["measured_epoch_s"] for c in ok]).statistic
           if len(ok) > 1 else math.nan)
    return {"cells": len(cells), "ok": len(ok), "mape": statistics.mean(errors), "max_error": worst["error"],
            "worst": f"{worst['rate']} {worst['model']} bucket {worst['bucket_mb']:g} MB",
            "inside_band": sum(c["inside_band"] for c in ok) / len(ok), "kendall_tau": tau}


def markdown(cells: list[dict], stats: dict) -> str:
    lines = ["| link | model | bucket | predicted epoch s [band] | measured epoch s | error | inside band | κ "
             "| α-β fit error (all-reduce) | overlap DDP / replay |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        p = c["prediction"] or {}
        band = p.get("band_epoch_s") or [math.nan, math.nan]
        ddp = (c.get("ddp_overlap") or {})
        measured_overlap = (f"{ddp['overlap_s'] / ddp['backward_comm_s']:.0%}" if ddp.get("backward_comm_s")
                            else "-")
        ok = c.get("status") == "ok"
        lines.append(
            f"| {c['rate']} | {c['model']} | {c['bucket_mb']:g} MB | {p.get('predicted_epoch_s', math.nan):.2f} "
            f"[{band[0]:.2f}-{band[1]:.2f}] | " + (f"{c['measured_epoch_s']:.2f} | {c['error']:+.1%} | "
                                                   f"{'yes' if c['inside_band'] else 'no'}" if ok else
                                                   "FAILED | - | -") +
            f" | {c['kappa']:.2f} | {c['alpha_beta_error'].get('all_reduce', math.nan):.1%} "
            f"| {measured_overlap} / {p.get('overlap_share', math.nan):.0%} |")
    if stats.get("ok"):
        lines += ["", f"MAPE {stats['mape']:.1%} over {stats['ok']} of {plural(stats['cells'], 'cell')}; largest error "
                      f"{stats['max_error']:+.1%} ({stats['worst']}); inside the band {stats['inside_band']:.0%}; "
                      f"Kendall's τ {stats['kendall_tau']:.2f} (predicted against measured order)."]
    return "\n".join(lines)


def machine() -> str:
    import psutil
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} logical CPUs, "
            f"load average {load[0]:.1f} at the end, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(prog="python -m bench.validate", description=__doc__)
    add_config_arguments(parser.add_argument_group("validation"), ValidateConfig)
    parser.set_defaults(**TRAIN_DEFAULTS)
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, parser)
    vcfg = config_from_args(ValidateConfig, args, parser)
    why = missing_privileges()
    if why:
        print(f"python -m bench.validate: error: {why} (two hosts in network namespaces, a shaped link)",
              file=sys.stderr)
        return 2
    out = Path(vcfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / VALIDATE_FILE).unlink(missing_ok=True)
    command = "python -m bench.validate " + " ".join(argv if argv is not None else sys.argv[1:])

    def report(line: str) -> None:
        print(line, flush=True)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C and a polite kill both end in the cleanup (SIGINT too where a shell started this with it ignored)
    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    cells: list[dict] = []
    try:
        with two_hosts() as hosts:
            for rate in vcfg.rates:
                shape(hosts, rate)
                for model in vcfg.models:
                    cells += run_cell_group(hosts, dataclasses.replace(cfg, model=model), vcfg, rate, out, report)
    except HostsError as exc:
        print(f"python -m bench.validate: error: {exc}", file=sys.stderr)
        return 2
    except LaunchError as exc:
        print(f"python -m bench.validate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("python -m bench.validate: interrupted; the namespaces and the link are removed", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = summary(cells)
    table = markdown(cells, stats)
    text = (f"# Validation of the point prediction\n\nCommand: `{command}`\n\nMachine: {machine()}\n\n{table}\n")
    with atomic_write(out / VALIDATE_TABLE) as f:
        f.write(text)
    print("\n" + table + f"\n\nwrote {out / VALIDATE_TABLE}, {out / VALIDATE_FILE}")
    return 0 if stats.get("ok") == len(cells) else 1


if __name__ == "__main__":
    sys.exit(main())
