#!/usr/bin/env python3
"""Benchmark: memory of big HTML reports (worker and run-once).

The backend stand-in pads every batch report to --big bytes (generated while
it is sent), so a run's report is that big from the backend to the platform:
fetched to a file, used as the run's report and uploaded from the file. The
same runs with --small reports give the baseline.

  worker    R runs (one image each, one batch each) are published by
            `visionbatch-producer --once` to a fresh topic and processed by
            one `visionbatch-worker --concurrency C`: its peak RSS (VmHWM
            from /proc, read before it is stopped) with big reports against
            small ones.
  run-once  `visionbatch run-once` with one run: peak RSS (wait4 rusage of
            that child) with one big report against one small one.

Every report must arrive at the platform stand-in whole (its recorded size is
checked). The benchmark fails (exit 1) when the worker's peak with big reports
exceeds its peak with small ones by more than --bound-mb (default 32), or
run-once's does.

  python3 tests/bench/bench_reports.py              # 4 x 200 MB vs 4 x 200 KB
  python3 tests/bench/bench_reports.py --quick      # 4 x 24 MB vs 4 x 200 KB (CI)
  python3 tests/bench/bench_reports.py --big 100000000 --runs 2 --concurrency 2

Needs a built tree (VB_BIN_DIR, default ./build), Kafka at $KAFKA_BROKERS
(127.0.0.1:9092; scripts/bench.sh starts deploy/local/services.sh) and
redis-server on PATH.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from bench_distributed import BROKERS, free_port, healthy, services  # noqa: E402


def peak_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit("no VmHWM for pid %d" % pid)


class Stubs:
    """Platform with `runs` one-image runs, backend padding reports to `size`."""

    def __init__(self, tmp, runs, size):
        scen = harness.make_scenario(runs, 1, image_bytes=20_000, seed=uuid.uuid4().hex[:10])
        self.ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.size = size
        self.platform = harness.PlatformStub(scenario=scen,
                                             log_path=os.path.join(tmp, "platform.log")).start()
        self.backend = harness.BackendStub(polls_to_complete=1,
                                           log_path=os.path.join(tmp, "backend.log")).start()
        self.backend.config(report_bytes=size)
        self.cfg = harness.processor_config(self.platform, self.backend)
        self.cfg.update({"log_file": "", "status_poll_min_ms": 50, "status_poll_max_ms": 200,
                         "max_report_bytes": max(2 * size, 1 << 20),
                         "temp_dir": os.path.join(tmp, "w")})

    def uploaded(self):
        """Sizes of the report files the platform accepted, by run id."""
        out = {}
        for u in self.platform.uploads():
            if u.get("status") == 200 and u.get("file"):
                out[u["fields"].get("vision_analysis_id")] = u["file"]["size"]
        return out

    def check(self):
        got = self.uploaded()
        for i in self.ids:
            if got.get(i) != self.size:
                raise SystemExit("run %s: report of %r bytes uploaded, expected %d"
                                 % (i, got.get(i), self.size))

    def stop(self):
        self.platform.stop()
        self.backend.stop()


def worker_case(runs, size, concurrency, timeout):
    tmp = tempfile.mkdtemp(prefix="vb-bench-rep-")
    tag = uuid.uuid4().hex[:8]
    topic, dlq = "vb-bench-rep-%s" % tag, "vb-bench-rep-%s.dlq" % tag
    stubs = Stubs(tmp, runs, size)
    redis = harness.RedisServer()
    worker = None
    services("create-topic", topic, "4")
    services("create-topic", dlq, "1")
    try:
        cfg = dict(stubs.cfg, redis_url=redis.url, kafka_brokers=BROKERS, topic=topic,
                   dlq_topic=dlq, group_id="vb-bench-rep-%s" % tag)
        path = harness.write_config(os.path.join(tmp, "worker.json"), cfg)
        port = free_port()
        worker = harness.start_binary("visionbatch-worker", [
            "--config", path, "--concurrency", str(concurrency), "--worker-id",
            "bench-rep-%s" % tag, "--metrics-listen", "127.0.0.1:%d" % port],
            log_dir=os.path.join(tmp, "logs"))
        worker.port = port
        harness.wait_until(lambda: healthy(worker), timeout=60, message="worker healthy")
        time.sleep(5)  # let the group form
        t0 = time.monotonic()  # wall: from publishing to the last report uploaded
        res = harness.run_binary("visionbatch-producer", ["--once", "--config", path],
                                 timeout=120)
        if res.returncode != 0:
            raise SystemExit("producer failed: %r" % res)
        deadline = t0 + timeout
        while len(stubs.uploaded()) < runs:
            if not worker.alive():
                raise SystemExit("worker died:\n" + worker.stderr()[-3000:])
            if time.monotonic() > deadline:
                raise SystemExit("timed out: %d of %d reports uploaded"
                                 % (len(stubs.uploaded()), runs))
            time.sleep(0.5)
        wall = time.monotonic() - t0
        kb = peak_kb(worker.pid)
        stubs.check()
        return wall, kb
    finally:
        if worker:
            worker.stop(grace=10)
        redis.stop()
        stubs.stop()
        services("delete-topic", topic)
        services("delete-topic", dlq)
        shutil.rmtree(tmp, ignore_errors=True)


def run_once_case(size, timeout):
    tmp = tempfile.mkdtemp(prefix="vb-bench-rep-")
    stubs = Stubs(tmp, 1, size)
    try:
        path = harness.write_config(os.path.join(tmp, "cfg.json"), stubs.cfg)
        binary = harness.require_binary("visionbatch")
        t0 = time.monotonic()
        with open(os.path.join(tmp, "stderr"), "wb") as err:
            proc = subprocess.Popen([binary, "run-once", "--config", path],
                                    stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            with open(os.path.join(tmp, "stderr"), errors="replace") as f:
                sys.stderr.write(f.read()[-3000:])
            raise SystemExit("run-once failed")
        stubs.check()
        return wall, usage.ru_maxrss
    finally:
        stubs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    # The programs take every setting from their config file: a REDIS_URL of
    # the environment (the shared services) would win over the private one.
    for k in list(os.environ):
        if k == "REDIS_URL" or k.startswith("VISIONBATCH_"):
            del os.environ[k]
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4, help="runs for the worker (one report each)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--big", type=int, default=200 * 1000 * 1000, help="bytes of a big report")
    ap.add_argument("--small", type=int, default=200 * 1000, help="bytes of a small report")
    ap.add_argument("--bound-mb", type=float, default=32.0,
                    help="allowed growth of peak RSS from small to big reports")
    ap.add_argument("--quick", action="store_true", help="big reports of 24 MB (CI)")
    ap.add_argument("--skip", choices=("worker", "run-once"), help="leave one benchmark out")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    if args.quick:
        args.big = 24 * 1000 * 1000

    print("%-10s %-6s %-5s %14s %8s %12s" % ("program", "runs", "conc", "report bytes",
                                             "wall s", "peak RSS MB"), flush=True)
    failures = []

    def compare(name, small_kb, big_kb):
        grow = (big_kb - small_kb) / 1024.0
        verdict = "ok" if grow <= args.bound_mb else "FAIL"
        print("%s: peak RSS grows by %.1f MB from small to big reports (bound %.0f MB): %s"
              % (name, grow, args.bound_mb, verdict), flush=True)
        if verdict != "ok":
            failures.append(name)

    if args.skip != "worker":
        peaks = []
        for size in (args.small, args.big):
            wall, kb = worker_case(args.runs, size, args.concurrency, args.timeout)
            peaks.append(kb)
            print("%-10s %-6d %-5d %14d %8.2f %12.1f" % ("worker", args.runs, args.concurrency,
                                                         size, wall, kb / 1024.0), flush=True)
        compare("worker", *peaks)
    if args.skip != "run-once":
        peaks = []
        for size in (args.small, args.big):
            wall, kb = run_once_case(size, args.timeout)
            peaks.append(kb)
            print("%-10s %-6d %-5d %14d %8.2f %12.1f" % ("run-once", 1, 1, size, wall,
                                                         kb / 1024.0), flush=True)
        compare("run-once", *peaks)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
