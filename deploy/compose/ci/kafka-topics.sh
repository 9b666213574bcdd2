#!/bin/bash
# The healthcheck's `kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --list`: exit 0 once the
# broker answers DescribeCluster and ListTopics (kafka-local.sh's KafkaReady), whatever the
# arguments (podman's Docker API may pass a shell test split on spaces).
exec java -Xmx128m -cp "/opt/kafka/tools:/opt/kafka/libs/*" KafkaReady 127.0.0.1:9092 8
