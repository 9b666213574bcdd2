# PostgreSQL 15 from Debian, behaving like the official postgres:15 image for what
# docker-compose.yml uses: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on first start, data in
# /var/lib/postgresql/data, password authentication over the network, pg_isready on PATH.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/lib/postgresql/15/bin/pg_isready /usr/local/bin/pg_isready \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres /var/run/postgresql
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER postgres
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH LANG=C.UTF-8
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
