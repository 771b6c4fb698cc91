#!/usr/bin/env python3
"""Cost of the endpoints the web console polls, with many jobs and runs.

Starts a private redis-server and visionbatch-producer (Kafka from
deploy/local/services.sh, for GET /workers), creates N jobs through
POST /cron-jobs (disabled: nothing fires) and writes M run records straight
into Redis (the layout of store.h: 90 % uploaded, 5 % failed, 3 % dead, 2 %
processing by four workers, updated over the last day) as a version without
per-state indexes left them, one finished execution per job and the four
workers' heartbeats, times the first run listing (which builds
the per-state indexes, once), then times each call the console makes,
sequentially over one keep-alive connection:

  GET /runs?limit=100                 the Runs view, no filter (every 2 s)
  GET /runs?limit=100&state=dead      a filter that matches 3 % of the runs
  GET /runs?limit=100&state=processing  one that matches 2 %
  GET /runs?limit=100&state=queued    a filter that matches nothing
  GET /workers (cache hit)            the Workers view (every 2 s)
  GET /workers (computed)             after the 1.5 s cache period
  GET /cron-jobs?limit=50             a page of jobs
  GET /cron-jobs?limit=50&include=last_execution
                                      the Jobs view: its first page with each
                                      job's newest execution (every 2 s)
  GET /cron-jobs?limit=50&cursor=     a page in the middle of the job ids
  GET /cron-jobs                      every job (the unpaged answer)
  GET /cron-jobs/{id}/executions?limit=1   one job's newest execution
  GET /cron/preview                   the form's live validation

and prints p50 / p99 / max latency in ms and the answer's size, plus the
Redis server's time (commandstats) per call for the run, worker and job-page reads.

  scripts/bench.sh console            10,000 jobs, 100,000 runs
  scripts/bench.sh console --quick    1,000 jobs, 10,000 runs, fewer calls
  VB_BIN_DIR=build python3 tests/bench/bench_console.py --jobs 10000 --runs 100000
  ... --only cron-jobs                only the calls whose name holds the text
"""

import argparse
import base64
import http.client
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from bench_cron import create_jobs, free_port, pct, producer_up  # noqa: E402
from test_producer import BROKERS, kafka_ok  # noqa: E402

SECRET_KEY = base64.b64encode(b"c" * 32).decode()
TOKEN = "bench-console-token"


class FakePlatform:
    get_url = "http://127.0.0.1:9/api/v1/documents/vision_analysis"
    post_url = "http://127.0.0.1:9/api/v1/documents/vision_analysis/upload"
    api_key = "bench-key"


def resp_cmd(*args):
    out = ["*%d\r\n" % len(args)]
    for a in args:
        a = str(a).encode()
        out.append("$%d\r\n" % len(a))
        out.append(a.decode() + "\r\n")
    return "".join(out)


def write_runs(port, n):
    """n run records and their index entries, through redis-cli --pipe."""
    now = int(time.time() * 1000)
    lines = []
    for i in range(n):
        rid = "BENCH-RUN-%07d" % i
        r = i % 100
        state = ("processing" if r < 2 else "dead" if r < 5 else "failed" if r < 10
                 else "uploaded")
        updated = now - (n - i) * 86400000 // n
        lines.append(resp_cmd("HSET", "visionbatch:run:" + rid, "state", state,
                              "attempts", 1 if state != "dead" else 5, "version", 3,
                              "created_at", updated - 60000, "updated_at", updated,
                              "started_at", updated - 30000, "worker", "bench-worker-%d" % (i % 4),
                              "batch_ids", "b%d" % i, "execution_id", "",
                              "last_error", "backend said no" if state in ("dead", "failed") else ""))
        lines.append(resp_cmd("ZADD", "visionbatch:runs", updated, rid))
    for w in range(4):  # the four workers' heartbeats (heartbeat.h)
        wid = "bench-worker-%d" % w
        lines.append(resp_cmd("HSET", "visionbatch:worker:" + wid, "worker", wid,
                              "host", "bench-host", "version", "0", "slots", 4, "in_flight", 2,
                              "beat_at", now, "started_at", now - 3600000, "interval_ms", 5000))
        lines.append(resp_cmd("PEXPIRE", "visionbatch:worker:" + wid, 3600000))
        lines.append(resp_cmd("ZADD", "visionbatch:workers", now, wid))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input="".join(lines).encode(),
                   check=True, capture_output=True, timeout=600)


def write_executions(port, job_ids):
    """One finished execution per job (the layout of jobs.h)."""
    now = int(time.time() * 1000)
    lines = []
    for i, jid in enumerate(job_ids):
        eid = "00000000-0000-4000-8000-%012d" % i
        lines.append(resp_cmd("HSET", "visionbatch:exec:" + eid, "execution_id", eid,
                              "job_id", jid, "status", "success", "started_at", now - 60000,
                              "completed_at", now - 30000, "scheduled_for", now - 60000,
                              "runs_found", 2, "runs_published", 2))
        lines.append(resp_cmd("LPUSH", "visionbatch:job:%s:execs" % jid, eid))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input="".join(lines).encode(),
                   check=True, capture_output=True, timeout=600)


