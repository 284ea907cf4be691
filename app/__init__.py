"""TaskForge: a multi-tenant control plane for Celery job queues.

The package holds the foundation (``config``, ``errors``, ``db``, ``models``), the
core (``services``), the composition root (``runtime``) and two process edges
(``api``: REST, ``monitor``: the Celery event consumer).  Importing it imports
nothing else: ``docs/architecture.md`` is the map.
"""
