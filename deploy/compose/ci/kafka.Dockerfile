# Apache Kafka 4.1.1 (KRaft) from its Maven jars on Debian's Java 17, configured like the
# official apache/kafka image: every KAFKA_* environment variable becomes a server property
# (KAFKA_NODE_ID → node.id), the storage is formatted on first start, /opt/kafka/bin/kafka-topics.sh
# answers the healthcheck. The build context holds `libs/` (the jars ../../shared's kafka-local.sh
# fetches), `tools/` (its KafkaReady check) and log4j2.properties.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1000 appuser \
 && useradd --system --uid 1000 --gid appuser --home-dir /opt/kafka appuser \
 && install -d -o appuser -g appuser /var/lib/kafka/data /opt/kafka/config
COPY libs/ /opt/kafka/libs/
COPY tools/ /opt/kafka/tools/
COPY log4j2.properties /opt/kafka/config/log4j2.properties
COPY --chmod=0755 kafka-entrypoint.sh /opt/kafka/bin/kafka-entrypoint.sh
COPY --chmod=0755 kafka-topics.sh /opt/kafka/bin/kafka-topics.sh
USER appuser
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/kafka-entrypoint.sh"]
