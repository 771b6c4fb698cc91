#!/usr/bin/env bash
# Installs every build and test dependency of visionbatch on Debian 12
# (bookworm, the machines) or 13 (trixie, the container images): the package
# names of the shared libraries and of Java differ between the two.
# Idempotent: packages already present are left alone. Used by the README's
# commands, .ci/run and docker/Dockerfile, so all three install the same set.
#
#   scripts/install-deps.sh            build + test dependencies (default),
#                                      including the Python tools of the tests
#                                      (PyPI) in the checkout's .venv/
#   scripts/install-deps.sh --runtime  only the shared libraries the binaries need
#   scripts/install-deps.sh --compose  the container engine of the compose test
#                                      (docker.io, docker-compose, debootstrap)
set -euo pipefail

codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
case "$codename" in
  bookworm)
    JAVA_PKG=openjdk-17-jre-headless
    LIB_PKGS=(libcurl4 librdkafka1 libhiredis0.14 libmicrohttpd12 libssl3)
    ;;
  *) # trixie and later: 64-bit time_t names, hiredis with TLS
    JAVA_PKG=openjdk-21-jre-headless
    LIB_PKGS=(libcurl4t64 librdkafka1 libhiredis1.1.0 libmicrohttpd12t64 libssl3t64)
    ;;
esac

BUILD_PKGS=(
  build-essential cmake pkg-config ca-certificates
  libcurl4-openssl-dev libcjson-dev librdkafka-dev libhiredis-dev
  libmicrohttpd-dev libssl-dev libcmocka-dev
)
TEST_PKGS=(
  redis-server redis-tools python3 python3-yaml kcat iproute2 tzdata procps libjpeg-turbo-progs
  "$JAVA_PKG" maven wrk python3-venv chromium clang nginx
)
# nginx: the fast platform stand-in of tests/bench/bench_cron.py, run by the
# benchmark under its own configuration (never as a system service).
# PyPI packages of the tests, installed into .venv/ of the checkout (never
# into the system's Python): the OpenAPI validator of tests/system/test_openapi.py
# and Playwright, which drives Debian's chromium (above) in
# tests/browser/test_console.py (its own browser downloads are never used).
PY_TEST_PKGS=(openapi-spec-validator==0.9.0 playwright==1.65.2)
# The engine of tests/compose/run.sh and of docs/deploy.md's air-gapped path.
COMPOSE_PKGS=(docker.io docker-compose debootstrap iptables kcat curl python3 openssl)
RUNTIME_PKGS=(ca-certificates libcjson1 "${LIB_PKGS[@]}" tzdata)

mode=${1:-all}
case "$mode" in
  --runtime) pkgs=("${RUNTIME_PKGS[@]}") ;;
  --build) pkgs=("${BUILD_PKGS[@]}") ;;
  --compose) pkgs=("${COMPOSE_PKGS[@]}") ;;
  all | --all) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  -h | --help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "install-deps.sh: unknown option '$mode' (try --help)" >&2
    exit 2
    ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Java and Maven may come from outside apt (a preinstalled JDK); accept those.
if [ "$mode" != --runtime ] && [ "$mode" != --compose ]; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in
      openjdk-*-jre-headless) command -v java >/dev/null 2>&1 && continue ;;
      maven) command -v mvn >/dev/null 2>&1 && continue ;;
    esac
    filtered+=("$p")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install-deps: done"
fi

case "$mode" in
  all | --all)
    venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
    if "$venv/bin/python" -m pip show -q "${PY_TEST_PKGS[@]%%==*}" >/dev/null 2>&1; then
      echo "install-deps: Python test tools present in $venv"
    else
      echo "install-deps: installing ${PY_TEST_PKGS[*]} into $venv"
      python3 -m venv "$venv"
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PY_TEST_PKGS[@]}"
    fi
    ;;
esac
