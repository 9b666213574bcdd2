#!/bin/bash
# The debezium/connect image's environment → connect-distributed.properties, then the worker.
set -euo pipefail
props=/kafka/config/connect-distributed.properties
{
  echo "bootstrap.servers=${BOOTSTRAP_SERVERS:?BOOTSTRAP_SERVERS is required}"
  echo "group.id=${GROUP_ID:-1}"
  echo "config.storage.topic=${CONFIG_STORAGE_TOPIC:?}"
  echo "offset.storage.topic=${OFFSET_STORAGE_TOPIC:?}"
  echo "status.storage.topic=${STATUS_STORAGE_TOPIC:?}"
  echo "key.converter=${KEY_CONVERTER:-org.apache.kafka.connect.json.JsonConverter}"
  echo "value.converter=${VALUE_CONVERTER:-org.apache.kafka.connect.json.JsonConverter}"
  echo "plugin.path=/kafka/connect"
  echo "plugin.discovery=service_load"
  echo "listeners=http://0.0.0.0:8083"
  echo "rest.advertised.host.name=${ADVERTISED_HOST_NAME:-$(hostname -i 2>/dev/null | cut -d' ' -f1 || echo 127.0.0.1)}"
  while IFS='=' read -r name value; do
    case "$name" in
      CONNECT_*) key="${name#CONNECT_}"; key="${key,,}"; echo "${key//_/.}=$value" ;;
    esac
  done < <(env)
} > "$props"
exec java ${HEAP_OPTS:--Xms64m -Xmx384m} -XX:+UseSerialGC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/kafka/config/log4j2.properties -cp "/kafka/libs/*" \
  org.apache.kafka.connect.cli.ConnectDistributed "$props"
