"""Count what one submit does: SQL statements, commits and Redis commands, and profile it.

Used by ``python -m benchmarks.breakdown --counts``: each submit path runs
in-process with SQLAlchemy's cursor events and Redis ``INFO commandstats``
counting, and a cProfile of TaskForge's request and bulk submit reports the
share of time under each named function.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.connection import AbstractConnection
from sqlalchemy import event
from sqlalchemy.engine import Engine

from benchmarks.context import Context

QUOTE = '"'

# Functions whose cumulative share of a TaskForge submit is reported (file part, name).
PROFILED: dict[str, tuple[str, str]] = {
    "limits on: rate limit + authentication (Gate.admit)": ("app/services/admission.py", "admit"),
    "authentication (current_actor)": ("app/api/context.py", "current_actor"),
    "  JWT verify (TokenService.decode: PyJWT)": ("app/services/tokens.py", "decode"),
    "  token blocklist + actor epoch (TokenStore.check: MGET)": ("app/services/tokens.py", "check"),
    "  actor lookup (_active_user: SELECT users)": ("app/services/auth.py", "_active_user"),
    "request parsing (webargs parse)": ("webargs/core.py", "parse"),
    "submit_job": ("app/services/jobs.py", "submit_job"),
    "  queue lookup (_resolve_queue)": ("app/services/jobs.py", "_resolve_queue"),
    "  ORM flush (INSERT, before issue 12)": ("sqlalchemy/orm/session.py", "_flush"),
    "  Core INSERT (_store)": ("app/services/jobs.py", "_store"),
    "response serialisation (marshmallow dump)": ("marshmallow/schema.py", "dump"),
    "publish after commit (CeleryPublisher)": ("tasks/publisher.py", "__call__"),
    "  send_task (kombu LPUSH)": ("tasks/publisher.py", "send"),
    "  published_at UPDATE (mark_published)": ("app/services/outbox.py", "mark_published"),
}


def _statement_kind(statement: str) -> str:
    words = statement.split()
    if not words:
        return "?"
    head = words[0].upper()
    if head in ("INSERT", "UPDATE", "DELETE") and len(words) > 2:
        table = (words[2] if head != "UPDATE" else words[1]).strip(QUOTE)
        return f"{head} {table}"
    if head == "SELECT" and "FROM" in (w.upper() for w in words):
        upper = [w.upper() for w in words]
        return f"SELECT {words[upper.index('FROM') + 1].strip(',')}"
    return head


def count(ctx: Context, engines: list[Engine], fn: Callable[[], Any], n: int, per: int = 1) -> str:
    """Run ``fn`` ``n`` times; return SQL statements and Redis commands per ``per`` items.

    Redis round trips are the packed writes this process sent (a pipeline is one),
    counted by wrapping redis-py's ``AbstractConnection.send_packed_command``.
    """
    statements: Counter[str] = Counter()
    round_trips = [0]
    original = AbstractConnection.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> Any:
        round_trips[0] += 1
        return original(self, command, check_health)

    def on_execute(*args: Any) -> None:
        statements[_statement_kind(args[2])] += 1

    def on_commit(_connection: Any) -> None:
        statements["COMMIT"] += 1

    fn()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", on_commit)
    client = ctx.redis()
    try:
        client.config_resetstat()
        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
        try:
            for _ in range(n):
                fn()
        finally:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        commands = {
            name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()
        }
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)
        client.close()
    commands.pop("config|resetstat", None)
    calls = n * per
    sql = ", ".join(f"{k} {v / calls:.3g}" for k, v in sorted(statements.items()))
    redis = ", ".join(f"{k.upper()} {v / calls:.3g}" for k, v in sorted(commands.items()))
    trips = f"{round_trips[0] / calls:.3g}"
    return f"SQL: {sql or 'none'}; Redis: {redis or 'none'}; Redis round trips {trips}"


def profile_shares(fn: Callable[[], Any], n: int) -> list[tuple[str, float]]:
    """cProfile ``n`` calls of ``fn``; return each PROFILED function's share of the total."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        fn()
    profiler.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max((row[3] for row in stats.values()), default=0.0)
    shares = []
    for label, (path, name) in PROFILED.items():
        cumulative = sum(
            row[3] for (file, _, func), row in stats.items() if func == name and file.endswith(path)
        )
        shares.append((label, cumulative / total if total else 0.0))
    return shares
