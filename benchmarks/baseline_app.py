"""The REST baseline: a minimal Flask "submit" endpoint (perf-anchors §1e).

``POST /submit`` parses the JSON body, INSERTs one row into ``bench_jobs`` on
``$DATABASE_URL`` and commits, then calls ``apply_async`` on ``$REDIS_URL``; it
answers 201 with the new id.  Serve it with
``gunicorn -w 2 -k sync benchmarks.baseline_app:app``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, jsonify, request

from benchmarks.baseline_celery import count
from benchmarks.baseline_db import bench_jobs, ensure_table, make_engine

QUEUE = "bench.rest"

engine = make_engine()
ensure_table(engine)
app = Flask(__name__)


@app.post("/submit")
def submit() -> tuple[Response, int]:
    """Insert the job, commit, publish its message."""
    body = request.get_json()
    job_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            bench_jobs.insert().values(
                id=job_id,
                queue=QUEUE,
                job_type=str(body.get("job_type", "echo")),
                payload=json.dumps(body.get("payload")),
                status="pending",
                created_at=datetime.now(UTC),
            )
        )
    count.apply_async(args=[job_id], queue=QUEUE)
    return jsonify(id=job_id, status="pending"), 201


@app.get("/health")
def health() -> Response:
    """Answer 200 once the worker imported the app."""
    return jsonify(status="ok")
