#!/usr/bin/env bash
# Starts and stops the local Apache Kafka (KRaft, one combined broker+controller
# node) and Redis that visionbatch's demo and system tests talk to.
#
#   deploy/local/services.sh start   [kafka|redis|all]   start (idempotent), create topics
#   deploy/local/services.sh stop    [kafka|redis|all]   SIGTERM, wait, then SIGKILL
#   deploy/local/services.sh restart [kafka|redis|all]   stop + start, data kept
#   deploy/local/services.sh status  [kafka|redis|all]   exit 0 only if all named are up
#   deploy/local/services.sh topics                      create the topics (idempotent)
#   deploy/local/services.sh create-topic NAME [PARTS]   create another topic (idempotent)
#   deploy/local/services.sh delete-topic NAME           delete a topic (if it exists)
#   deploy/local/services.sh fetch                       only download the Kafka jars
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REDIS_PORT (6379),
# KAFKA_HOST (127.0.0.1: the address Kafka listens on and advertises),
# REDIS_BIND (127.0.0.1: the address Redis listens on; protected mode is off
# when it is not a loopback address — no password: trusted networks only),
# VB_RUNS_PARTITIONS (6), VB_SERVICES_DIR (state; default deploy/local/var),
# KAFKA_VERSION (from kafka/pom.xml), KAFKA_HEAP_OPTS (-Xms256m -Xmx512m),
# VB_SERVICES_TIMEOUT (seconds to wait for a service, 90), JAVA_HOME.
# Secured listeners (off unless their port is set; the PLAINTEXT one stays):
# KAFKA_SASL_PORT: a SASL_PLAINTEXT listener (SCRAM-SHA-512, user made with
# kafka-storage/kafka-configs; also PLAIN, for librdkafka < 2.6.1 whose SCRAM
# Kafka 4 refuses) for user KAFKA_SASL_USER (visionbatch) with password
# KAFKA_SASL_PASSWORD (default: generated once into
# <state>/kafka/sasl-password); KAFKA_SSL_PORT: an SSL
# listener whose certificate is signed by a throwaway CA made with openssl
# (clients trust <state>/kafka/tls/ca.pem). Both ports are remembered in the
# state directory, so a later start or restart without them keeps the
# listeners; set them empty (KAFKA_SASL_PORT=) to drop one.
# The Kafka jars are fetched once with Maven into
# ${XDG_CACHE_HOME:-~/.cache}/visionbatch/kafka-<version>/libs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
var=${VB_SERVICES_DIR:-$here/var}
pom=$here/kafka/pom.xml

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_HOST=${KAFKA_HOST:-127.0.0.1}
REDIS_BIND=${REDIS_BIND:-127.0.0.1}
VB_RUNS_PARTITIONS=${VB_RUNS_PARTITIONS:-6}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
timeout_s=${VB_SERVICES_TIMEOUT:-90}
# The secured listeners' ports: from the environment when set there (also
# empty), else as remembered by the last start under this state directory.
secured_ports=$var/kafka/secured-ports
for p in KAFKA_SASL_PORT KAFKA_SSL_PORT; do
  if [ -z "${!p+set}" ] && [ -f "$secured_ports" ]; then
    printf -v "$p" '%s' "$(sed -n "s/^$p=\([0-9]*\)$/\1/p" "$secured_ports")"
  fi
done
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-}
KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-}
KAFKA_SASL_USER=${KAFKA_SASL_USER:-visionbatch}
KAFKA_VERSION=${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)}
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/visionbatch
kafka_home=$cache_root/kafka-$KAFKA_VERSION
libs=$kafka_home/libs

TOPICS=("visionbatch.runs:$VB_RUNS_PARTITIONS" "visionbatch.runs.dlq:1")

say() { printf 'services: %s\n' "$*"; }
die() {
  printf 'services: error: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found (install openjdk-17-jre-headless or set JAVA_HOME)"
  fi
}

# --- process helpers ------------------------------------------------------

# pid_of NAME PATTERN: prints the pid from var/NAME.pid if that process is alive
# and its command line contains PATTERN (guards against a reused pid).
pid_of() {
  local f=$var/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
  echo "$pid"
}

port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

port_owner() { # best effort: "pid (command)" of the listener on port $1
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\2 (\1)/p' | head -n1
}

