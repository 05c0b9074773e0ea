# The syncflow image: every role runs from it (`syncflow run <role>`).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY syncflow ./syncflow
COPY avro_schemas ./avro_schemas
RUN pip install -e .
ENTRYPOINT ["syncflow"]
