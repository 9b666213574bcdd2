# MLflow 3.17.2 with the PostgreSQL driver, for docker-compose.yml.
FROM docker.io/library/python:3.12-slim
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.10 cryptography
# The artifact volume is created from this directory: owned by the user MLflow runs as (a named
# volume created by root would refuse its writes).
RUN mkdir -p /mlartifacts && chown 1000:1000 /mlartifacts
USER 1000:1000
EXPOSE 5000
