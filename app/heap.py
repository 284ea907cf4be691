"""Keep CPython's full garbage collections short in TaskForge's long-running processes.

Once its modules are imported and its app or runtime is built, a TaskForge process
holds about 130,000 objects that live as long as the process. CPython's full
(generation 2) collection walks every tracked object. On the 2-core benchmark
machine one pass took 40 to 70 ms, and a busy server runs one every few thousand
requests. The request that meets one waits that long: measured in process, a
`GET /jobs` that takes 2.4 ms at p50 had a worst case of 68 to 73 ms in 5,000
calls, and 7 ms once the start-up objects were frozen (docs/performance.md).

:func:`freeze_startup_objects` moves everything alive at the end of start-up into
the collector's permanent generation, which no pass walks; a full pass then takes
about a millisecond. Garbage left by start-up is collected first. The objects
stay alive and reference-counted as before; only the cycle collector stops
looking at them. Call it once per process, where its start-up ends, never in
library code or tests: a frozen cycle that later becomes garbage is never freed.

The API's gunicorn workers, the gRPC server and the monitor call it. The Celery
worker does not: frozen at ``worker_init``, one worker drained echo jobs at
0.593 of raw Celery's rate against 0.647 unfrozen, at 1.50 against 1.43 ms of CPU per
job (4 paired reps, SQLite; docs/performance.md).
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_objects(log: logging.Logger = logger) -> int:
    """Collect start-up's garbage, then exempt every live object from full collections.

    Says so on ``log`` (a process whose logging is not set up at INFO passes one
    that is, such as gunicorn's error log) and returns how many objects the
    collector's permanent generation holds now.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc: %d start-up objects frozen; full collections skip them", frozen)
    return frozen