def redis_usec(redis):
    """Total usec Redis spent in scripts and commands so far (commandstats)."""
    total = 0
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_") and "usec=" in line:
            total += int(line.split("usec=")[1].split(",")[0])
    return total


def timed(conn, path, n, pause=0.0, redis=None):
    lat, size, usec0 = [], 0, redis_usec(redis) if redis else 0
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        body = r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise SystemExit("%s: %d %s" % (path, r.status, body[:300]))
        size = len(body)
        if pause:
            time.sleep(pause)
    per_call_redis = (redis_usec(redis) - usec0) / 1000.0 / n if redis else None
    return lat, size, per_call_redis


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=100000)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="1,000 jobs, 10,000 runs, 10 calls")
    ap.add_argument("--only", default="", help="time only the calls whose name holds this")
    a = ap.parse_args()
    if a.quick:
        a.jobs, a.runs, a.calls = 1000, 10000, 10
    harness.require_binary("visionbatch-producer")
    if not kafka_ok():
        raise SystemExit("Kafka unavailable at %s: deploy/local/services.sh start" % BROKERS)
    redis = harness.RedisServer()
    tmp = tempfile.mkdtemp(prefix="vb-bench-console-")
    proc = None
    try:
        port = free_port()
        env = {"VISIONBATCH_SECRET_KEY": SECRET_KEY, "REDIS_URL": redis.url,
               "KAFKA_BROKERS": BROKERS, "VISIONBATCH_API_TOKEN": TOKEN,
               "VISIONBATCH_LOG_FILE": os.path.join(tmp, "p.log"),
               "VISIONBATCH_CONFIG": harness.write_config(os.path.join(tmp, "c.json"), {})}
        proc = harness.start_binary("visionbatch-producer", ["--listen", "127.0.0.1:%d" % port],
                                    env=env, log_dir=tmp)
        harness.wait_until(lambda: producer_up(port, proc), timeout=30, message="producer up")
        ids, took = create_jobs(port, a.jobs, FakePlatform(), headers={
            "Authorization": "Bearer " + TOKEN}, enabled=False, schedule="0 9 * * 1")
        print("created %d jobs in %.1f s" % (len(ids), took))
        t0 = time.monotonic()
        write_runs(redis.port, a.runs)
        write_executions(redis.port, ids)
        print("wrote %d run records in %.1f s" % (a.runs, time.monotonic() - t0))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        lat, _, rms = timed(conn, "/runs?limit=100&state=failed", 1, redis=redis)
        print("first run listing (builds the per-state indexes): %.0f ms, redis %.0f ms" % (
            lat[0], rms))
        cases = [
            ("GET /runs?limit=100", "/runs?limit=100", 0, True),
            ("GET /runs?limit=100&state=dead", "/runs?limit=100&state=dead", 0, True),
            ("GET /runs?limit=100&state=processing", "/runs?limit=100&state=processing", 0,
             True),
            ("GET /runs?limit=100&state=queued (no match)", "/runs?limit=100&state=queued", 0, True),
            ("GET /workers (cache hit)", "/workers", 0, False),
            ("GET /workers (computed)", "/workers", 1.6, True),
            ("GET /cron-jobs?limit=50 (first page)", "/cron-jobs?limit=50", 0, True),
            ("GET /cron-jobs?limit=50&include=last_execution",
             "/cron-jobs?limit=50&include=last_execution", 0, True),
            ("GET /cron-jobs?limit=50&cursor= (middle)",
             "/cron-jobs?limit=50&cursor=%s" % sorted(ids)[len(ids) // 2], 0, True),
            ("GET /cron-jobs (all %d)" % a.jobs, "/cron-jobs", 0, False),
            ("GET /cron-jobs/{id}/executions?limit=1", "/cron-jobs/%s/executions?limit=1" % ids[0],
             0, False),
            ("GET /cron/preview", "/cron/preview?schedule=0+9+*+3+0&timezone=Europe/Berlin", 0,
             False),
        ]
        print("%-48s %8s %8s %8s %10s %12s" % ("call", "p50 ms", "p99 ms", "max ms", "bytes",
                                                "redis ms"))
        for name, path, pause, with_redis in cases:
            if a.only not in name:
                continue
            n = a.calls if not pause else max(3, a.calls // 10)
            timed(conn, path, 1)  # warm (and fills the workers' cache)
            lat, size, rms = timed(conn, path, n, pause, redis if with_redis else None)
            print("%-48s %8.2f %8.2f %8.2f %10d %12s" % (
                name, pct(lat, 50), pct(lat, 99), max(lat), size,
                "%.2f" % rms if rms is not None else "-"))
        conn.close()
    finally:
        if proc:
            proc.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
