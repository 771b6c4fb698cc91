#!/usr/bin/env bash
# The compose test: the Docker deployment of docs/deploy.md in a real engine.
#
#   tests/compose/run.sh            (as root; scripts/test.sh runs it once)
#
# 1. Installs the engine from Debian's packages (scripts/install-deps.sh
#    --compose: docker.io, docker-compose 1.29, debootstrap) and starts dockerd
#    when none answers, with what this host needs (cgroupfs without systemd,
#    overlay2 or else vfs storage, a nofile ulimit Kafka can live with).
# 2. Builds the third-party images from Debian packages when no registry has
#    them (docker/airgap/build-images.sh; cached between runs), then runs
#    tests/compose/check.py: a copy of the checkout with a docker/.env made
#    from .env.example, `docker-compose up -d --build --scale worker=2` plus
#    the stand-ins (compose.test.yaml), and the checks listed there. The
#    stack always ends with `down -v`.
#
# Environment: VB_COMPOSE_TIMEOUT (seconds for the checks, 900: Kafka's JVM
# is slow to start on a busy 2-core host).
# Prints "compose: N passed, N failed"; exit 0 only when all passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
say() { printf 'compose-test: %s\n' "$*"; }
t0=$(date +%s)

[ "$(id -u)" -eq 0 ] || { say "needs root (dockerd, debootstrap); scripts/test.sh --no-compose skips it"; exit 1; }
"$root/scripts/install-deps.sh" --compose

# Debian's client and compose, whatever else is on PATH.
export PATH=/usr/sbin:/usr/bin:$PATH
docker=/usr/bin/docker
started_dockerd=
dockerd_log=/var/log/visionbatch-compose-dockerd.log

start_dockerd() {
  local args=(--host unix:///var/run/docker.sock)
  # Without systemd as PID 1 the cgroupfs driver is the only one that works.
  if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
    args+=(--exec-opt native.cgroupdriver=cgroupfs)
  fi
  # overlay2 needs the kernel's overlay file system; vfs always works (slower, bigger).
  if grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null; then
    args+=(--storage-driver overlay2)
  else
    args+=(--storage-driver vfs)
  fi
  # Kafka wants many file descriptors: 65536, or what this host's hard limit
  # allows (a container cannot be given more: runc fails "setting rlimit").
  local hard nofile=65536
  hard=$(ulimit -Hn)
  [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ] && nofile=$hard
  args+=(--default-ulimit "nofile=$nofile:$nofile")
  # Builds reach Debian's mirror through NAT; without iptables they cannot.
  command -v iptables >/dev/null || say "warning: no iptables: containers get no outbound network"
  say "starting dockerd ${args[*]}"
  setsid /usr/sbin/dockerd "${args[@]}" >"$dockerd_log" 2>&1 </dev/null &
  started_dockerd=$!
  for _ in $(seq 60); do
    "$docker" info >/dev/null 2>&1 && return 0
    kill -0 "$started_dockerd" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 20 "$dockerd_log" >&2
  say "dockerd did not start"
  exit 1
}

stop_dockerd() {
  [ -n "$started_dockerd" ] || return 0
  kill "$started_dockerd" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$started_dockerd" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$started_dockerd" 2>/dev/null || true
}

# Whatever happens to check.py, nothing of the test project stays behind.
project=${VB_COMPOSE_PROJECT:-vbcomposetest}
remove_project() {
  local label=label=com.docker.compose.project=$project ids
  ids=$("$docker" ps -aq --filter "$label" 2>/dev/null) && [ -n "$ids" ] && "$docker" rm -f $ids >/dev/null 2>&1
  ids=$("$docker" network ls -q --filter "$label" 2>/dev/null) && [ -n "$ids" ] && "$docker" network rm $ids >/dev/null 2>&1
  ids=$("$docker" volume ls -q --filter "$label" 2>/dev/null) && [ -n "$ids" ] && "$docker" volume rm $ids >/dev/null 2>&1
  return 0
}
# A copy of the checkout (tracked and untracked, not ignored files): images
# are built from it and the stack runs from it, with its own docker/.env.
src=$(mktemp -d /tmp/vb-compose.XXXXXX)
cleanup() {
  remove_project
  stop_dockerd
  rm -rf "$src"
}
trap cleanup EXIT

(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$src" 2>/dev/null) || true
[ -f "$src/docker/compose.yaml" ] || { say "could not copy the checkout to $src"; exit 1; }

"$docker" info >/dev/null 2>&1 || start_dockerd
say "engine: $("$docker" version -f 'docker {{.Server.Version}}') ($("$docker" info -f '{{.Driver}}, cgroup {{.CgroupDriver}}')), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"

# The Debian base first; then Kafka, Redis and the stand-ins (mostly
# downloads) while the visionbatch images compile (the same layers `up --build` finds cached).
t1=$(date +%s)
"$root/docker/airgap/build-images.sh" --engine docker debian
( "$root/docker/airgap/build-images.sh" --engine docker kafka redis &&
  cd "$src/tests" && "$docker" build -q -f compose/Dockerfile.stubs \
    -t visionbatch-test-stubs:latest . >/dev/null ) &
bases=$!
for target in producer worker; do
  (cd "$src" && "$docker" build -q -f docker/Dockerfile --target "$target" \
    -t "visionbatch-$target:latest" . >/dev/null) || { wait "$bases" || true; exit 1; }
done
wait "$bases"
t2=$(date +%s)
say "images ready in $((t2 - t1))s"

rc=0
VB_COMPOSE_SRC=$src timeout -k 30 "${VB_COMPOSE_TIMEOUT:-900}" python3 "$here/check.py" || rc=$?
say "total $(($(date +%s) - t0))s (install+engine $((t1 - t0))s, images $((t2 - t1))s, stack $(($(date +%s) - t2))s)"
exit "$rc"
