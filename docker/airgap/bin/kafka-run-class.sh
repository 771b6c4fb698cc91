#!/bin/sh
# Runs one Kafka class (a tool) with the image's jars; warnings to stderr.
exec java ${KAFKA_TOOLS_HEAP_OPTS:--Xmx256m} -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/tools-log4j2.properties \
  -cp "/opt/kafka/libs/*" "$@"
