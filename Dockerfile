# syntax=docker/dockerfile:1
# The project image. The MLflow server, the Prefect server, the workers, the sweep pool's Dask
# scheduler and the one-shot jobs (certs, deploy) all run it, so servers and clients share one set
# of package versions: exactly those in uv.lock (`uv sync --frozen` installs the lock as it is and
# never re-resolves), and a run records the same versions on every worker.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# uv builds the environment and stays in this stage.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
WORKDIR /app
# The dependencies first, in their own layer, so a code change does not reinstall them.
# The `servers` extra adds what only the servers need: the Postgres drivers, psycopg 3 (MLflow)
# and asyncpg (Prefect), and mlflow[auth] (Flask-WTF) for the `auth` profile's basic auth.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --extra servers --no-install-project
COPY README.md ./
COPY bpcore ./bpcore
COPY flows ./flows
RUN uv sync --frozen --no-dev --extra servers

FROM ${PYTHON_IMAGE}
# Nothing runs as root. /mlartifacts and /certs belong to that user so the named volumes mounted
# there start out writable (Docker copies the directory's owner and mode into a new volume); /certs
# (the sweep pool's certificates and key) is that user's only.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin bp \
 && mkdir -p /mlartifacts /data /certs \
 && chown bp:bp /mlartifacts /certs \
 && chmod 0700 /certs
COPY --from=build /app /app
COPY configs /app/configs
COPY docker/mlflow_server.py docker/prefect_server.py docker/healthcheck.py /app/docker/
# No git in the image: MLflow's look for a commit to tag runs with stays quiet (GIT_PYTHON_REFRESH).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DO_NOT_TRACK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    GIT_PYTHON_REFRESH=quiet
WORKDIR /app
USER bp
CMD ["bp", "--help"]
