#!/bin/sh
# Entry point: KAFKA_<NAME> variables become server.properties entries the way
# the official image maps them (_ → ., __ → _, ___ → -; the JVM option
# variables are left alone), the data directory is formatted with CLUSTER_ID
# on first start, then the broker runs in the foreground.
set -eu
props=/opt/kafka/config/server.properties
: >"$props"
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_TOOLS_HEAP_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed 's/___/-/g; s/__/@/g; s/_/./g; s/@/_/g')
  printf '%s=%s\n' "$key" "$value" >>"$props"
done
: "${CLUSTER_ID:?CLUSTER_ID must be set (kafka-storage.sh random-uuid)}"
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$props" >/dev/null
exec java ${KAFKA_HEAP_OPTS:--Xmx512m} -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties \
  -cp "/opt/kafka/libs/*" kafka.Kafka "$props"
