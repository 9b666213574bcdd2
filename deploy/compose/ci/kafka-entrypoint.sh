#!/bin/bash
# KAFKA_* → server.properties (as the apache/kafka image does), storage formatted once, broker.
set -euo pipefail
props=/opt/kafka/config/server.properties
: > "$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_JVM_OPTS|KAFKA_CLUSTER_ID) continue ;;
    KAFKA_*) key="${name#KAFKA_}"; key="${key,,}"; echo "${key//_/.}=$value" >> "$props" ;;
  esac
done < <(env)
grep -q '^log.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >> "$props"
java_opts=(${KAFKA_HEAP_OPTS:--Xms64m -Xmx512m} ${KAFKA_JVM_OPTS:--XX:+UseSerialGC})
cp=(-cp "/opt/kafka/libs/*")
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  cid="${KAFKA_CLUSTER_ID:-$(java "${cp[@]}" kafka.tools.StorageTool random-uuid)}"
  java "${cp[@]}" kafka.tools.StorageTool format -t "$cid" -c "$props" --ignore-formatted
fi
exec java "${java_opts[@]}" -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -Dkafka.logs.dir=/tmp \
  "${cp[@]}" kafka.Kafka "$props"
