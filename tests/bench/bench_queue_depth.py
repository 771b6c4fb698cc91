#!/usr/bin/env python3
"""Benchmark: what one run costs as the queue grows (platform requests, wall time).

For each queue size N (default 200, 1000, 3000) the platform stand-in holds N
fresh runs of one small image each and the backend stand-in answers at once
(batch delay 0), so the time left is visionbatch's own. W visionbatch-worker
processes (--concurrency C each) join a fresh consumer group, then
`visionbatch-producer --once` publishes the whole queue; the wall time runs
from the producer's start to the last upload the platform received.
Producer and workers share one secret key (VISIONBATCH_SECRET_KEY), as a
deployment does.

Reported per queue size, and as the spread across sizes (largest / smallest
per-run value; the goal is within 10 %):

  list GETs/run     every list GET the platform answered / N
  worker GETs/run   the same without the producer's own listing (its
                    "fetched P page(s)" line): the workers' run lookups
  wall ms/run       wall time / N
  list s            the producer's listing of the queue (until its "fetched"
                    line): nothing is published before it ends
  publish s         the producer's whole pass: listing, then claiming and
                    publishing every run (the workers start meanwhile)

and below each row the mean milliseconds of each phase of an uploaded run
(the workers' visionbatch_run_phase_seconds) and the CPU milliseconds per run
of the platform and backend stand-ins and of the workers.

  python3 tests/bench/bench_queue_depth.py                    # 200, 1000, 3000 runs, 2x4
  python3 tests/bench/bench_queue_depth.py --quick            # 30 and 90 runs, 1x2 (CI)
  python3 tests/bench/bench_queue_depth.py --sizes 200,1000 --configs 1x4

Needs a built tree (VB_BIN_DIR, default ./build), Kafka at $KAFKA_BROKERS
(127.0.0.1:9092) with deploy/local/services.sh, and redis-server on PATH.
Uses the helpers of bench_distributed.py.
"""

import argparse
import base64
import calendar
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_distributed as bd  # noqa: E402

harness = bd.harness
SECRET_KEY = base64.b64encode(b"queue-depth-bench-key-32-bytes!!").decode()


def one_size(args, runs, workers, concurrency):
    """Processes a queue of `runs` runs; returns the measurements."""
    case_args = argparse.Namespace(runs=runs, images=1, bytes=args.bytes, batch_delay=0.0,
                                   poll_ms=args.poll_ms, download_concurrency=4)
    st = bd.Stack(case_args, "vb-bench-depth-", args.partitions,
                  {"VISIONBATCH_SECRET_KEY": SECRET_KEY})
    try:
        st.start_group(workers, concurrency, args.settle)
        t0, published, res = st.publish_once(args.timeout)
        procs, case = st.procs, st.case
        pages = sum(int(n) for n in re.findall(r"fetched (\d+) page\(s\)", res.stderr))
        listed = listing_done(res.stderr)
        wait_finished(procs, runs, args.timeout)
        last, n = case.wait_done(60, procs)
        gets, _ = case.requests()
        phases = bd.phase_means([bd.metrics_text(p) for p in procs])
        cpu = {"platform": bd.cpu_seconds(case.platform.proc.pid),
               "backend": bd.cpu_seconds(case.backend.proc.pid),
               "workers": sum(bd.cpu_seconds(p.proc.pid) for p in procs)}
        dup = [r for r in case.platform.records()["runs"] if r["uploads"] > 1]
        if n != runs or dup:
            raise SystemExit("%d uploads for %d runs, %d runs uploaded twice" % (n, runs,
                                                                                len(dup)))
        return {"runs": runs, "wall_s": round(last - t0, 2), "publish_s": round(published, 2),
                "list_s": round(listed - t0, 2) if listed else None,
                "wall_ms_per_run": round((last - t0) * 1000 / runs, 1),
                "list_gets_per_run": round(gets / runs, 3),
                "worker_gets_per_run": round((gets - pages) / runs, 3),
                "producer_pages": pages,
                "phase_ms_per_run": {k: round(v * 1000, 1) for k, v in phases.items()},
                "cpu_ms_per_run": {k: round(v * 1000 / runs, 1) for k, v in cpu.items()}}
    finally:
        st.stop(grace=10)


