"""TaskForge's Celery adapters: thin, over the core (``app.services``).

- Every process that publishes (API, gRPC, worker): ``celery_app`` (the Celery app),
  ``publisher`` (the outbox's port) and ``remote_control`` (pool and drain commands),
  which ``app.runtime`` installs.
- Worker and beat only: ``worker`` (process start), ``executor`` (``taskforge.run_job``
  and the lease keeper), ``maintenance`` (the periodic tasks), ``lifecycle`` (register,
  heartbeat, sign off), ``worker_commands`` (the commands a worker answers),
  ``handlers`` (the job-type registry) and ``beat`` (the scheduler).
"""
