#!/usr/bin/env bash
# The demo: installs dependencies, builds visionbatch, starts the stand-in
# platform (serving the guide's example run: two images and a descriptions
# file) and backend, then
#   1. runs the guide's manual-test command (`visionbatch run-once` with the
#      five flags) against them, and shows what the platform received;
#   2. runs the full stack — Kafka and Redis (deploy/local/services.sh), the
#      producer with its REST API, two workers — creates the guide's cron job
#      with the guide's curl body, fires it, and shows the execution and the
#      report the platform received.
#
#   scripts/demo.sh                 both parts
#   scripts/demo.sh --run-once      part 1 only
#   scripts/demo.sh --keep          leave the stand-ins and services running
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keep=0
distributed=1
for arg in "$@"; do
  case "$arg" in
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --keep) keep=1 ;;
    --run-once) distributed=0 ;;
    *) echo "demo.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
echo "built: build/visionbatch"

work=$(mktemp -d /tmp/visionbatch-demo.XXXXXX)
pids=()
services_started=0
cleanup() {
  [ "$keep" -eq 1 ] && { echo "left running (pids ${pids[*]}), files in $work"; return; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "$services_started" -eq 1 ] && deploy/local/services.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Sets stub_port. Not called in $(…): the pid must reach this shell's pids
# for cleanup to stop the stand-in.
start_stub() { # name, args…
  local name=$1
  shift
  python3 "tests/stubs/$name.py" --port 0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q '^PORT ' "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  stub_port=$(sed -n 's/^PORT //p' "$work/$name.out")
}
start_stub platform_server --scenario tests/fixtures/guide_example.json
pport=$stub_port
start_stub backend_server --polls-to-complete 2
bport=$stub_port
platform="http://127.0.0.1:$pport"
echo "stand-in platform on $platform, backend on http://127.0.0.1:$bport"
echo
echo "\$ visionbatch run-once --external-api-get-url … --organization-id 38162954-…"
build/visionbatch run-once \
  --external-api-get-url "$platform/api/v1/documents/vision_analysis" \
  --external-api-post-url "$platform/api/v1/documents/vision_analysis/upload" \
  --external-api-key "vb-test-key-SECRETKEY-4f1c2e9a" \
  --backend-api-url "http://127.0.0.1:$bport" \
  --organization-id "38162954-469A-40BC-B619-3E9F71DE6DB9" \
  --log-file "$work/batch_processor.log" --temp-dir "$work/tmp" \
  --status-poll-min-ms 200
echo
echo "what the platform received:"
python3 - "$platform" <<'PY'
import json, sys, urllib.request
recs = json.load(urllib.request.urlopen(sys.argv[1] + "/_control/records"))
for u in recs["uploads"]:
    f = u["file"]
    print("  POST upload: vision_analysis_id=%s organization_id=%s" % (
        u["fields"]["vision_analysis_id"], u["fields"]["organization_id"]))
    print("  file %s (%s, %d bytes) -> HTTP %s" % (f["filename"], f["content_type"], f["size"], u["status"]))
    text = u.get("text") or ""
    for needle in ("oceanix_01.jpg", "Port side hull section near waterline",
                   "oceanix_02.jpg", "Starboard deck area with recent repairs"):
        print("    report mentions %-45r %s" % (needle, "yes" if needle in text else "NO"))
runs = recs["runs"]
print("  runs still unprocessed on the platform: %d" % sum(1 for r in runs if not r["processed"]))
PY

[ "$distributed" -eq 1 ] || exit 0

echo
echo "== part 2: the full stack (Kafka, Redis, producer + REST API, two workers) =="
deploy/local/services.sh start
services_started=1
topic=visionbatch.demo
deploy/local/services.sh delete-topic "$topic" >/dev/null
deploy/local/services.sh create-topic "$topic" 4
redis_url=redis://127.0.0.1:${REDIS_PORT:-6379}/7   # a database of its own, emptied first
redis-cli -p "${REDIS_PORT:-6379}" -n 7 FLUSHDB >/dev/null
curl -s -X POST "$platform/_control/reset" >/dev/null   # the guide's run is unprocessed again

export VISIONBATCH_SECRET_KEY=$(openssl rand -base64 32)
export REDIS_URL=$redis_url KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT:-9092}
export VISIONBATCH_TOPIC=$topic VISIONBATCH_GROUP_ID=visionbatch-demo-$$
export VISIONBATCH_STATUS_POLL_MIN_MS=200 VISIONBATCH_TEMP_DIR=$work/tmp
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port)
build/visionbatch-producer --listen "127.0.0.1:$api_port" --log-file "$work/producer.log" \
  2>"$work/producer.err" &
pids+=($!)
for n in 1 2; do
  build/visionbatch-worker --worker-id "demo-worker-$n" --concurrency 2 \
    --metrics-listen "127.0.0.1:$(free_port)" --log-file "$work/worker$n.log" \
    2>"$work/worker$n.err" &
  pids+=($!)
done
api="http://127.0.0.1:$api_port"
for _ in $(seq 100); do curl -sf "$api/healthz" >/dev/null && break; sleep 0.1; done
echo "producer REST API on $api, two workers running"
echo
echo "\$ curl -X POST $api/cron-jobs -H 'Content-Type: application/json' -d '{…the guide's body…}'"
job=$(curl -s -X POST "$api/cron-jobs" -H "Content-Type: application/json" -d "{
  \"name\": \"Hourly Vision Analysis\", \"schedule\": \"0 * * * *\",
  \"external_api_get_url\": \"$platform/api/v1/documents/vision_analysis\",
  \"external_api_post_url\": \"$platform/api/v1/documents/vision_analysis/upload\",
  \"external_api_key\": \"vb-test-key-SECRETKEY-4f1c2e9a\",
  \"backend_api_url\": \"http://127.0.0.1:$bport\",
  \"organization_id\": \"38162954-469A-40BC-B619-3E9F71DE6DB9\", \"enabled\": true}")
echo "$job"
job_id=$(echo "$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo
echo "\$ curl $api/cron-jobs/$job_id"
curl -s "$api/cron-jobs/$job_id"
echo
echo
echo "\$ curl -X POST $api/cron-jobs/$job_id/run        # fire now instead of waiting for the hour"
curl -s -X POST "$api/cron-jobs/$job_id/run"
echo
status=running
for _ in $(seq 600); do
  status=$(curl -s "$api/cron-jobs/$job_id/executions" |
    python3 -c 'import json,sys; e=json.load(sys.stdin)["executions"]; print(e[0]["status"] if e else "none")')
  [ "$status" != running ] && [ "$status" != none ] && break
  sleep 0.2
done
echo
echo "\$ curl $api/cron-jobs/$job_id/executions"
curl -s "$api/cron-jobs/$job_id/executions" | python3 -m json.tool
echo
echo "what the platform received:"
python3 - "$platform" <<'PY'
import json, sys, urllib.request
recs = json.load(urllib.request.urlopen(sys.argv[1] + "/_control/records"))
ok = [u for u in recs["uploads"] if u["status"] == 200]
for u in ok:
    print("  report %s for run %s (%d bytes)" % (u["file"]["filename"], u["fields"]["vision_analysis_id"], u["file"]["size"]))
print("  reports uploaded: %d (one expected)" % len(ok))
PY
echo
echo "\$ visionbatch runs list"
build/visionbatch runs list
[ "$status" = success ] || { echo "demo: the execution ended '$status'" >&2; exit 1; }
echo
echo "demo complete: the guide's run was processed by the distributed stack and its report uploaded once."
echo "web console: $api/ui/ (run scripts/demo.sh --keep to leave it up and open it in a browser)"
