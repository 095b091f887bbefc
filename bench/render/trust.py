"""What a reader must know before trusting a study's table: per row, whether it ran under interference (noisy), with
more threads than cores (oversubscribed), or faster than ideal (super-linear: suspect); per study, how many rows are
affected, whether the baseline drifted between its first and its closing measurement, and in which order the
configurations ran. The rules and thresholds are bench.explain.plausibility's; this module applies them to records."""

from __future__ import annotations

from bench.explain.plausibility import NOISY_CPU_SHARE, SUPERLINEAR_FLAG, drift, noisy, superlinear
from bench.records.study_provenance import mixed_software
from bench.records.units import plural


def _row_key(record: dict) -> tuple[str, str, int]:
    return record["mode"], record.get("variant", ""), record["devices"]


def _rank_threads(record: dict) -> list[int]:
    result = record.get("result") or {}
    return result.get("rank_threads") or ([result["threads"]] * result.get("world_size", 1)
                                          if result.get("threads") else [])


def oversubscribed(record: dict) -> str | None:
    """'oversubscribed: ...' when the ranks of one node times their threads exceed the node's usable cores."""
    threads = _rank_threads(record)
    cores = (record.get("provenance") or {}).get("cpu_cores")
    if not threads or not cores:
        return None
    nodes = max(1, (record.get("result") or {}).get("nodes", 1))
    per_node = sum(threads) / nodes
    if per_node <= cores:
        return None
    ranks = len(threads) // nodes
    return (f"oversubscribed: {plural(ranks, 'rank')} x {plural(max(threads), 'thread')} on "
            f"{plural(cores, 'core')}")


def _worst_interference(ok: list[dict]) -> dict | None:
    seen = [r["interference"] for r in ok if r.get("interference")]
    return max(seen, key=lambda i: i.get("other_cpu_share") or 0.0) if seen else None


def annotate(study, records: list[dict]) -> None:
    """Set each row's trust flags (Row.flags) from its records, and mark the goal verdict of a suspect row."""
    by_row: dict[tuple[str, str, int], list[dict]] = {}
    for record in records:
        if record["status"] == "ok":
            by_row.setdefault(_row_key(record), []).append(record)
    for row in study.rows:
        ok = by_row.get((row.mode, row.variant, row.devices), [])
        flags = []
        flag = noisy(_worst_interference(ok))
        if flag:
            flags.append(flag)
        over = next((o for r in ok if (o := oversubscribed(r))), None)
        if over:
            flags.append(over)
        if row is not study.baseline and (suspect := superlinear(row.efficiency, row.noise)):
            flags.append(SUPERLINEAR_FLAG)
            row.goal_verdict += f" ({suspect.split(' (')[0]})"
        row.flags = flags


def _baseline_records(study, records: list[dict]) -> list[dict]:
    """The 1-device single baseline's successful records in the order they ran."""
    base = [r for r in records if r["status"] == "ok" and _row_key(r) == ("single", "", 1)]
    return sorted(base, key=lambda r: ((r.get("design") or {}).get("position", r["trial"]),
                                       r["provenance"].get("timestamp") or ""))


def conclude(study, records: list[dict] = ()) -> None:
    """StudySummary.notices: counts of noisy, oversubscribed and suspect rows, refused predictions, baseline drift
    (first against closing measurement), records measured by different software, and the order the configurations
    ran in."""
    measured = [r for r in study.rows if r.epoch_time_s]
    notices = []
    noisy_rows = [r for r in measured if any(f.startswith("noisy") for f in r.flags)]
    if noisy_rows:
        shares = [i.get("other_cpu_share") or 0.0 for r in records if r["status"] == "ok"
                  and (i := r.get("interference")) and _row_key(r) in {(x.mode, x.variant, x.devices)
                                                                       for x in noisy_rows}]
        most = f" up to {max(shares):.0%} of the CPU" if shares and max(shares) > NOISY_CPU_SHARE else ""
        notices.append(f"noisy: {len(noisy_rows)} of {plural(len(measured), 'row')} measured while other processes ran"
                       f"{' (using' + most + ')' if most else ''}; their numbers are not the machine's")
    for word in ("oversubscribed", SUPERLINEAR_FLAG):
        hit = [r for r in measured if any(f.startswith(word) for f in r.flags)]
        if hit:
            notices.append(f"{word}: {len(hit)} of {plural(len(measured), 'row')} (" + ", ".join(
                f"{r.label} x{r.devices}" for r in hit) + ")")
    refused = [r for r in measured if r.explanation.refused]
    if refused:
        notices.append(f"refused predictions: {plural(len(refused), 'row')} whose predicted band lies above the "
                       f"ideal speedup ({refused[0].explanation.refused.removeprefix('refused: ')})")
    base = _baseline_records(study, records)
    if len(base) >= 2:
        moved = drift([v for r in base[:-1] for v in r["samples_per_s"]], base[-1]["samples_per_s"])
        if moved:
            notices.append(moved)
    mixed = mixed_software(records)
    if mixed:
        notices.append(mixed)
    orders = {(r.get("design") or {}).get("order_seed") for r in records if r.get("design")}
    orders.discard(None)
    if orders:
        notices.append("order: configurations shuffled within each trial round, seed "
                       + ", ".join(str(o) for o in sorted(orders)))
    study.notices = notices
