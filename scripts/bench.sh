#!/usr/bin/env bash
# Builds visionbatch (Release) and runs the benchmarks against the stand-in
# servers. Results are printed as tables; docs/benchmarks.md records them.
#
#   scripts/bench.sh              run-once: memory flatness and throughput
#   scripts/bench.sh distributed  producer + workers vs run-once (needs Kafka/Redis)
#   scripts/bench.sh queue-depth [--sizes 200,1000,3000] [--quick]
#                                 platform requests and wall time per run as the queue grows
#   scripts/bench.sh reports [--quick]
#                                 peak RSS with 200 MB reports: worker x4, run-once
#   scripts/bench.sh cron [--jobs N] [--quick] [--fire-threads N]
#                                 10,000 cron jobs: schedule lag, API latency (wrk), RSS
#   scripts/bench.sh console [--quick]
#                                 the web console's polled endpoints with 10,000 jobs
#                                 and 100,000 runs
#   scripts/bench.sh tick-redis [--jobs N] [--ticks T] [--quick]
#                                 Redis CPU per job of a cron tick's claims and ends
#   scripts/bench.sh cron-next [--quick]
#                                 the cost of one next-fire-time search
#   scripts/bench.sh rebalance [--repeat N] [--protocols classic,consumer]
#                                 a worker joining and leaving during 200 runs, per
#                                 Kafka group protocol (consumer: librdkafka >= 2.4)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-run-once}" in
  -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
scripts/install-deps.sh
case "${1:-}" in
  cron-next | tick-redis) # C benchmarks, built with the tests
    target=bench_${1//-/_}
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-bench -j "$(nproc)" --target "$target" >/dev/null
    exec "build-bench/tests/$target" "${@:2}"
    ;;
esac
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVB_TESTS=OFF >/dev/null
# The cron benchmark needs the producer only.
target=()
case "${1:-}" in cron | console) target=(--target visionbatch-producer) ;; esac
cmake --build build-release -j "$(nproc)" "${target[@]}" >/dev/null
export VB_BIN_DIR=$PWD/build-release
case "${1:-run-once}" in
  run-once) python3 tests/bench/bench_run_once.py "${@:2}" ;;
  distributed)
    deploy/local/services.sh start
    python3 tests/bench/bench_distributed.py "${@:2}"
    ;;
  queue-depth)
    deploy/local/services.sh start
    python3 tests/bench/bench_queue_depth.py "${@:2}"
    ;;
  cron)
    deploy/local/services.sh start
    python3 tests/bench/bench_cron.py "${@:2}"
    ;;
  reports)
    deploy/local/services.sh start
    python3 tests/bench/bench_reports.py "${@:2}"
    ;;
  console)
    deploy/local/services.sh start
    python3 tests/bench/bench_console.py "${@:2}"
    ;;
  rebalance)
    deploy/local/services.sh start
    python3 tests/bench/bench_rebalance.py "${@:2}"
    ;;
  *) echo "bench.sh: unknown benchmark '$1' (try --help)" >&2; exit 2 ;;
esac
