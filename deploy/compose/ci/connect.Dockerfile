# Kafka Connect 4.1.1 (distributed) with the Debezium 3.6.1 PostgreSQL connector, from their
# Maven jars (../../shared's cdc-local.sh fetches them) on Debian's Java 17, configured like the
# quay.io/debezium/connect image: BOOTSTRAP_SERVERS, GROUP_ID, CONFIG_/OFFSET_/STATUS_STORAGE_TOPIC,
# and every CONNECT_* variable as a worker property (CONNECT_CONFIG_PROVIDERS → config.providers).
# The build context holds `lib/` and `plugins/`.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 kafka \
 && useradd --system --uid 1001 --gid kafka --home-dir /kafka kafka \
 && install -d -o kafka -g kafka /kafka /kafka/config
COPY lib/ /kafka/libs/
COPY plugins/ /kafka/connect/
COPY --chmod=0755 connect-entrypoint.sh /kafka/connect-entrypoint.sh
COPY connect-log4j2.properties /kafka/config/log4j2.properties
USER kafka
EXPOSE 8083
ENTRYPOINT ["/kafka/connect-entrypoint.sh"]
