#!/usr/bin/env bash
# Creates visionbatch's Kafka topics on the local broker, idempotently:
#   visionbatch.runs      ${VB_RUNS_PARTITIONS:-6} partitions
#   visionbatch.runs.dlq  1 partition
# Same as `deploy/local/services.sh topics` (which `services.sh start` runs);
# honours the same environment (KAFKA_PORT, VB_SERVICES_DIR, …).
set -euo pipefail
case "${1:-}" in
  -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
exec "$(dirname "$0")/services.sh" topics
