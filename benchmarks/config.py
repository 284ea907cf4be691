"""Benchmark settings: command-line options and their ``--quick`` variants."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = ("rest", "e2e", "latency", "grpc")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class BenchConfig:
    """What to run and for how long."""

    reps: int = 3
    only: tuple[str, ...] = BENCHMARKS
    rest_seconds: float = 10.0
    rest_warmup_seconds: float = 1.0
    wrk_connections: int = 8
    wrk_threads: int = 1
    gunicorn_workers: int = 2
    e2e_jobs: int = 5000
    horizontal: bool = True
    latency_submits: int = 300
    latency_warmup: int = 20
    grpc_seconds: float = 10.0
    grpc_processes: int = 2
    grpc_threads: int = 2
    grpc_channels: int = 4
    grpc_loops: int = 4
    # REST and end-to-end rows also run on PostgreSQL: BENCH_POSTGRES_URL, or a throwaway cluster.
    postgres: bool = True
    postgres_url: str | None = None
    install_wrk: bool = True
    keep_tmp: bool = False
    output: Path = field(default_factory=lambda: RESULTS_DIR / "latest.md")
    seed: int = 20240601
    # Before each measured pair, wait up to this long for the machine's CPU use
    # (others' processes) to drop below the threshold.
    quiet_wait_seconds: float = 20.0
    quiet_threshold: float = 0.15
    # ... but never wait more than this in total over a run.
    quiet_budget_seconds: float = 180.0
    # Scheduling priority for the harness and everything it starts (needs root below 0).
    nice: int = 0

    @property
    def description(self) -> str:
        """One line naming the settings, for the report."""
        return (
            f"reps={self.reps}, REST {self.rest_seconds:g}s x wrk -t{self.wrk_threads} "
            f"-c{self.wrk_connections}, e2e N={self.e2e_jobs}, "
            f"latency {self.latency_submits} submits, gRPC {self.grpc_seconds:g}s "
            f"({self.grpc_processes} proc x {self.grpc_threads} threads, "
            f"{self.grpc_channels} channels x {self.grpc_loops} loops)"
        )


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Build a :class:`BenchConfig` from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark TaskForge against raw Flask/Celery/grpcio baselines in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="1 rep, short durations, small N")
    parser.add_argument("--reps", type=int, help="repetitions of each benchmark (default 3)")
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--rest-seconds", type=float, help="wrk duration per run (default 10)")
    parser.add_argument("--e2e-jobs", type=int, help="jobs pre-enqueued per drain (default 5000)")
    parser.add_argument(
        "--no-horizontal", action="store_true", help="skip the 2-worker end-to-end runs"
    )
    parser.add_argument("--latency-submits", type=int, help="sequential submits (default 300)")
    parser.add_argument("--grpc-seconds", type=float, help="gRPC load duration (default 10)")
    parser.add_argument("--grpc-processes", type=int, help="gRPC server processes (default 2)")
    parser.add_argument("--grpc-threads", type=int, help="threads per gRPC server (default 2)")
    parser.add_argument(
        "--no-postgres",
        action="store_true",
        help="SQLite only (default: REST and e2e on PostgreSQL too, BENCH_POSTGRES_URL or a "
        "throwaway cluster when PostgreSQL is installed)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not apt-get install wrk when it is missing (REST is then skipped)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait for an idle machine before each measurement (default 20)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="renice the harness and its children (e.g. -5 as root on a shared machine)",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, DB)")
    parser.add_argument("--output", type=Path, help="markdown report path")
    args = parser.parse_args(argv)

    config = BenchConfig()
    if args.quick:
        config.reps = 1
        config.rest_seconds = 3.0
        config.e2e_jobs = 1000
        config.latency_submits = 100
        config.grpc_seconds = 3.0
        config.quiet_wait_seconds = 5.0
    overrides = {
        "reps": args.reps,
        "rest_seconds": args.rest_seconds,
        "e2e_jobs": args.e2e_jobs,
        "latency_submits": args.latency_submits,
        "grpc_seconds": args.grpc_seconds,
        "grpc_processes": args.grpc_processes,
        "grpc_threads": args.grpc_threads,
        "output": args.output,
        "quiet_wait_seconds": args.quiet_wait,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    if args.only:
        chosen = tuple(part.strip() for part in args.only.split(",") if part.strip())
        unknown = sorted(set(chosen) - set(BENCHMARKS))
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
        config.only = chosen
    config.horizontal = not args.no_horizontal
    config.install_wrk = not args.no_install
    config.keep_tmp = args.keep_tmp
    config.nice = args.nice
    config.postgres = not args.no_postgres
    config.postgres_url = os.environ.get("BENCH_POSTGRES_URL") or None
    if config.reps < 1:
        parser.error("--reps must be at least 1")
    return config
