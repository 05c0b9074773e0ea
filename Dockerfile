# The syncflow image: every role runs from it (`syncflow run <role>`).
# It runs as the unprivileged user 10001 (numeric, so Kubernetes' runAsNonRoot can verify it);
# nothing is written under /app at run time (Faust's data directory goes to /tmp),
# so the root filesystem can be mounted read-only with an emptyDir on /tmp.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 syncflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/syncflow --create-home --shell /usr/sbin/nologin syncflow
WORKDIR /app
# SYNCFLOW_HTTP_HOST: every role's HTTP server (metrics, health, ingest, emulators) listens on
# all interfaces inside the container, where a probe or another container can reach it.
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 SYNCFLOW_HTTP_HOST=0.0.0.0
COPY pyproject.toml README.md ./
COPY syncflow ./syncflow
COPY avro_schemas ./avro_schemas
RUN pip install -e .
USER 10001:10001
ENTRYPOINT ["syncflow"]
