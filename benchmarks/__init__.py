"""TaskForge's performance benchmark: TaskForge against raw Celery, in one run.

Run it with ``make bench`` (or ``python -m benchmarks.run --help``); see
``docs/performance.md`` for what each benchmark measures and how to read it.
"""
