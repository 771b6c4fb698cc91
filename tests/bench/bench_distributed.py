#!/usr/bin/env python3
"""Benchmark: visionbatch-producer + visionbatch-worker against run-once.

N runs x M images go through the stand-in servers; the backend stand-in holds
every batch for a fixed delay (--batch-delay, default 0.5 s), so the backend's
own share of the time is known exactly: runs x delay (one batch per run).

  baseline     `visionbatch run-once` processes the runs one after another.
  distributed  for each (workers, concurrency) pair: W visionbatch-worker
               processes (--concurrency C each) are started and given time to
               join their consumer group, then `visionbatch-producer --once`
               publishes every run; the wall time runs from the producer's
               start to the last upload the platform stand-in received.

Producer and workers share one secret key (VISIONBATCH_SECRET_KEY), as a
deployment does, so runs travel sealed in their messages and workers start
them without a platform request (--no-seal: every run looked up).

Every configuration gets a fresh platform stand-in with fresh run ids, a
fresh Kafka topic (--partitions, default 8, created and deleted through
deploy/local/services.sh), a fresh consumer group and dead-letter topic name,
and a private redis-server, so no configuration sees another's state.

Per-run overhead: the slot-seconds a run costs beyond the backend's delay,
    overhead = (wall x slots - runs x delay) / runs,   slots = W x C
(for run-once slots = 1). It charges each run its share of every cost the
system adds: listing runs, publishing, Kafka delivery, Redis claims, the
worker's platform lookup, downloads, status polling granularity, report
upload, and idle slots at the end (the last wave is not full).

Also reported: wall / ideal, where ideal = runs x delay / slots (the wall
time if slots never waited for anything but the backend); slot busy % =
the time slots held a run (the workers' visionbatch_run_duration_seconds_sum,
read from /metrics once every run is uploaded) / (wall x slots); the mean
seconds per uploaded run of each phase (the workers'
visionbatch_run_phase_seconds{phase}: claim, open, download, submit, wait,
report, upload, record); the runs each worker uploaded; the CPU seconds the platform and backend stand-ins
and the workers used (the "ideal" counts none of it); and per run the
platform's list GETs (the producer's listing plus the workers' lookups) and
the backend status polls. Status polling follows the programs' defaults
(docs/configuration.md) unless --poll-ms fixes the interval.

  python3 tests/bench/bench_distributed.py                 # 200 runs x 5 images
  python3 tests/bench/bench_distributed.py --quick         # 16 runs, 0.2 s, 2x2 (CI)
  python3 tests/bench/bench_distributed.py --runs 100 --configs 1x1,2x4

Needs a built tree (VB_BIN_DIR, default ./build), Kafka at $KAFKA_BROKERS
(127.0.0.1:9092; scripts/bench.sh starts deploy/local/services.sh) and
redis-server on PATH.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
import harness  # noqa: E402

BROKERS = os.environ.get("KAFKA_BROKERS") or "127.0.0.1:9092"
SECRET_KEY = base64.b64encode(b"distributed-bench-key-32-bytes!!").decode()
SERVICES = os.path.join(harness.SOURCE_DIR, "deploy", "local", "services.sh")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services(*args):
    r = subprocess.run([SERVICES] + list(args), capture_output=True, text=True, timeout=240)
    if r.returncode != 0:
        raise SystemExit("services.sh %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))


class Case:
    """Stand-ins and a scenario of fresh runs for one configuration."""

    def __init__(self, args, tmp):
        self.tmp = tmp
        seed = uuid.uuid4().hex[:10]
        scen = harness.make_scenario(args.runs, args.images, image_bytes=args.bytes, seed=seed)
        self.ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.platform = harness.PlatformStub(scenario=scen,
                                             log_path=os.path.join(tmp, "platform.log")).start()
        self.backend = harness.BackendStub(polls_to_complete=1, batch_delay=args.batch_delay,
                                           log_path=os.path.join(tmp, "backend.log")).start()
        self.base = harness.processor_config(self.platform, self.backend)
        self.base.update({"log_file": "", "download_concurrency": args.download_concurrency})
        if args.poll_ms:  # else the programs' own status poll schedule
            self.base.update({"status_poll_min_ms": args.poll_ms,
                              "status_poll_max_ms": args.poll_ms})

    def stop(self):
        self.platform.stop()
        self.backend.stop()

    def requests(self):
        """(platform list GETs, backend status polls) so far."""
        return len(self.platform.gets()), len(self.backend.records()["statuses"])

    def finished(self):
        """(all uploaded?, time.time() of the last upload, upload count)."""
        recs = self.platform.records()
        ok = [u for u in recs["uploads"] if u.get("status") == 200]
        done = {r["vision_analysis_id"] for r in recs["runs"] if r["uploads"] >= 1}
        last = max((u["time"] for u in ok), default=None)
        return all(i in done for i in self.ids), last, len(ok)

    def wait_done(self, timeout, procs=()):
        deadline = time.monotonic() + timeout
        while True:
            for p in procs:
                if not p.alive() and getattr(p, "must_live", True):
                    raise SystemExit("%s exited:\n%s" % (p.cmd[0], p.stderr()[-3000:]))
            done, last, n = self.finished()
            if done:
                return last, n
            if time.monotonic() > deadline:
                raise SystemExit("timed out: %d of %d runs uploaded" % (n, len(self.ids)))
            time.sleep(0.5)


def run_once(args):
    tmp = tempfile.mkdtemp(prefix="vb-bench-once-")
    case = Case(args, tmp)
    try:
        cfg = dict(case.base, temp_dir=os.path.join(tmp, "w"))
        path = harness.write_config(os.path.join(tmp, "cfg.json"), cfg)
        t0 = time.time()
        res = harness.run_binary("visionbatch", ["run-once", "--config", path],
                                 timeout=args.timeout)
        if res.returncode != 0:
            raise SystemExit("run-once failed: %r" % res)
        last, n = case.wait_done(30)
        return {"wall": last - t0, "uploads": n, "publish": None, "requests": case.requests()}
    finally:
        case.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class Stack:
    """A distributed run's parts: the stand-ins (Case), a private Redis, a
    private runs/dead-letter topic pair, and the workers started on them.
    `svc` is the settings every program gets; stop() removes everything."""

    def __init__(self, case_args, prefix, partitions, env=None, **settings):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.tag = uuid.uuid4().hex[:8]
        self.topic, self.dlq = "vb-bench-%s" % self.tag, "vb-bench-%s.dlq" % self.tag
        self.case = Case(case_args, self.tmp)
        self.redis = harness.RedisServer()
        self.env = env or {}
        self.procs = []
        services("create-topic", self.topic, str(partitions))
        services("create-topic", self.dlq, "1")
        self.svc = dict(self.case.base, redis_url=self.redis.url, kafka_brokers=BROKERS,
                        topic=self.topic, dlq_topic=self.dlq, group_id="vb-bench-%s" % self.tag,
                        **settings)

    def start_worker(self, concurrency, extra=()):
        """Starts one more worker (not waiting for it); returns its process."""
        i = len(self.procs)
        cfg = dict(self.svc, temp_dir=os.path.join(self.tmp, "w%d" % i))
        path = harness.write_config(os.path.join(self.tmp, "worker%d.json" % i), cfg)
        port = free_port()
        p = harness.start_binary("visionbatch-worker", [
            "--config", path, "--concurrency", str(concurrency), "--worker-id",
            "bench-%s-%d" % (self.tag, i), "--metrics-listen", "127.0.0.1:%d" % port]
            + list(extra), env=self.env, log_dir=os.path.join(self.tmp, "logs%d" % i))
        p.port = port
        self.procs.append(p)
        return p

    def start_group(self, workers, concurrency, settle, extra=(), timeout=30):
        """Starts `workers` workers, waits until each is healthy, then
        `settle` seconds for the group to form (the broker's initial
        rebalance delay is 3 s)."""
        for _ in range(workers):
            self.start_worker(concurrency, extra)
        for p in self.procs:
            harness.wait_until(lambda: healthy(p), timeout=timeout, message="worker healthy")
        time.sleep(settle)

    def publish_once(self, timeout):
        """Runs `visionbatch-producer --once`; returns (start time, seconds
        it took, its result). Exits the benchmark when the producer fails."""
        path = harness.write_config(os.path.join(self.tmp, "producer.json"), self.svc)
        t0 = time.time()
        res = harness.run_binary("visionbatch-producer", ["--once", "--config", path],
                                 env=self.env, timeout=timeout)
        if res.returncode != 0:
            raise SystemExit("producer failed: %r" % res)
        return t0, time.time() - t0, res

    def stop(self, grace):
        for p in self.procs:
            p.stop(grace=grace)
        self.redis.stop()
        self.case.stop()
        services("delete-topic", self.topic)
        services("delete-topic", self.dlq)
        shutil.rmtree(self.tmp, ignore_errors=True)


def distributed(args, workers, concurrency):
    env = {} if args.no_seal else {"VISIONBATCH_SECRET_KEY": SECRET_KEY}
    st = Stack(args, "vb-bench-dist-", args.partitions, env)
    try:
        st.start_group(workers, concurrency, args.settle)
        t0, published, _ = st.publish_once(args.timeout)
        procs, case = st.procs, st.case
        wait_uploaded(procs, args.runs, args.timeout)
        last, n = case.wait_done(60, procs)
        return {"wall": last - t0, "uploads": n, "publish": published,
                "requests": case.requests(), "busy_s": sum(run_seconds(p) for p in procs),
                "phases": phase_means([metrics_text(p) for p in procs]),
                "per_worker": [uploaded_runs(metrics_text(p)) for p in procs],
                "cpu": {"platform": cpu_seconds(case.platform.proc.pid),
                        "backend": cpu_seconds(case.backend.proc.pid),
                        "workers": sum(cpu_seconds(p.proc.pid) for p in procs)}}
    finally:
        st.stop(grace=10)


def healthy(p):
    if not p.alive():
        raise SystemExit("worker died:\n" + p.stderr()[-3000:])
    try:
        return harness.http_request("GET", "http://127.0.0.1:%d/healthz" % p.port,
                                    timeout=2).status == 200
    except OSError:
        return False


def cpu_seconds(pid):
    """User + system CPU seconds process `pid` has used so far (/proc)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics_text(p):
    return harness.http_request("GET", "http://127.0.0.1:%d/metrics" % p.port, timeout=5).text()


