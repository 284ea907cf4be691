"""Several beats, exactly one active: a standby takes over, and no periodic task fires twice.

Real ``taskforge beat`` processes (each with its own schedule file and liveness file)
share the suite's Redis, where the beat lock lives. What each beat sent is read from
its log: Celery beat logs every task it sends.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise

import pytest

from tests.deploy.conftest import RoleProcess
from tests.support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., RoleProcess]
ACTIVE = "holding the beat lock"
# The relay entry fires every 2 s (celeryconfig.beat_schedule).
RELAY_SENT = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
    r"Scheduler: Sending due task relay-unpublished-jobs ",
    re.MULTILINE,
)


def _relay_sends(beat: RoleProcess) -> list[datetime]:
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in RELAY_SENT.findall(beat.log())
    ]


def _active(beats: list[RoleProcess]) -> list[RoleProcess]:
    return [beat for beat in beats if ACTIVE in beat.log()]


def test_one_beat_of_two_sends_and_a_standby_takes_over_without_a_double_fire(
    start_role: Start,
) -> None:
    beats = [start_role("beat"), start_role("beat")]
    wait_for(lambda: len(_active(beats)) == 1, 60, "no beat became active", interval=0.5)
    for beat in beats:
        wait_for(beat.healthy, 30, f"beat never ticked:\n{beat.log()[-3000:]}", interval=0.5)
    (first,) = _active(beats)
    (standby,) = [beat for beat in beats if beat is not first]
    wait_for(
        lambda: len(_relay_sends(first)) >= 3, 60, "the active beat sent nothing", interval=0.5
    )
    assert _relay_sends(standby) == [], "the standby sent periodic tasks"

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    killed_at_sends = _relay_sends(first)
    wait_for(lambda: ACTIVE in standby.log(), 60, "the standby never took over", interval=0.5)
    wait_for(lambda: len(_relay_sends(standby)) >= 3, 60, "the new active beat sent nothing")

    # A third beat stands by; SIGTERM hands the lock over instead of letting it expire.
    third = start_role("beat")
    wait_for(third.healthy, 30, f"beat never ticked:\n{third.log()[-3000:]}", interval=0.5)
    assert standby.terminate(timeout=20) == 0, standby.log()[-3000:]
    wait_for(lambda: ACTIVE in third.log(), 60, "the third beat never took over", interval=0.5)
    wait_for(lambda: len(_relay_sends(third)) >= 2, 60, "the third beat sent nothing")

    # One sender at a time: each beat's sends end before the next one's begin, and two
    # sends of the 2-second entry are never closer than a loaded machine could explain
    # (a double fire would be milliseconds apart).
    runs = [killed_at_sends, _relay_sends(standby), _relay_sends(third)]
    assert runs[0][-1] < runs[1][0] and runs[1][-1] < runs[2][0], runs
    sends = sorted(stamp for run in runs for stamp in run)
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(sends)]
    assert min(gaps) >= 1.0, gaps