def listing_done(log):
    """Unix time of the producer's "fetched P page(s)" line (its listing
    done, nothing published yet), or None."""
    m = re.search(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z .*fetched \d+ page", log, re.M)
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float(
        "0" + m.group(1)[19:])


def finished_runs(p):
    """Runs a worker finished (any outcome), from its /metrics."""
    text = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % p.port, timeout=10).text()
    return sum(float(v) for v in re.findall(r'^visionbatch_runs_total\{[^}]*\} (\S+)$', text,
                                            re.M))


def wait_finished(procs, runs, timeout):
    """Waits until the workers have finished `runs` runs. Asks the workers'
    metrics, not the platform stand-in's records: those grow with the queue,
    and reading them every half second would tax the stand-in more, the
    longer the queue, and so skew the wall time per run."""
    deadline = time.monotonic() + timeout
    while sum(finished_runs(p) for p in procs) < runs:
        for p in procs:
            if not p.alive():
                raise SystemExit("worker exited:\n" + p.stderr()[-3000:])
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for %d runs" % runs)
        time.sleep(1.0)


def spread(rows, key):
    vals = [r[key] for r in rows]
    lo, hi = min(vals), max(vals)
    if hi == 0:  # all zero: equal
        return 1.0
    return hi / lo if lo > 0 else float("inf")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,1000,3000", help="queue sizes (runs)")
    ap.add_argument("--configs", default="2x4", help="WORKERSxCONCURRENCY")
    ap.add_argument("--bytes", type=int, default=2048, help="bytes per image")
    bd.add_stack_args(ap, 8.0, 3600, "smoke run for CI: queues of 30 and 90 runs, config 1x2")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.configs, args.settle = "30,90", "1x2", 4.0
    sizes = [int(s) for s in args.sizes.split(",")]
    (workers, concurrency), = bd.parse_configs(args.configs)

    print("queues of %s runs x 1 image (%d bytes), instant backend, %d worker(s) x %d, "
          "%d partitions" % (args.sizes, args.bytes, workers, concurrency, args.partitions))
    print("%8s %8s %7s %10s %12s %14s %16s %15s" % (
        "runs", "wall s", "list s", "publish s", "wall ms/run", "list GETs/run",
        "worker GETs/run", "producer pages"))
    rows = []
    for n in sizes:
        r = one_size(args, n, workers, concurrency)
        rows.append(r)
        print("%8d %8.2f %7s %10.2f %12.1f %14.3f %16.3f %15d" % (
            n, r["wall_s"], "-" if r["list_s"] is None else "%.2f" % r["list_s"],
            r["publish_s"], r["wall_ms_per_run"], r["list_gets_per_run"],
            r["worker_gets_per_run"], r["producer_pages"]), flush=True)
        print("%8s ms per run: %s; CPU ms per run: %s" % (
            "", ", ".join("%s %.1f" % kv for kv in r["phase_ms_per_run"].items()),
            ", ".join("%s %.1f" % kv for kv in r["cpu_ms_per_run"].items())), flush=True)
    out = {"sizes": sizes, "workers": workers, "concurrency": concurrency,
           "spread_list_gets_per_run": round(spread(rows, "list_gets_per_run"), 3),
           "spread_worker_gets_per_run": round(spread(rows, "worker_gets_per_run"), 3),
           "spread_wall_ms_per_run": round(spread(rows, "wall_ms_per_run"), 3),
           "results": rows}
    print("spread (largest / smallest per run): list GETs %.2fx, worker GETs %.2fx, wall %.2fx"
          % (out["spread_list_gets_per_run"], out["spread_worker_gets_per_run"],
             out["spread_wall_ms_per_run"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
