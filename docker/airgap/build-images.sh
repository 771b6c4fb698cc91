#!/usr/bin/env bash
# Builds the third-party images of docker/compose.yaml from Debian packages,
# for hosts that reach no image registry (the air-gapped path of
# docs/deploy.md):
#
#   debian:trixie, debian:trixie-slim       debootstrap --variant=minbase trixie
#   apache/kafka:<version>                  Debian's JRE + the Kafka jars of
#                                           deploy/local/kafka/pom.xml (Maven)
#   redis:8-trixie                          Debian's redis-server
#
#   docker/airgap/build-images.sh [--engine docker|podman] [--pull] [debian|kafka|redis…]
#
# Without names it builds all three (kafka and redis need debian first).
# An image is built only when its tag is missing, or when this script built it
# from other inputs (label org.visionbatch.input = hash of the inputs); an
# image of that name pulled from a registry is left alone. --pull tries a
# registry first (30 s) and builds only what it cannot pull. Needs root
# (debootstrap), debootstrap and Maven; the debootstrap tree is cached in
# $VB_IMAGE_CACHE (default /var/cache/visionbatch-images).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
engine=${VB_ENGINE:-docker}
pull=0
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift ;;
    --pull) pull=1 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    debian | kafka | redis) only+=("$1") ;;
    *) echo "build-images.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
cache=${VB_IMAGE_CACHE:-/var/cache/visionbatch-images}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
label=org.visionbatch.input
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/deploy/local/kafka/pom.xml" | head -n1)
# Podman keeps HEALTHCHECK only in docker-format images.
build_flags=()
[ "$engine" = podman ] && build_flags+=(--format docker)

say() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

# Hash of the files an image is made from (plus extra words).
# Images built FROM debian:trixie-slim include its id, so a new base rebuilds them.
inputs_hash() {
  (cat "$@"; echo "$mirror $kafka_version ${base_id:-}") | sha256sum | cut -c1-16
}

# 0 when TAG needs no build: present and either not ours or ours from HASH.
up_to_date() { # tag hash
  local have
  have=$($engine image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null) || return 1
  [ "$have" = "$2" ] || [ "$have" = "<no value>" ] || [ -z "$have" ]
}

try_pull() {
  [ "$pull" -eq 1 ] || return 1
  timeout 30 "$engine" pull -q "$1" >/dev/null 2>&1
}

# What the Debian base is made of; change it to force a new base.
suite=trixie
debian_recipe="debootstrap --variant=minbase $suite $mirror; sources: $suite $suite-updates $suite-security"

build_debian() {
  local hash tree
  hash=$(echo "$debian_recipe" | sha256sum | cut -c1-16)
  if up_to_date "debian:$suite" "$hash" && up_to_date "debian:$suite-slim" "$hash"; then
    return 0
  fi
  try_pull "debian:$suite" && try_pull "debian:$suite-slim" && return 0
  command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
  tree=$cache/$suite-minbase-$hash
  if [ ! -f "$tree/.complete" ]; then
    say "debootstrap --variant=minbase $suite (once; cached in $cache)"
    rm -rf "$cache"/*-minbase-* && mkdir -p "$cache"
    debootstrap --variant=minbase "$suite" "$tree" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -n 20 "$cache/debootstrap.log" >&2; rm -rf "$tree"; die "debootstrap failed"; }
    cat >"$tree/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
    rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
    touch "$tree/.complete"
  fi
  say "importing debian:$suite and debian:$suite-slim"
  tar -C "$tree" --exclude=./.complete -c . |
    "$engine" import --change "LABEL $label=$hash" --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "debian:$suite" >/dev/null
  "$engine" tag "debian:$suite" "debian:$suite-slim"
}

build_from() { # tag dockerfile context-dir hash
  say "building $1"
  "$engine" build "${build_flags[@]+"${build_flags[@]}"}" -q --label "$label=$4" \
    -f "$2" -t "$1" "$3" >/dev/null
}

build_kafka() {
  local tag=apache/kafka:$kafka_version hash libs ctx
  hash=$(inputs_hash "$here/Dockerfile.kafka" "$here"/bin/* "$here"/*.properties \
    "$root/deploy/local/kafka/pom.xml")
  up_to_date "$tag" "$hash" && return 0
  try_pull "$tag" && return 0
  "$root/deploy/local/services.sh" fetch >/dev/null
  libs=${XDG_CACHE_HOME:-$HOME/.cache}/visionbatch/kafka-$kafka_version/libs
  [ -d "$libs" ] || die "Kafka jars missing in $libs"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  cp -r "$libs" "$ctx/libs"
  cp -r "$here/bin" "$here/log4j2.properties" "$here/tools-log4j2.properties" "$ctx/"
  build_from "$tag" "$here/Dockerfile.kafka" "$ctx" "$hash"
}

build_redis() {
  local tag=redis:8-$suite hash
  hash=$(inputs_hash "$here/Dockerfile.redis" "$here/redis-entrypoint.sh")
  up_to_date "$tag" "$hash" && return 0
  try_pull "$tag" && return 0
  build_from "$tag" "$here/Dockerfile.redis" "$here" "$hash"
}

[ ${#only[@]} -gt 0 ] || only=(debian kafka redis)
t0=$(date +%s)
for what in "${only[@]}"; do
  [ "$what" = debian ] || base_id=$("$engine" image inspect -f '{{.Id}}' "debian:$suite-slim" 2>/dev/null) ||
    die "debian:$suite-slim missing: build debian first"
  "build_$what"
done
say "${only[*]} ready in $(($(date +%s) - t0))s"
