"""Workers: registration, heartbeats on the configured interval, drain, scope, runners."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, ValidationFailed
from app.models import WorkerStatus, WorkerType, utcnow
from app.services import workers
from app.services.actors import Actor
from app.services.outbox import DrainWorker
from app.services.workers import WorkerScope
from tests.support import factories
from tests.support.factories import RecordingPublisher


def test_a_heartbeat_answers_with_the_interval_the_edge_passes(
    session: Session, actor: Actor
) -> None:
    worker = workers.register_worker(session, actor=actor, name="w1")
    before = utcnow()
    beat = workers.heartbeat(
        session, actor=actor, worker_id=worker.id, interval=timedelta(seconds=42)
    )
    assert (
        before + timedelta(seconds=41) <= beat.next_heartbeat_at <= utcnow() + timedelta(seconds=42)
    )
    assert beat.worker.status is WorkerStatus.ONLINE


def test_a_drained_worker_stays_draining_and_its_nodename_is_told(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    worker = workers.register_worker(session, actor=actor, name="w1")
    worker.hostname = "w1@h"
    assert workers.drain_worker(session, actor=actor, worker_id=worker.id).drain_mode
    session.commit()
    assert published.of_type(DrainWorker) == [DrainWorker("w1@h")]
    beat = workers.heartbeat(session, actor=actor, worker_id=worker.id, interval=timedelta(1))
    assert beat.worker.status is WorkerStatus.DRAINING
    worker.status = WorkerStatus.OFFLINE
    with pytest.raises(Conflict):
        workers.drain_worker(session, actor=actor, worker_id=worker.id)


def test_a_worker_scope_picks_its_organizations_queues_of_its_type(
    session: Session, actor: Actor
) -> None:
    general = factories.queue(session, actor, "general")
    gpu = factories.queue(session, actor, "gpu", settings={"worker_type": "specialized_gpu"})
    platform = WorkerScope(organization_id=None, worker_type=WorkerType.GENERAL)
    assert workers.queues_in_scope(session, platform) == [general.celery_queue]
    gpus = WorkerScope(
        organization_id=actor.organization_id, worker_type=WorkerType.SPECIALIZED_GPU
    )
    assert workers.queues_in_scope(session, gpus) == [general.celery_queue, gpu.celery_queue]
    elsewhere = WorkerScope(organization_id=uuid.uuid4(), worker_type=WorkerType.GENERAL)
    assert workers.queues_in_scope(session, elsewhere) == []


def test_a_job_type_is_refused_only_when_every_live_worker_said_what_it_runs(
    session: Session, actor: Actor
) -> None:
    queue = factories.queue(session, actor)
    workers.check_runnable([], "resize")
    factories.runner(session, "a@h", queue.celery_queue, ["thumbnail"])
    factories.runner(session, "b@h", queue.celery_queue, None)
    runners = workers.live_runners(session, celery_queue=queue.celery_queue)
    workers.check_runnable(runners, "resize")  # b@h advertised nothing: it may run it
    advertised = [runner for runner in runners if runner.job_types is not None]
    with pytest.raises(ValidationFailed, match="thumbnail"):
        workers.check_runnable(advertised, "resize")


def test_silent_workers_go_offline(session: Session, actor: Actor) -> None:
    worker = workers.register_worker(session, actor=actor, name="w1")
    worker.last_heartbeat = utcnow() - timedelta(seconds=31)
    session.flush()
    assert workers.mark_silent_workers_offline(session, interval=timedelta(seconds=10)) == 1
    session.refresh(worker)
    assert worker.status is WorkerStatus.OFFLINE
