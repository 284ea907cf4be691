"""The monitor: a Celery event consumer that keeps the live, per-tenant view in Redis.

``python -m app.monitor`` runs it (``make run`` starts one).  It is the only
writer of the live state (:mod:`app.services.live_state`); the API only reads it.
"""
