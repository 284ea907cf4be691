"""``app.heap``: a process's start-up objects leave the collector's full passes.

Each check runs in a fresh interpreter: freezing the test process itself would keep
its later cyclic garbage for ever.
"""

from __future__ import annotations

from tests.support.fresh import last_json_line

# Build the REST app as a gunicorn worker does, then freeze; report what the
# collector's oldest generation and its permanent generation hold before and after.
_FREEZE_AN_APP = """
import gc, json
from app.api.app import create_app
from app.config import load_settings
from app.heap import freeze_startup_objects

create_app(load_settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0"))
before = len(gc.get_objects(generation=2))
returned = freeze_startup_objects()
print(json.dumps({
    "before": before,
    "after": len(gc.get_objects(generation=2)),
    "returned": returned,
    "frozen": gc.get_freeze_count(),
}))
"""


def test_freezing_takes_the_start_up_objects_out_of_full_collections() -> None:
    counts = last_json_line(_FREEZE_AN_APP)

    # An app's start-up leaves tens of thousands of long-lived objects behind...
    assert counts["before"] > 10_000
    # ...and afterwards a full pass walks none of them: they are all frozen.
    assert counts["after"] < counts["before"] / 100
    assert counts["returned"] == counts["frozen"] > 10_000
