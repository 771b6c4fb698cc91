#!/usr/bin/env bash
# The demo: installs dependencies, builds visionbatch, starts the stand-in
# platform (serving the guide's example run: two images and a descriptions
# file) and backend, and runs the guide's manual-test command
# (`visionbatch run-once` with the five flags) against them. Prints what the
# platform received: one HTML report for the run, with its form fields.
#
#   scripts/demo.sh            the run-once demo
#   scripts/demo.sh --keep     leave the stand-ins running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keep=0
case "${1:-}" in
  -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --keep) keep=1 ;;
esac

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
echo "built: build/visionbatch"

work=$(mktemp -d /tmp/visionbatch-demo.XXXXXX)
pids=()
cleanup() {
  [ "$keep" -eq 1 ] && { echo "stand-ins left running (pids ${pids[*]}), files in $work"; return; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_stub() { # name, args…
  local name=$1
  shift
  python3 "tests/stubs/$name.py" --port 0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q '^PORT ' "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  sed -n 's/^PORT //p' "$work/$name.out"
}
pport=$(start_stub platform_server --scenario tests/fixtures/guide_example.json)
bport=$(start_stub backend_server --polls-to-complete 2)
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