# stop_pid NAME PID SECONDS: SIGTERM, wait, SIGKILL.
stop_pid() {
  local name=$1 pid=$2 wait_s=$3 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < wait_s * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || {
      say "$name stopped"
      return 0
    }
    sleep 0.2
  done
  say "$name did not stop within ${wait_s}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  die "$name (pid $pid) survived SIGKILL"
}

log_tail() {
  echo "---- last lines of $1 ----" >&2
  tail -n "${2:-40}" "$1" >&2 2>/dev/null || true
  echo "----" >&2
}

# --- Kafka ----------------------------------------------------------------

kafka_answers() { kcat -L -b "$KAFKA_HOST:$KAFKA_PORT" -m 3 >/dev/null 2>&1; }

kafka_fetch() {
  local stamp want tmp t0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (scripts/install-deps.sh installs maven)"
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  stamp=$kafka_home/.complete
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  mkdir -p "$cache_root"
  exec 8>"$cache_root/.kafka-$KAFKA_VERSION.lock"
  flock -w 600 8 || die "another fetch has held $cache_root/.kafka-$KAFKA_VERSION.lock for 10 minutes"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exec 8>&-
    return 0
  fi
  say "fetching Kafka $KAFKA_VERSION jars with Maven into $libs (once)"
  t0=$(date +%s)
  tmp=$kafka_home.tmp.$$
  rm -rf "$tmp"
  if ! mvn -q -B -f "$pom" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$tmp/libs" >"$cache_root/fetch.log" 2>&1; then
    log_tail "$cache_root/fetch.log"
    rm -rf "$tmp"
    die "could not fetch Kafka $KAFKA_VERSION jars (log: $cache_root/fetch.log)"
  fi
  rm -rf "$kafka_home"
  mv "$tmp" "$kafka_home"
  echo "$want" >"$stamp"
  exec 8>&-
  say "fetched Kafka $KAFKA_VERSION in $(($(date +%s) - t0))s"
}

# kafka_sasl_password: the SCRAM user's password (KAFKA_SASL_PASSWORD, else
# one generated at the first start and kept in the state directory).
kafka_sasl_password() {
  local f=$var/kafka/sasl-password
  if [ -n "${KAFKA_SASL_PASSWORD:-}" ]; then
    printf '%s' "$KAFKA_SASL_PASSWORD"
    return 0
  fi
  if [ ! -s "$f" ]; then
    mkdir -p "$var/kafka"
    (umask 077 && openssl rand -hex 16 | tr -d '\n' >"$f") || die "cannot write $f"
  fi
  cat "$f"
}

