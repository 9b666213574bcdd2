# MLflow 3.17.2 with the PostgreSQL driver on Debian's Python (the pins of ../mlflow.Dockerfile).
# The build may mount a pip cache at /root/.cache/pip and the build machine's CA bundle (a
# machine that reaches PyPI through a TLS-inspecting proxy) with PIP_CERT naming it.
FROM docker.io/library/debian:bookworm-slim
ARG PIP_CERT=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/mlflow \
 && if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && /opt/mlflow/bin/pip install -q --disable-pip-version-check mlflow==3.17.2 psycopg2-binary==2.9.10 cryptography \
 && mkdir -p /mlartifacts && chown 1000:1000 /mlartifacts
ENV PATH=/opt/mlflow/bin:$PATH
USER 1000:1000
EXPOSE 5000
