"""``benchmarks.profile --wall``: a worker's wall time, split into its main loop and its pool."""

from __future__ import annotations

from pathlib import Path

from benchmarks.profile import ALL_THREADS, WORKER_ROLES, summarize_wall

MAIN = 'process 10:"celery worker";main (celery/bin/worker.py:1);asynloop (celery/loops.py:9)'
POOL = 'process 10:"celery worker";process 11:"celery worker";Worker.workloop (billiard/pool.py:3)'


def _raw(tmp_path: Path, lines: list[str]) -> Path:
    raw = tmp_path / "worker.raw"
    raw.write_text("\n".join(lines) + "\n")
    return raw


def test_each_role_shares_only_its_own_samples(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            f"{MAIN};_epoll.poll (kombu/utils/eventio.py:5) 30",
            f"{MAIN};QoS.ack (kombu/transport/redis.py:7) 10",
            f"{POOL};_SimpleQueue.get_payload (billiard/queues.py:2) 60",
            f"{POOL};run_job (tasks/executor.py:8) 20",
            # A thread of neither role (the lease keeper) counts nowhere.
            'process 10:"celery worker";LeaseKeeper._loop (tasks/executor.py:80) 500',
        ],
    )

    text = summarize_wall(raw, WORKER_ROLES)

    main, pool = text.split("\n\n")
    assert main.splitlines()[0] == f"{next(iter(WORKER_ROLES))}: 40 samples"
    assert "  75.0%  _epoll.poll (kombu/utils/eventio.py)" in main
    assert "  25.0%  QoS.ack (kombu/transport/redis.py)" in main
    assert pool.splitlines()[0].endswith(": 80 samples")
    assert "  75.0%  _SimpleQueue.get_payload (billiard/queues.py)" in pool
    assert "  25.0%  run_job (tasks/executor.py)" in pool
    # The trunk every sample of a role shares says nothing, and is left out.
    assert "asynloop" not in text
    assert "workloop" not in text
    assert "LeaseKeeper" not in text


def test_without_roles_every_thread_is_summed(tmp_path: Path) -> None:
    raw = _raw(tmp_path, [f"{MAIN};poll (x.py:1) 1", f"{POOL};run (y.py:2) 3"])

    text = summarize_wall(raw, ALL_THREADS)

    assert text.splitlines()[0] == "every thread of the process tree: 4 samples"
    assert "  75.0%  run (y.py)" in text
    assert "  25.0%  poll (x.py)" in text


def test_a_recording_without_samples_says_so(tmp_path: Path) -> None:
    assert summarize_wall(_raw(tmp_path, ["garbage"]), WORKER_ROLES) == "no samples in any role"