# kafka_tls: a throwaway CA and a broker certificate for $KAFKA_HOST (and
# localhost/127.0.0.1), made once per state directory and host; the broker
# reads its key and chain from one PEM file, clients trust tls/ca.pem.
kafka_tls() {
  local t=$var/kafka/tls san
  command -v openssl >/dev/null 2>&1 || die "openssl not found (needed for KAFKA_SSL_PORT)"
  if [ -s "$t/keystore.pem" ] && [ "$(cat "$t/host" 2>/dev/null)" = "$KAFKA_HOST" ]; then
    return 0
  fi
  rm -rf "$t"
  mkdir -p "$t"
  chmod 700 "$t"
  san="IP:127.0.0.1,DNS:localhost"
  if [[ $KAFKA_HOST =~ ^[0-9.]+$ ]]; then
    [ "$KAFKA_HOST" = 127.0.0.1 ] || san="$san,IP:$KAFKA_HOST"
  elif [ "$KAFKA_HOST" != localhost ]; then
    san="$san,DNS:$KAFKA_HOST"
  fi
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=visionbatch local test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$t/ca.key" -out "$t/ca.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$KAFKA_HOST" \
        -keyout "$t/broker.key" -out "$t/broker.csr" &&
      openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
        -days 365 -out "$t/broker.pem" -extfile <(printf '%s\n' "subjectAltName=$san" \
          "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" \
          "keyUsage=digitalSignature,keyEncipherment")
  } >"$t/openssl.log" 2>&1 || {
    log_tail "$t/openssl.log"
    die "could not make the test CA and broker certificate"
  }
  cat "$t/broker.key" "$t/broker.pem" "$t/ca.pem" >"$t/keystore.pem"
  chmod 600 "$t"/*.key "$t/keystore.pem"
  echo "$KAFKA_HOST" >"$t/host"
  say "made a throwaway CA ($t/ca.pem) and a broker certificate for $san"
}

kafka_write_config() {
  local d=$var/kafka listeners advertised map
  mkdir -p "$d/data"
  printf 'KAFKA_SASL_PORT=%s\nKAFKA_SSL_PORT=%s\n' "$KAFKA_SASL_PORT" "$KAFKA_SSL_PORT" >"$secured_ports"
  listeners="PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT"
  advertised="PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT"
  map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$KAFKA_SASL_PORT" ]; then
    listeners="$listeners,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT"
    advertised="$advertised,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT"
    map="$map,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  if [ -n "$KAFKA_SSL_PORT" ]; then
    listeners="$listeners,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT"
    advertised="$advertised,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT"
    map="$map,SSL:SSL"
  fi
  cat >"$d/server.properties" <<EOF
# Generated by deploy/local/services.sh; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$map
log.dirs=$d/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
  if [ -n "$KAFKA_SASL_PORT" ]; then
    cat >>"$d/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$(kafka_sasl_password)";
EOF
    chmod 600 "$d/server.properties"
  fi
  if [ -n "$KAFKA_SSL_PORT" ]; then
    kafka_tls
    cat >>"$d/server.properties" <<EOF
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$d/tls/keystore.pem
listener.name.ssl.ssl.client.auth=none
EOF
  fi
  cat >"$d/log4j2.properties" <<'EOF'
# Broker logging: everything to stdout, which services.sh sends to var/kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  cat >"$d/tools-log4j2.properties" <<'EOF'
# Admin tools: warnings and errors only, to stderr.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

kafka_tool() { # class args…
  local java
  java=$(java_bin)
  "$java" -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$var/kafka/tools-log4j2.properties" \
    -cp "$libs/*" "$@"
}

# kafka_format: formats new storage (with the SCRAM user when KAFKA_SASL_PORT
# is set, noted in kafka/scram-user); existing storage is left as it is.
kafka_format() {
  local d=$var/kafka cid scram=()
  [ -f "$d/data/meta.properties" ] && return 0
  cid=$(kafka_tool kafka.tools.StorageTool random-uuid) || die "kafka-storage random-uuid failed"
  [ -n "$KAFKA_SASL_PORT" ] &&
    scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$(kafka_sasl_password)]")
  kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$d/server.properties" "${scram[@]}" >>"$var/kafka.log" 2>&1 ||
    {
      log_tail "$var/kafka.log"
      die "kafka-storage format failed"
    }
  if [ -n "$KAFKA_SASL_PORT" ]; then scram_stamp >"$d/scram-user"; else rm -f "$d/scram-user"; fi
  say "formatted Kafka storage in $d/data (cluster id $cid)"
}

kafka_start() {
  local pid java t0 i
  if pid=$(pid_of kafka kafka.Kafka); then
    kafka_wait "$pid"
    say "kafka already running (pid $pid, $KAFKA_HOST:$KAFKA_PORT)"
    local p
    for p in ${KAFKA_SASL_PORT:+SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT} \
      ${KAFKA_SSL_PORT:+SSL://$KAFKA_HOST:$KAFKA_SSL_PORT}; do
      grep -q "^listeners=.*$p" "$var/kafka/server.properties" 2>/dev/null ||
        say "warning: the running broker has no listener $p; 'restart kafka' adds it"
    done
    return 0
  fi
  if port_in_use "$KAFKA_PORT"; then
    if kafka_answers; then
      say "warning: a Kafka not started by services.sh answers on $KAFKA_HOST:$KAFKA_PORT ($(port_owner "$KAFKA_PORT")); using it as is"
      return 0
    fi
    die "port $KAFKA_PORT is taken by $(port_owner "$KAFKA_PORT"); stop it or set KAFKA_PORT"
  fi
  port_in_use "$KAFKA_CONTROLLER_PORT" &&
    die "port $KAFKA_CONTROLLER_PORT is taken by $(port_owner "$KAFKA_CONTROLLER_PORT"); stop it or set KAFKA_CONTROLLER_PORT"
  local p
  for p in KAFKA_SASL_PORT KAFKA_SSL_PORT; do
    if [ -n "${!p}" ] && port_in_use "${!p}"; then
      die "port ${!p} is taken by $(port_owner "${!p}"); stop it or set $p"
    fi
  done
  kafka_fetch
  mkdir -p "$var"
  kafka_write_config
  kafka_format
  java=$(java_bin)
  t0=$(date +%s%N)
  printf '\n==== services.sh start %s ====\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$var/kafka.log"
  # setsid: the broker outlives the calling shell and its process group.
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$var/kafka.pid" \
    "$java" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$var/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$var/kafka/server.properties" \
    </dev/null >>"$var/kafka.log" 2>&1 9>&- &
  for ((i = 0; i < 50; i++)); do
    pid=$(pid_of kafka kafka.Kafka) && break
    sleep 0.1
  done
  [ -n "${pid:-}" ] || {
    log_tail "$var/kafka.log"
    die "kafka did not start (log: $var/kafka.log)"
  }
  kafka_wait "$pid"
  say "kafka up (pid $pid, $KAFKA_HOST:$KAFKA_PORT) in $((($(date +%s%N) - t0) / 1000000)) ms; log: $var/kafka.log"
  # Storage formatted before SASL was wanted (or with another user or
  # password): the user is (re)created with Kafka's own tool.
  if [ -n "$KAFKA_SASL_PORT" ] && [ "$(cat "$var/kafka/scram-user" 2>/dev/null)" != "$(scram_stamp)" ]; then
    kafka_scram_user
  fi
  kafka_secured_say
}

# scram_stamp: which SCRAM user and password the cluster holds (a hash, no secret).
scram_stamp() { printf '%s:%s' "$KAFKA_SASL_USER" "$(kafka_sasl_password)" | sha256sum | cut -d' ' -f1; }

kafka_scram_user() {
  kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" --alter \
    --entity-type users --entity-name "$KAFKA_SASL_USER" \
    --add-config "SCRAM-SHA-512=[password=$(kafka_sasl_password)]" >>"$var/kafka.log" 2>&1 ||
    die "could not create the SCRAM user $KAFKA_SASL_USER (log: $var/kafka.log)"
  scram_stamp >"$var/kafka/scram-user"
}

kafka_secured_say() {
  local from="password in $var/kafka/sasl-password"
  [ -n "${KAFKA_SASL_PASSWORD:-}" ] && from="password from KAFKA_SASL_PASSWORD"
  if [ -n "$KAFKA_SASL_PORT" ]; then
    say "kafka SASL_PLAINTEXT on $KAFKA_HOST:$KAFKA_SASL_PORT: SCRAM-SHA-512 or PLAIN, user $KAFKA_SASL_USER, $from"
  fi
  if [ -n "$KAFKA_SSL_PORT" ]; then
    say "kafka SSL on $KAFKA_HOST:$KAFKA_SSL_PORT: CA file $var/kafka/tls/ca.pem"
  fi
  return 0
}

kafka_wait() { # pid
  local deadline=$((SECONDS + timeout_s))
  while ! kafka_answers; do
    if ! kill -0 "$1" 2>/dev/null; then
      log_tail "$var/kafka.log"
      die "kafka exited during start-up (log: $var/kafka.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$var/kafka.log"
      die "kafka did not answer on $KAFKA_HOST:$KAFKA_PORT within ${timeout_s}s (log: $var/kafka.log)"
    fi
    sleep 0.3
  done
}

kafka_stop() {
  local pid
  if pid=$(pid_of kafka kafka.Kafka); then
    stop_pid kafka "$pid" 60
  else
    say "kafka not running (under $var)"
  fi
  rm -f "$var/kafka.pid"
}

kafka_status() {
  local pid
  if pid=$(pid_of kafka kafka.Kafka); then
    if kafka_answers; then
      say "kafka: up (pid $pid, $KAFKA_HOST:$KAFKA_PORT, Kafka $KAFKA_VERSION)"
      return 0
    fi
    say "kafka: starting or unresponsive (pid $pid, $KAFKA_HOST:$KAFKA_PORT)"
    return 1
  fi
  if kafka_answers; then
    say "kafka: up (external: not started by services.sh, $KAFKA_HOST:$KAFKA_PORT)"
    return 0
  fi
  say "kafka: down"
  return 1
}

# topic_partitions NAME: partition count from broker metadata, empty if absent.
topic_partitions() {
  kcat -L -b "$KAFKA_HOST:$KAFKA_PORT" -m 5 -t "$1" -J 2>/dev/null |
    python3 -c 'import json,sys
d=json.load(sys.stdin)
for t in d.get("topics",[]):
    if t.get("topic")==sys.argv[1] and not t.get("error"):
        print(len(t.get("partitions",[])))' "$1"
}

topic_command() { # TopicCommand args…
  kafka_answers || die "kafka does not answer on $KAFKA_HOST:$KAFKA_PORT (start it first)"
  kafka_fetch
  [ -f "$var/kafka/tools-log4j2.properties" ] || kafka_write_config
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" "$@"
}

# create_topic NAME PARTITIONS: idempotent; an existing topic is left as it is.
create_topic() {
  local name=$1 parts=$2 have
  case "$parts" in '' | *[!0-9]*) die "partitions must be a positive number, not '$parts'" ;; esac
  have=$(topic_partitions "$name")
  if [ -z "$have" ]; then
    topic_command --create --if-not-exists --topic "$name" --partitions "$parts" \
      --replication-factor 1 >/dev/null || die "could not create topic $name"
    have=$(topic_partitions "$name")
    say "topic $name created, partitions: ${have:-?}"
  elif [ "$have" != "$parts" ]; then
    say "warning: topic $name exists with $have partitions (wanted $parts); left as is"
  fi
}

delete_topic() {
  [ -n "$(topic_partitions "$1")" ] || {
    say "topic $1 does not exist"
    return 0
  }
  topic_command --delete --if-exists --topic "$1" >/dev/null || die "could not delete topic $1"
  say "topic $1 deleted"
}

kafka_topics() {
  local spec
  kafka_answers || die "kafka does not answer on $KAFKA_HOST:$KAFKA_PORT (start it first)"
  for spec in "${TOPICS[@]}"; do
    create_topic "${spec%%:*}" "${spec##*:}"
  done
}

# kafka_warm: a fresh broker creates its internal topics (__consumer_offsets,
# the producer-id coordinator) on first use, answering "coordinator load in
# progress" meanwhile. One idempotent produce and one group read on a private
# topic get that done now, so clients (and tests) start against a settled
# broker. Bounded; only warns.
kafka_warm() {
  local b="127.0.0.1:$KAFKA_PORT" t=visionbatch.warmup i
  create_topic "$t" 1 >/dev/null
  for i in $(seq 30); do
    echo warm | timeout 10 kcat -P -b "$b" -t "$t" -X enable.idempotence=true 2>/dev/null && break
    sleep 1
  done
  for i in $(seq 30); do
    timeout 15 kcat -G visionbatch-warmup -b "$b" -o beginning -e -q "$t" >/dev/null 2>&1 && return 0
    sleep 1
  done
  say "warning: kafka did not settle within a minute (clients will retry)"
}

# --- Redis ----------------------------------------------------------------

redis_answers() { [ "$(redis-cli -h "$REDIS_BIND" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_start() {
  local pid deadline protected d=$var/redis
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (scripts/install-deps.sh installs it)"
  if pid=$(pid_of redis redis-server) && redis_answers; then
    say "redis already running (pid $pid, $REDIS_BIND:$REDIS_PORT)"
    return 0
  fi
  if [ -z "${pid:-}" ]; then
    if port_in_use "$REDIS_PORT"; then
      if redis_answers; then
        say "warning: a Redis not started by services.sh answers on $REDIS_BIND:$REDIS_PORT ($(port_owner "$REDIS_PORT")); using it as is"
        return 0
      fi
      die "port $REDIS_PORT is taken by $(port_owner "$REDIS_PORT"); stop it or set REDIS_PORT"
    fi
    mkdir -p "$d"
    # Protected mode refuses every client not on loopback while no password
    # is set; an explicit REDIS_BIND elsewhere means such clients are wanted.
    case "$REDIS_BIND" in
      127.* | ::1 | localhost) protected=yes ;;
      *) protected=no ;;
    esac
    cat >"$d/redis.conf" <<EOF
# Generated by deploy/local/services.sh; rewritten at every start.
bind $REDIS_BIND
port $REDIS_PORT
protected-mode $protected
daemonize yes
pidfile $var/redis.pid
logfile $var/redis.log
dir $d
appendonly yes
appendfsync everysec
save 3600 1 300 100
EOF
    rm -f "$var/redis.pid"
    redis-server "$d/redis.conf" </dev/null 9>&- || {
      log_tail "$var/redis.log"
      die "redis-server failed to start (log: $var/redis.log)"
    }
  fi
  deadline=$((SECONDS + timeout_s))
  while ! redis_answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$var/redis.log"
      die "redis did not answer PING on $REDIS_BIND:$REDIS_PORT within ${timeout_s}s (log: $var/redis.log)"
    fi
    sleep 0.1
  done
  pid=$(pid_of redis redis-server) || {
    log_tail "$var/redis.log"
    die "redis answers but wrote no pid file $var/redis.pid"
  }
  say "redis up (pid $pid, $REDIS_BIND:$REDIS_PORT, AOF in $d); log: $var/redis.log"
}

redis_stop() {
  local pid
  if pid=$(pid_of redis redis-server); then
    stop_pid redis "$pid" 30
  else
    say "redis not running (under $var)"
  fi
  rm -f "$var/redis.pid"
}

redis_status() {
  local pid
  if pid=$(pid_of redis redis-server); then
    if redis_answers; then
      say "redis: up (pid $pid, $REDIS_BIND:$REDIS_PORT)"
      return 0
    fi
    say "redis: unresponsive (pid $pid, $REDIS_BIND:$REDIS_PORT)"
    return 1
  fi
  if redis_answers; then
    say "redis: up (external: not started by services.sh, $REDIS_BIND:$REDIS_PORT)"
    return 0
  fi
  say "redis: down"
  return 1
}

# --- main -----------------------------------------------------------------

cmd=${1:-}
what=${2:-all}
case "$cmd" in
  -h | --help | help)
    usage
    exit 0
    ;;
  create-topic | delete-topic)
    [ -n "${2:-}" ] || die "$cmd needs a topic name"
    topic=$2
    topic_parts=${3:-1}
    what=kafka
    ;;
  start | stop | restart | status | topics | fetch) ;;
  "")
    usage >&2
    exit 2
    ;;
  *) die "unknown command '$cmd' (try --help)" ;;
esac
case "$what" in
  kafka | redis | all) ;;
  *) die "unknown service '$what' (kafka, redis or all)" ;;
esac
want_kafka=0
want_redis=0
[ "$what" = all ] || [ "$what" = kafka ] && want_kafka=1
[ "$what" = all ] || [ "$what" = redis ] && want_redis=1

command -v kcat >/dev/null 2>&1 || die "kcat not found (scripts/install-deps.sh installs it)"
mkdir -p "$var"
if [ "$cmd" != status ]; then
  # One start/stop at a time per state directory.
  exec 9>"$var/.lock"
  flock -w 300 9 || die "another services.sh has held $var/.lock for 5 minutes"
fi

case "$cmd" in
  start)
    [ $want_redis = 1 ] && redis_start
    if [ $want_kafka = 1 ]; then
      kafka_start
      kafka_topics
      kafka_warm
    fi
    ;;
  stop)
    [ $want_kafka = 1 ] && kafka_stop
    [ $want_redis = 1 ] && redis_stop
    ;;
  restart)
    if [ $want_kafka = 1 ] && ! pid_of kafka kafka.Kafka >/dev/null && kafka_answers; then
      die "the Kafka on $KAFKA_HOST:$KAFKA_PORT was not started by services.sh (under $var); cannot restart it"
    fi
    if [ $want_redis = 1 ] && ! pid_of redis redis-server >/dev/null && redis_answers; then
      die "the Redis on $REDIS_BIND:$REDIS_PORT was not started by services.sh (under $var); cannot restart it"
    fi
    if [ $want_kafka = 1 ]; then
      kafka_stop
      kafka_start
      kafka_topics
    fi
    if [ $want_redis = 1 ]; then
      redis_stop
      redis_start
    fi
    ;;
  status)
    rc=0
    if [ $want_kafka = 1 ]; then kafka_status || rc=1; fi
    if [ $want_redis = 1 ]; then redis_status || rc=1; fi
    exit $rc
    ;;
  topics) kafka_topics ;;
  create-topic) create_topic "$topic" "$topic_parts" ;;
  delete-topic) delete_topic "$topic" ;;
  fetch) kafka_fetch ;;
esac
exit 0
