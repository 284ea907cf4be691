"""How ``make test`` spreads the suite over pytest-xdist workers (``-n 2 --dist loadgroup``).

Tests go out one at a time to whichever worker is free, except two groups whose
tests run on one worker, one after the other:

- ``serial``: the tests that fault, fail over or time shared machinery, or drive a
  browser: network namespaces as hosts, a Redis or PostgreSQL stopped mid-load, a
  beat lock left to expire, Sentinel failovers, Chromium.  Each of them loads the
  machine on its own; two at once would stretch the timings they wait on.
- ``stack``: the client tests on the session's ``stack`` of processes
  (tests/client/conftest.py): one stack, not one per worker.

pytest-xdist's own ``loadgroup`` finds groups by renaming test ids after their
``xdist_group`` marks, which pytest 9.2 no longer lets a plugin do (the ids stay
unchanged and the marks are ignored), so this scheduler groups by module instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from xdist.scheduler import Scheduling

SERIAL_MODULES = frozenset(
    {
        "tests/browser/test_dashboard.py",
        "tests/deploy/test_beat_leader.py",
        "tests/deploy/test_sentinel.py",
        "tests/faults/test_api_crash_after_commit.py",
        "tests/faults/test_pool_churn.py",
        "tests/faults/test_postgres_outage.py",
        "tests/faults/test_redis_restart.py",
        "tests/multihost/test_faults_across_hosts.py",
    }
)
STACK_MODULES = frozenset(
    {
        "tests/client/test_cli.py",
        "tests/client/test_grpc_client.py",
        "tests/client/test_stack_rest.py",
    }
)


def group_of(nodeid: str) -> str:
    """The unit of work a test belongs to: ``serial``, ``stack`` or the test itself."""
    module = nodeid.split("::", 1)[0]
    if module in SERIAL_MODULES:
        return "serial"
    if module in STACK_MODULES:
        return "stack"
    return nodeid


def scheduler(config: pytest.Config, log: object) -> Scheduling:
    """A pytest-xdist scheduler that hands out the units of :func:`group_of`."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        # LoadScopeScheduling sends the units with the most tests first: the two
        # groups start at once, and single tests fill in around them.
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)  # type: ignore[arg-type]
