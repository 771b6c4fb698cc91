#!/usr/bin/env python3
"""Benchmark: a worker joining and leaving the group during a batch of runs,
with Kafka's classic group protocol and with the consumer protocol (KIP-848).

For each protocol (and each repetition): fresh stand-ins, topic, group and
private redis-server (bench_distributed.Case); two workers (--concurrency 2)
join and settle, `visionbatch-producer --once` publishes every run, a third
worker starts once a quarter of the runs are uploaded and is stopped with
SIGTERM once it has taken partitions and 60 % are uploaded. Reported:

  wall     producer start to the last upload
  join     third worker's start to its first non-empty assignment (its log)
  leave    its SIGTERM to the last assignment the other two log afterwards
           (includes the leaving worker finishing its runs in flight)
  stall    longest gap between two uploads from the join on
  (every run must be uploaded exactly once, else the benchmark fails)

The classic protocol is the programs' default (no property: cooperative-
sticky, session 10 s, heartbeat 2 s); the consumer protocol passes
--kafka-property group.protocol=consumer, which needs librdkafka >= 2.4
(Debian 13's 2.8, the images) and Kafka >= 4.0.

  python3 tests/bench/bench_rebalance.py                      # 200 runs, both protocols
  python3 tests/bench/bench_rebalance.py --repeat 3
  python3 tests/bench/bench_rebalance.py --quick              # 24 runs, classic (CI)

Needs a built tree (VB_BIN_DIR), Kafka at $KAFKA_BROKERS (tools through
deploy/local/services.sh) and redis-server on PATH, as bench_distributed.py.
"""

import argparse
import json
import os
import re
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_distributed as bd  # noqa: E402
from bench_distributed import harness  # noqa: E402

ASSIGNED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z.*kafka: (\d+) partition\(s\) assigned",
                      re.M)


def assignments(text):
    """[(epoch seconds, partitions)] of the 'partition(s) assigned' log lines."""
    out = []
    for ts, n in ASSIGNED.findall(text):
        t = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        out.append((t + int(ts[20:]) / 1000.0, int(n)))
    return out


def uploads_times(case):
    return sorted(u["time"] for u in case.platform.records()["uploads"] if u.get("status") == 200)


def wait_uploads(case, n, procs, timeout):
    deadline = time.monotonic() + timeout
    while len(uploads_times(case)) < n:
        for p in procs:
            if not p.alive() and getattr(p, "must_live", True):
                raise SystemExit("%s exited:\n%s" % (p.cmd[0], p.stderr()[-3000:]))
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for %d uploads" % n)
        time.sleep(0.2)


def one(args, protocol):
    extra = [] if protocol == "classic" else ["--kafka-property", "group.protocol=" + protocol]
    st = bd.Stack(args, "vb-bench-rebal-", args.partitions, shutdown_grace_s=30)
    try:
        st.start_group(2, 2, args.settle, extra, timeout=60)
        t0, _, _ = st.publish_once(args.timeout)
        procs, case = st.procs, st.case
        wait_uploads(case, args.runs // 4, procs, args.timeout)
        t_join = time.time()
        third = st.start_worker(2, extra)
        harness.wait_until(lambda: any(n > 0 for _, n in assignments(third.stderr())),
                           timeout=120, message="third worker assigned")
        wait_uploads(case, args.runs * 6 // 10, procs, args.timeout)
        t_leave = time.time()
        third.must_live = False
        third.signal(signal.SIGTERM)
        last, n = case.wait_done(args.timeout, procs)
        if third.wait(60) is None:
            raise SystemExit("the third worker did not stop")
        joined = min(t for t, k in assignments(third.stderr()) if k > 0)

        def takeovers():
            return [t for p in procs[:2] for t, k in assignments(p.stderr()) if t > t_leave and k > 0]
        harness.wait_until(takeovers, timeout=60, message="the others take over")
        time.sleep(5)  # a cooperative hand-over may come in two steps
        takeover = takeovers()
        if n != args.runs:
            raise SystemExit("%s: %d uploads for %d runs (a run uploaded twice)" % (protocol, n, args.runs))
        times = [t for t in uploads_times(case) if t >= t_join]
        gaps = [b - a for a, b in zip(times, times[1:])]
        return {"wall": last - t0, "join": joined - t_join,
                "leave": (max(takeover) - t_leave) if takeover else None,
                "stall": max(gaps) if gaps else 0.0}
    finally:
        st.stop(grace=30)


def fmt(v):
    return "-" if v is None else "%.2f" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--bytes", type=int, default=20_000, help="bytes per image")
    ap.add_argument("--batch-delay", type=float, default=0.5, help="backend seconds per batch")
    ap.add_argument("--download-concurrency", type=int, default=4)
    ap.add_argument("--protocols", default="classic,consumer")
    ap.add_argument("--repeat", type=int, default=1)
    bd.add_stack_args(ap, 5.0, 600, "24 runs, 0.2 s batches, classic only",
                      settle_help="seconds for the first group to form")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.batch_delay, args.protocols, args.settle = 24, 0.2, "classic", 3.0
    results = {}
    for protocol in args.protocols.split(","):
        for r in range(args.repeat):
            res = one(args, protocol)
            results.setdefault(protocol, []).append(res)
            print("%-8s #%d  wall %6.2f s  join %5s s  leave %5s s  stall %5s s"
                  % (protocol, r + 1, res["wall"], fmt(res["join"]), fmt(res["leave"]),
                     fmt(res["stall"])), flush=True)
    for protocol, rs in results.items():
        med = {k: statistics.median([x[k] for x in rs if x[k] is not None] or [0])
               for k in ("wall", "join", "leave", "stall")}
        print("%-8s median of %d: wall %.2f s, join %.2f s, leave %.2f s, stall %.2f s"
              % (protocol, len(rs), med["wall"], med["join"], med["leave"], med["stall"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
