"""Entry point: ``python -m benchmarks.run [--quick] [--reps N] [--only rest,e2e,...]``.

Starts a private Redis and a SQLite database in a temp dir, prepares a TaskForge
tenant, runs each benchmark with its baseline back to back, prints the table and
writes it to ``benchmarks/results/latest.md`` (raw values in ``latest.json``).
Every process it starts is stopped by pid before it exits.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime

from benchmarks.config import parse_args
from benchmarks.context import Context
from benchmarks.machine import describe, git_state
from benchmarks.report import DIAGNOSTIC_HEADER, Row, summary, table
from benchmarks.session import open_session


def _guarded(ctx: Context, name: str, rows: list[Row], body: Callable[[], list[Row]]) -> bool:
    """Run one benchmark; on error record it as skipped rows and keep going."""
    print(f"== {name}", flush=True)
    started = time.monotonic()
    try:
        rows += body()
    except Exception as exc:
        traceback.print_exc()
        failed = Row(f"{name} benchmark")
        failed.skipped = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        rows.append(failed)
        ctx.notes.append(f"{name}: {type(exc).__name__}: {exc}")
        ctx.procs.stop_all()
        ctx.failed = True
        return False
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    return True


def _run_all(ctx: Context) -> tuple[list[Row], bool]:
    from benchmarks import e2e, grpc_bench, latency, rest, wrk

    config = ctx.config
    rows: list[Row] = []
    ok = True
    rest_rows: list[Row] = []
    if "rest" in config.only:
        wrk_bin, why = wrk.ensure_wrk(config.install_wrk)
        if why:
            print(why, flush=True)
            ctx.notes.append(why)
            ctx.missing.append(f"REST rows not measured: {why}")
            ok = False
        ok &= _guarded(ctx, "rest", rest_rows, lambda: rest.run(ctx, wrk_bin, why))
        rows += rest_rows
    if "e2e" in config.only:
        ok &= _guarded(ctx, "e2e", rows, lambda: e2e.run(ctx))
    if "latency" in config.only:
        ok &= _guarded(ctx, "latency", rows, lambda: latency.run(ctx))
    if "grpc" in config.only:
        why = grpc_bench.importable()
        if why:
            ctx.notes.append(f"gRPC skipped: {why}")
        ok &= _guarded(ctx, "grpc", rows, lambda: grpc_bench.run(ctx, rest_rows, why))
    return rows, ok


def _write(ctx: Context, rows: list[Row], header: str) -> str:
    config, notes = ctx.config, ctx.notes
    lines = [header, "", table(rows), "", f"Verdicts: {summary(rows)}.", ""]
    if ctx.diagnostics:
        lines += ["Diagnostics (not goals):", "", table(ctx.diagnostics, DIAGNOSTIC_HEADER), ""]
    if notes:
        lines += ["Notes:", *(f"- {note}" for note in notes), ""]
    text = "\n".join(lines)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    config.output.write_text(text)
    raw = {
        "header": header,
        "rows": [
            {**asdict(row), "goal": str(row.goal) if row.goal else None, "ratios": row.ratios}
            for row in rows
        ],
        "notes": notes,
    }
    config.output.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str))
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 0 when every benchmark ran (whatever the verdicts), else 1."""
    config = parse_args(argv)
    started = time.monotonic()
    when = datetime.now(UTC)
    rows: list[Row] = []
    ok = False
    on_postgres = config.postgres and bool({"rest", "e2e"} & set(config.only))
    with open_session(config, with_postgres=on_postgres) as ctx:
        rows, ok = _run_all(ctx)
    elapsed = time.monotonic() - started
    header = (
        f"# TaskForge benchmark, {when:%Y-%m-%d %H:%M} UTC\n\n"
        f"Machine: {describe()}.\n\n"
        f"Code: {git_state()}.\n\n"
        f"Settings: {config.description}. Wall time {elapsed / 60:.1f} min. "
        "Cells: median [min-max] over reps; ratios are paired within a rep, then the "
        "median is taken. Ratios compare only within this run (2 shared cores, noisy)."
    )
    busy = {k: v for k, v in ctx.background.items() if v > config.quiet_threshold}
    if busy:
        worst = max(busy.values())
        ctx.notes.append(
            f"Other processes kept the machine busy before {len(busy)} of "
            f"{len(ctx.background)} measurements (up to {worst:.0%} CPU); those numbers "
            "are noisier than usual."
        )
    text = _write(ctx, rows, header)
    print("\n" + text, flush=True)
    print(f"written to {config.output}", flush=True)
    for why in ctx.missing:  # last, where a reader of `make bench` looks
        print(why, file=sys.stderr, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
