#!/usr/bin/env bash
# Runs every test of visionbatch: installs dependencies, starts Kafka and
# Redis from deploy/local/ (while the first trees compile), and runs these
# passes, each timed:
#   release   Release build (-O2, hardened), compile only; readelf checks
#   clang     clang -Werror build of everything, compile only
#   normal    -Werror build: every unit and system test (ctest -j)
#   asan      AddressSanitizer+UndefinedBehaviorSanitizer build: the tests
#             that depend on the build (ctest -LE once)
#   tsan      ThreadSanitizer build: unit tests and the producer, worker,
#             cron API and operator system tests, zero reports allowed
#
#   scripts/test.sh            everything (what .ci/run does)
#   scripts/test.sh --quick    release + normal passes only
#   scripts/test.sh -R regex   pass a test filter on to ctest
# Environment: VB_CTEST_JOBS (tests run at once, default 4: the system
# tests mostly wait on I/O), KAFKA_PORT/REDIS_PORT (as services.sh; the
# tests get KAFKA_BROKERS and REDIS_URL from them unless those are set).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
ctest_jobs=${VB_CTEST_JOBS:-4}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:${REDIS_PORT:-6379}}

t_start=$SECONDS
times=()
timed() { # name, command…: runs the command, records its wall time
  local name=$1 t0=$SECONDS
  shift
  echo "== $name =="
  "$@"
  times+=("$(printf '%-8s %4d s' "$name" $((SECONDS - t0)))")
}

# Kafka's JVM takes a while to come up: start the services beside the first
# compiles and wait for them before the first test.
services_pid=
if [ -x deploy/local/services.sh ]; then
  deploy/local/services.sh start >"$root/.services-start.log" 2>&1 &
  services_pid=$!
  trap 'deploy/local/services.sh stop >/dev/null 2>&1 || true' EXIT
fi
services_ready() {
  [ -z "$services_pid" ] && return 0
  if ! wait "$services_pid"; then
    cat "$root/.services-start.log" >&2
    echo "services did not start" >&2
    exit 1
  fi
  cat "$root/.services-start.log"
  services_pid=
}

configure_build() { # build-dir, cmake args…
  local dir=$1
  shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" >/dev/null
}

run_ctest() { # build-dir, ctest args…
  local dir=$1
  shift
  services_ready
  (cd "$dir" && ctest --output-on-failure -j "$ctest_jobs" "$@" \
    "${ctest_args[@]+"${ctest_args[@]}"}")
}

release_pass() {
  configure_build build-release -DCMAKE_BUILD_TYPE=Release -DVB_TESTS=OFF
  (cd tests/system && VB_BIN_DIR=$root/build-release python3 -m unittest test_hardening)
}

clang_pass() {
  CC=clang configure_build build-clang -DCMAKE_BUILD_TYPE=Release
}

normal_pass() {
  configure_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
  run_ctest build
}

asan_pass() {
  configure_build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVB_SANITIZE=ON
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan -LE once
}

tsan_pass() {
  configure_build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVB_TSAN=ON
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan/suppressions.txt" \
    run_ctest build-tsan -R '^(unit\.|system\.test_(producer|worker|cron_api|ops)$)'
}

timed release release_pass
if [ "$quick" -eq 0 ]; then
  timed clang clang_pass
fi
timed normal normal_pass
if [ "$quick" -eq 0 ]; then
  timed asan asan_pass
  timed tsan tsan_pass
fi
echo "== times =="
printf '%s\n' "${times[@]}"
printf '%-8s %4d s\n' total $((SECONDS - t_start))
echo "all test suites passed"
