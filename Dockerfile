# syntax=docker/dockerfile:1
# TaskForge's production image: one image for every process role.
#
#   docker build -t taskforge .
#   docker run --env-file taskforge.env taskforge api      # or grpc, worker, beat, monitor, migrate
#
# There is no HEALTHCHECK here on purpose: this image runs six roles and each one has its
# own check (`taskforge health ROLE`), so deploy/compose.yaml (or the orchestrator) sets it
# per service.  docs/deployment.md explains the roles, their settings and their checks.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/taskforge
WORKDIR /srv/taskforge
COPY setup.cfg pyproject.toml README.md alembic.ini celeryconfig.py wsgi.py ./
COPY app ./app
COPY tasks ./tasks
COPY grpc_service ./grpc_service
COPY migrations ./migrations
# Runtime dependencies only (no [dev]).  An editable install keeps migrations/ and
# alembic.ini beside the code, where `taskforge migrate` looks for them.
RUN /opt/taskforge/bin/pip install --no-cache-dir --editable .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 taskforge \
    && useradd --system --uid 10001 --gid 10001 --create-home \
        --home-dir /var/lib/taskforge --shell /usr/sbin/nologin taskforge
COPY --from=build /opt/taskforge /opt/taskforge
COPY --from=build /srv/taskforge /srv/taskforge
ENV PATH=/opt/taskforge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TASKFORGE_ENV=production \
    TASKFORGE_VAR_DIR=/var/lib/taskforge \
    TASKFORGE_HTTP_BIND=0.0.0.0:8000 \
    TASKFORGE_GRPC_BIND=0.0.0.0:50051 \
    TASKFORGE_MONITOR_BIND=0.0.0.0:8001
WORKDIR /srv/taskforge
USER 10001:10001
EXPOSE 8000 50051 8001
ENTRYPOINT ["taskforge"]
CMD ["api"]
