"""When and how long to wait before sending a request again.

No retry library is a TaskForge dependency and the rule is short, so it is written
here: exponential backoff with full jitter, capped, and ``Retry-After`` honoured up to
a bound (a longer wait is the caller's decision, so the error is raised instead).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that may be sent again.

    ``attempts`` counts the first try; ``attempts=1`` turns retries off.  The n-th retry
    waits a random time up to ``min(max_backoff, backoff * 2**(n-1))`` seconds, or the
    server's ``Retry-After`` when it sent one and it is at most ``max_retry_after``.
    """

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None: do not retry."""
        if retry >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (retry - 1)))


NO_RETRIES = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds in a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = now() if now else datetime.now(UTC)
    return max(0.0, (moment - current).total_seconds())