PHASES = ("claim", "open", "download", "submit", "wait", "report", "upload", "record")


def phase_means(bodies):
    """Mean seconds per uploaded run of each phase, over every worker's
    visionbatch_run_phase_seconds histogram: {phase: mean} ({} when absent)."""
    sums, counts = {}, {}
    for body in bodies:
        for line in body.splitlines():
            for suffix, into in (("_sum{", sums), ("_count{", counts)):
                head = "visionbatch_run_phase_seconds" + suffix
                if line.startswith(head):
                    phase = line[len(head):].split('"')[1]
                    into[phase] = into.get(phase, 0.0) + float(line.split()[-1])
    return {ph: sums[ph] / counts[ph] for ph in PHASES if counts.get(ph)}


def wait_uploaded(procs, runs, timeout):
    """Waits until the workers' metrics count `runs` uploaded runs. Reading
    the workers' metrics, not the platform stand-in's growing records, keeps
    the benchmark's own requests off the stand-in's CPU while runs go on."""
    deadline = time.monotonic() + timeout
    while True:
        n = 0
        for p in procs:
            if not p.alive():
                raise SystemExit("%s exited:\n%s" % (p.cmd[0], p.stderr()[-3000:]))
            n += uploaded_runs(metrics_text(p))
        if n >= runs:
            return
        if time.monotonic() > deadline:
            raise SystemExit("timed out: %d of %d runs uploaded" % (n, runs))
        time.sleep(0.5)


