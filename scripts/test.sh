#!/usr/bin/env bash
# Runs every test of visionbatch: installs dependencies, compiles a Release
# build, builds and tests twice (a normal -Werror build and an
# AddressSanitizer+UndefinedBehaviorSanitizer build), starts Kafka and Redis
# from deploy/local/, and runs the unit and system tests of both builds
# through CTest; then, once, the Kubernetes manifests (strict decoding with
# k8s.io/api, tests/k8s) and the compose deployment in a real container
# engine (tests/compose/run.sh).
#
#   scripts/test.sh               everything (what .ci/run does)
#   scripts/test.sh --quick       normal build only, no sanitizer pass
#   scripts/test.sh --no-compose  skip the compose test (it needs root)
#   scripts/test.sh -R regex      pass a test filter on to ctest
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
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

if [ -x deploy/local/services.sh ]; then
  # With the secured listeners (SASL, TLS) that tests/system/test_kafka_security.py
  # uses; services.sh remembers them for the restarts some tests make.
  KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-9094} KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-9095} \
    deploy/local/services.sh start
  trap 'deploy/local/services.sh stop >/dev/null 2>&1 || true' EXIT
fi

run_suite() { # build-dir, extra cmake args…
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" "${ctest_args[@]+"${ctest_args[@]}"}")
}

echo "== release build (compile only: -O2 finds other warnings) =="
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVB_TESTS=OFF >/dev/null
cmake --build build-release -j "$jobs" >/dev/null
echo "== normal build =="
run_suite build
if [ "$quick" -eq 0 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build =="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build-asan -DVB_SANITIZE=ON
fi
echo "== Kubernetes manifests: strict decoding with k8s.io/api (tests/k8s) =="
[ -d /usr/local/go/bin ] && PATH=$PATH:/usr/local/go/bin
(cd tests/k8s && go test -count=1 ./...)
if [ "$compose" -eq 1 ]; then
  echo "== compose: the Docker deployment in a real engine (tests/compose) =="
  tests/compose/run.sh
fi
echo "all test suites passed"
