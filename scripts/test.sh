#!/usr/bin/env bash
# Runs every test of visionbatch: installs dependencies, starts Kafka and
# Redis from deploy/local/ (beside the first compile), and runs these passes,
# printing the wall time of each:
#   normal    -Werror build: every unit and system test (ctest -j); the
#             other trees compile meanwhile on one core (the tests mostly wait)
#   release   Release build (-O2, hardened): readelf checks of its programs
#   clang     clang -Werror build of everything, compile only
#   asan      AddressSanitizer+UndefinedBehaviorSanitizer build: the tests
#             that depend on the build (ctest -LE 'once|slow')
#   tsan      ThreadSanitizer build: unit tests and the producer, worker,
#             cron API and operator system tests, zero reports allowed
#   k8s       the Kubernetes manifests: strict decoding with k8s.io/api
#   compose   the compose deployment in a real container engine
#
#   scripts/test.sh               everything (what .ci/run does)
#   scripts/test.sh --quick       normal + release passes, then k8s and compose
#   scripts/test.sh --no-compose  skip the compose test (it needs root)
#   scripts/test.sh -R regex      pass a test filter on to ctest
# Environment: VB_CTEST_JOBS (tests run at once, default 4: the system
# tests mostly wait on I/O), KAFKA_PORT/REDIS_PORT (as services.sh; the
# tests get KAFKA_BROKERS and REDIS_URL from them unless those are set).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
compose=1
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-compose) compose=0 ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
bg_pid=
services_log=$(mktemp)
bg_log=$(mktemp)
bg_times=$(mktemp)
cleanup() {
  [ -n "$bg_pid" ] && wait "$bg_pid" 2>/dev/null # a failed pass: let the compiles end
  deploy/local/services.sh stop >/dev/null 2>&1 || true
  rm -f "$services_log" "$bg_log" "$bg_times"
}
trap cleanup EXIT
if [ -x deploy/local/services.sh ]; then
  # With the secured listeners (SASL, TLS) that tests/system/test_kafka_security.py
  # uses; services.sh remembers them for the restarts some tests make.
  KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-9094} KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-9095} \
    deploy/local/services.sh start >"$services_log" 2>&1 &
  services_pid=$!
fi
join_bg() { # pid, log file, what: waits for a background job; on failure shows its log, stops
  if ! wait "$1"; then
    cat "$2" >&2
    echo "$3 failed" >&2
    exit 1
  fi
}
services_ready() {
  [ -z "$services_pid" ] && return 0
  join_bg "$services_pid" "$services_log" "starting the services"
  cat "$services_log"
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

# The sanitizer, Release and clang trees compile in the background, one job
# at a time, while the normal pass's tests run: those mostly wait on I/O, so
# on two cores the compiles cost the suite little wall time and leave the
# tests a core. (Not niced: on a machine busy with other work a niced compile
# starves and the passes after the normal one wait for it.)
bg_builds() { # name:dir:cmake args… entries, built one after the other
  local spec name dir t0
  for spec in "$@"; do
    IFS=: read -r name dir rest <<<"$spec"
    t0=$SECONDS
    # shellcheck disable=SC2086 # $rest holds several cmake arguments
    CC=$([ "$name" = clang ] && echo clang || echo "${CC:-cc}") \
      bash -c "cmake -S . -B $dir $rest >/dev/null && cmake --build $dir -j 1 >/dev/null" ||
      return 1
    printf '%-8s %4d s (build, beside the normal tests)\n' "$name" $((SECONDS - t0)) >>"$bg_times"
  done
}
wait_bg_builds() {
  [ -z "$bg_pid" ] && return 0
  join_bg "$bg_pid" "$bg_log" "a background build"
  bg_pid=
}

normal_pass() {
  configure_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
  local specs=("release:build-release:-DCMAKE_BUILD_TYPE=Release -DVB_TESTS=OFF")
  if [ "$quick" -eq 0 ]; then
    specs+=("clang:build-clang:-DCMAKE_BUILD_TYPE=Release"
      "asan:build-asan:-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVB_SANITIZE=ON"
      "tsan:build-tsan:-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVB_TSAN=ON")
  fi
  bg_builds "${specs[@]}" >"$bg_log" 2>&1 &
  bg_pid=$!
  run_ctest build
}

release_pass() { # the tree was compiled beside the normal tests
  wait_bg_builds
  (cd tests/system && VB_BIN_DIR=$root/build-release python3 -m unittest test_hardening)
}

asan_pass() {
  wait_bg_builds
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan -LE 'once|slow'
}

tsan_pass() {
  wait_bg_builds
  # Reports go to files, so one from a program a test killed or whose exit
  # status it does not check still fails the pass.
  local reports=$root/build-tsan/tsan-reports
  rm -rf "$reports" && mkdir -p "$reports"
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan/suppressions.txt log_path=$reports/report" \
    run_ctest build-tsan -R '^(unit\.|system\.test_(producer|worker|worker_restarts|cron_api|ops)$)'
  if [ -n "$(ls -A "$reports")" ]; then
    cat "$reports"/* >&2
    echo "ThreadSanitizer reported the races above" >&2
    return 1
  fi
}

k8s_pass() { # strict decoding of the manifests with k8s.io/api (tests/k8s)
  [ -d /usr/local/go/bin ] && PATH=$PATH:/usr/local/go/bin
  (cd tests/k8s && go test -count=1 ./...)
}

timed normal normal_pass
timed release release_pass
if [ "$quick" -eq 0 ]; then
  timed asan asan_pass
  timed tsan tsan_pass
fi
timed k8s k8s_pass
if [ "$compose" -eq 1 ]; then
  timed compose tests/compose/run.sh # the Docker deployment in a real engine
fi
echo "== times =="
printf '%s\n' "${times[@]}"
cat "$bg_times"
printf '%-8s %4d s\n' total $((SECONDS - t_start))
echo "all test suites passed"