def uploaded_runs(body):
    """A worker's visionbatch_runs_total{outcome="uploaded"} from its /metrics text."""
    head = 'visionbatch_runs_total{outcome="uploaded"} '
    return int(sum(float(line[len(head):]) for line in body.splitlines()
                   if line.startswith(head)))


def run_seconds(p):
    """Seconds the worker's slots held runs: its run-duration histogram's sum."""
    body = metrics_text(p)
    for line in body.splitlines():
        if line.startswith("visionbatch_run_duration_seconds_sum"):
            return float(line.split()[-1])
    raise SystemExit("no visionbatch_run_duration_seconds_sum in the worker's metrics")


def parse_configs(text):
    out = []
    for part in text.split(","):
        w, _, c = part.strip().partition("x")
        out.append((int(w), int(c or 1)))
    return out


def add_stack_args(ap, settle, timeout, quick_help,
                   settle_help="seconds between worker start and producer start"):
    """The options every benchmark built on Stack takes: --partitions, --settle,
    --poll-ms, --timeout, --quick, --json."""
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--settle", type=float, default=settle, help=settle_help)
    ap.add_argument("--poll-ms", type=int, default=0,
                    help="fix the status poll interval (min = max) instead of the defaults")
    ap.add_argument("--timeout", type=float, default=timeout)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json", help="also write the results to this file")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--bytes", type=int, default=20_000, help="bytes per image")
    ap.add_argument("--batch-delay", type=float, default=0.5,
                    help="seconds the backend holds each batch")
    ap.add_argument("--configs", default="1x1,1x4,2x1,2x4,4x1,4x4",
                    help="WORKERSxCONCURRENCY list")
    ap.add_argument("--download-concurrency", type=int, default=4)
    ap.add_argument("--no-baseline", action="store_true", help="skip the run-once baseline")
    ap.add_argument("--no-seal", action="store_true",
                    help="no shared secret key: workers look every run up on the platform")
    add_stack_args(ap, 8.0, 1800, "smoke run for CI: 16 runs, 0.2 s batches, config 2x2")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.batch_delay, args.configs, args.settle = 16, 0.2, "2x2", 5.0
    configs = parse_configs(args.configs)
    backend_s = args.runs * args.batch_delay

    print("%d runs x %d images (%d bytes), backend delay %.2f s per batch, "
          "%d partitions; backend time %.1f s" % (args.runs, args.images, args.bytes,
                                                  args.batch_delay, args.partitions, backend_s))
    head = "%-14s %6s %8s %10s %9s %8s %12s %8s %7s %9s %9s" % (
        "mode", "slots", "wall s", "publish s", "runs/s", "speedup", "overhead s", "x ideal",
        "busy %", "GETs/run", "polls/run")
    print(head)
    results = []
    base_wall = None

    def report(name, slots, r):
        nonlocal base_wall
        wall = r["wall"]
        if base_wall is None and name == "run-once":
            base_wall = wall
        over = (wall * slots - backend_s) / args.runs
        gets, polls = r["requests"]
        row = {"mode": name, "slots": slots, "wall_s": round(wall, 2),
               "x_ideal": round(wall * slots / backend_s, 2),
               "list_gets_per_run": round(gets / args.runs, 2),
               "status_polls_per_run": round(polls / args.runs, 2),
               "publish_s": None if r["publish"] is None else round(r["publish"], 2),
               "runs_per_s": round(args.runs / wall, 2),
               "speedup": round(base_wall / wall, 2) if base_wall else None,
               "overhead_s": round(over, 3),
               "slot_busy_pct": (None if r.get("busy_s") is None
                                 else round(100.0 * r["busy_s"] / (wall * slots), 1))}
        results.append(row)
        print("%-14s %6d %8.2f %10s %9.2f %8s %12.3f %7.2fx %7s %9.2f %9.2f" % (
            name, slots, wall, "-" if r["publish"] is None else "%.2f" % r["publish"],
            row["runs_per_s"], "-" if row["speedup"] is None else "%.2fx" % row["speedup"],
            over, row["x_ideal"],
            "-" if row["slot_busy_pct"] is None else "%.1f" % row["slot_busy_pct"],
            row["list_gets_per_run"], row["status_polls_per_run"]), flush=True)
        if r.get("phases"):
            row["phase_mean_s"] = {k: round(v, 4) for k, v in r["phases"].items()}
            print("  mean s per uploaded run: " + ", ".join(
                "%s %.3f" % (k, v) for k, v in r["phases"].items()) +
                  " (sum %.3f)" % sum(r["phases"].values()), flush=True)
        if r.get("per_worker"):
            row["runs_per_worker"] = r["per_worker"]
            print("  runs per worker: " + ", ".join(str(n) for n in r["per_worker"]), flush=True)
        if r.get("cpu"):
            row["cpu_s"] = {k: round(v, 2) for k, v in r["cpu"].items()}
            print("  CPU s: " + ", ".join("%s %.2f (%.0f%% of a core)" % (k, v, 100 * v / wall)
                                          for k, v in r["cpu"].items()), flush=True)

    if not args.no_baseline:
        report("run-once", 1, run_once(args))
    for w, c in configs:
        report("%d worker%s x %d" % (w, "" if w == 1 else "s", c), w * c, distributed(args, w, c))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "images": args.images, "bytes": args.bytes,
                       "batch_delay": args.batch_delay, "partitions": args.partitions,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
