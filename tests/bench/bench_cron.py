#!/usr/bin/env python3
"""Benchmark of visionbatch-producer with many active cron jobs.

Starts a private redis-server, a platform stand-in serving no runs (so a
firing costs one platform GET plus the Redis scripts): nginx answering every
GET with one fixed JSON page (`--platform nginx`, the default; Debian's
nginx, scripts/install-deps.sh) or the Python stand-in tests/stubs/
platform_server.py (`--platform stub`) -- and `--producers` producers (default
2) sharing that Redis (`--listen` on free ports, Kafka from
deploy/local/services.sh), then:

  1. creates N jobs `* * * * *` through POST /cron-jobs (creation throughput);
  2. from 2 s before each of `--ticks` minute boundaries after the last
     creation, sends GET /cron-jobs/{id} (random ids) to the first producer at
     a fixed ~1,000 requests/s (`--get-rate`; wrk, 10 connections, each
     request waiting its turn) for `--get-seconds`: latency p50/p99 while the
     jobs fire, and the share of those requests the producer itself handled
     within 5 / 10 ms (its visionbatch_api_request_seconds histogram: from
     reading the request to the answer, so without the wait for its thread);
  3. reads every execution's scheduled_for / started_at / completed_at /
     producer from Redis: schedule lag (claim time - tick) and firing lag
     (firing finished - tick), p50/p99/max per tick, executions per producer,
     and checks every job fired exactly once per tick; with Redis's CPU
     seconds and its time per kind of command (claim scripts, end scripts,
     the commands inside them: every command goes to the slow log during the
     ticks), and the CPU seconds of Redis, each producer and nginx;
  4. runs wrk on GET /cron-jobs/{id} for `--wrk-seconds` at a few connection
     counts (closed loop: as fast as it goes), p50/p99 and requests/s (wrk
     connects from one address: above 32 connections the producers'
     http_max_connections_per_ip is raised to fit);
  5. reads the first producer's VmRSS / VmHWM (/proc/<pid>/status) after
     creation, after the ticks and after the wrk runs;
  6. (after creation) times GET /cron-jobs whole and in pages of 100, and
     GET /cron-jobs/{id} latencies while whole listings run.

  scripts/bench.sh cron                       10,000 jobs, 2 producers, 2 ticks, wrk 15 s
  scripts/bench.sh cron --quick               300 jobs, 2 producers, 1 tick, 2 s runs
                                              (CI: about a minute, most of it waiting
                                              for the minute boundary)
  VB_BIN_DIR=build python3 tests/bench/bench_cron.py --jobs 5000 --producers 1

--fire-threads and --http-threads set VISIONBATCH_CRON_FIRE_THREADS and
VISIONBATCH_HTTP_THREADS for the producers (omit them to use the defaults). Needs Kafka (deploy/local/services.sh start),
redis-server, wrk and nginx (or --platform stub). Exits non-zero when a
measured tick did not fire every job exactly once with status success, or
when an API request failed.
"""

import argparse
import base64
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
import harness  # noqa: E402
from test_producer import BROKERS, kafka_ok  # noqa: E402

SECRET_KEY = base64.b64encode(b"b" * 32).decode()

# Every execution as "scheduled_for started_at completed_at status producer job",
# one per line.
READ_EXECS = (
    "local out = {} "
    "for _, k in ipairs(redis.call('KEYS', 'visionbatch:exec:*')) do "
    "  local h = redis.call('HMGET', k, 'scheduled_for', 'started_at', 'completed_at', 'status', "
    "    'producer', 'job_id') "
    "  out[#out + 1] = (h[1] or '0') .. ' ' .. (h[2] or '0') .. ' ' .. (h[3] or '0') .. ' ' "
    "    .. (h[4] or '') .. ' ' .. (h[5] or '-') .. ' ' .. (h[6] or '-') "
    "end "
    "return out")

# What the platform answers to every GET: a page with no unprocessed runs.
EMPTY_PAGE = json.dumps({"code": 200, "status": "success",
                         "data": {"total": 0, "page": 1, "page_size": 100,
                                  "vision_analysis": []}})


class NginxPlatform:
    """nginx answering every request with EMPTY_PAGE (no files, no logs)."""

    api_key = "bench-key"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
                    "error_log %s/error.log warn;\nevents { worker_connections 1024; }\n"
                    "http {\n  access_log off;\n"
                    "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
                    "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
                    "  scgi_temp_path %s/scgi;\n  keepalive_requests 1000000;\n"
                    "  server {\n    listen 127.0.0.1:%d;\n"
                    "    location / { default_type application/json; return 200 '%s'; }\n"
                    "  }\n}\n" % ((self.dir,) * 7 + (self.port, EMPTY_PAGE)))
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf, "-e", "stderr"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        harness.wait_until(self._up, timeout=10, message="nginx up")

    def _up(self):
        if self.proc.poll() is not None:
            raise SystemExit("nginx exited (see %s)" % self.dir)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def get_url(self):
        return "http://127.0.0.1:%d/api/v1/documents/vision_analysis" % self.port

    @property
    def post_url(self):
        return "http://127.0.0.1:%d/api/v1/documents/vision_analysis/upload" % self.port

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def proc_mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def fmt_mem(m):
    return "VmRSS %.1f MB, VmHWM %.1f MB, threads %d" % (m["VmRSS"] / 1024.0,
                                                         m["VmHWM"] / 1024.0, m["Threads"])


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def producer_up(port, proc):
    """True once the producer on `port` answers /healthz; exits if it died."""
    if not proc.alive():
        raise SystemExit("producer exited: %s" % proc.stderr()[-2000:])
    try:
        return harness.http_request("GET", "http://127.0.0.1:%d/healthz" % port,
                                    timeout=2).status == 200
    except OSError:
        return False


def create_jobs(port, n, platform, concurrency=8, headers=None, distinct_keys=False, **fields):
    """POSTs n jobs over `concurrency` keep-alive connections; returns (ids, seconds).
    `fields` replace those of the job body; `headers` are added to each request;
    `distinct_keys` gives each job an external_api_key of its own."""
    body = {
        "name": "bench",
        "schedule": "* * * * *",
        "external_api_get_url": platform.get_url,
        "external_api_post_url": platform.post_url,
        "external_api_key": platform.api_key,
        "backend_api_url": "http://127.0.0.1:9",
        "organization_id": harness.GUIDE_ORG_ID,
        "enabled": True,
    }
    body.update(fields)
    ids, errors = [], []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            job = dict(body, name="bench-%d" % i)
            if distinct_keys:
                job["external_api_key"] = "%s-%d" % (platform.api_key, i)
            data = json.dumps(job)
            try:
                conn.request("POST", "/cron-jobs", data,
                             dict(headers or {}, **{"Content-Type": "application/json"}))
                r = conn.getresponse()
                payload = r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                if r.status == 201:
                    ids.append(json.loads(payload)["job_id"])
                else:
                    errors.append("%d %s" % (r.status, payload[:200]))
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    if errors:
        raise SystemExit("job creation: %d errors, first: %s" % (len(errors), errors[0]))
    return ids, took


def get_json(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    if r.status != 200:
        raise SystemExit("GET %s: %d %s" % (path, r.status, body[:200]))
    return json.loads(body), len(body)


def measure_listing(port, ids, failures):
    """GET /cron-jobs whole and in pages of 100, and GET /cron-jobs/{id}
    latencies while whole listings run."""
    t0 = time.monotonic()
    whole, nbytes = get_json(port, "/cron-jobs")
    t_whole = time.monotonic() - t0
    t0, pages, seen, path = time.monotonic(), 0, [], "/cron-jobs?limit=100"
    while path:
        page, _ = get_json(port, path)
        pages += 1
        seen += [j["job_id"] for j in page["cron_jobs"]]
        nxt = page.get("next_cursor")  # absent before paging existed
        path = nxt and "/cron-jobs?limit=100&cursor=" + nxt
    t_paged = time.monotonic() - t0
    print("GET /cron-jobs: %d jobs, %.1f KB in %.3f s; in pages of 100: %d pages in %.3f s"
          % (len(whole["cron_jobs"]), nbytes / 1024.0, t_whole, pages, t_paged))
    if len(whole["cron_jobs"]) != len(ids) or sorted(seen) != sorted(ids):
        failures.append("listing: %d jobs whole, %d paged (%d distinct), want %d"
                        % (len(whole["cron_jobs"]), len(seen), len(set(seen)), len(ids)))
    stop, lat = threading.Event(), []

    def lister():
        while not stop.is_set():
            get_json(port, "/cron-jobs")
    th = threading.Thread(target=lister)
    th.start()
    time.sleep(0.05)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(200):
        t0 = time.monotonic()
        conn.request("GET", "/cron-jobs/" + ids[i % len(ids)])
        conn.getresponse().read()
        lat.append(time.monotonic() - t0)
    conn.close()
    stop.set()
    th.join()
    print("GET /cron-jobs/{id} while whole listings run: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (pct(lat, 50) * 1000, pct(lat, 99) * 1000, max(lat) * 1000))


def read_execs(redis_port):
    r = subprocess.run(["redis-cli", "-p", str(redis_port), "EVAL", READ_EXECS, "0"],
                       capture_output=True, text=True, timeout=120, check=True)
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 6:
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), parts[3], parts[4],
                         parts[5]))
    return rows


def redis_cmd(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()


def redis_cpu(port):
    """used_cpu_sys + used_cpu_user of the server, in seconds."""
    info = redis_cmd(port, "INFO", "cpu")
    return sum(float(line.split(":")[1]) for line in info.splitlines()
               if line.startswith(("used_cpu_sys:", "used_cpu_user:")))


def script_stats(info):
    """Calls and µs per call of the commands sent by clients (scripts and
    plain commands), from INFO commandstats."""
    out = []
    for line in info.splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", line)
        if m and m.group(1) in ("evalsha", "eval", "get", "hgetall", "hget"):
            out.append("%s %s calls, %s µs each" % (m.group(1).upper(), m.group(2), m.group(4)))
    return "; ".join(out) or "no scripts"


def command_kind(argv):
    """What a logged command was: the scheduler's claim, end or last-tick
    script, another script, or the command's name."""
    name = (argv[0] if argv else "?").upper()
    if name not in ("EVALSHA", "EVAL") or len(argv) < 4:
        return name
    first, second = argv[3], argv[4] if len(argv) > 4 else ""
    if first == "visionbatch:execs:running":
        if second.startswith("visionbatch:job:"):
            return "claim script"
        if second.startswith("visionbatch:exec:"):
            return "end script"
    if first.startswith("visionbatch:job:") and argv[2] != "0" and all(
            a.startswith("visionbatch:job:") for a in argv[3:3 + int(argv[2])][:28]):
        return "last-tick script"
    return "other script"


def redis_profile(port):
    """Per kind of command in the slow log (which the caller set to log
    every command): [calls, total µs, max µs]."""
    kinds = {}
    client = harness.RespClient(port, timeout=120)
    entries = client.cmd("SLOWLOG", "GET", "-1") or []
    client.close()
    for e in entries:
        us, k = e[2], command_kind(e[3])
        c = kinds.setdefault(k, [0, 0, 0])
        c[0] += 1
        c[1] += us
        c[2] = max(c[2], us)
    return kinds


def lag_table(rows, ticks_ms):
    """Per tick: count, schedule lag p50/p99/max, firing lag p50/p99/max (seconds)."""
    out = []
    for tick in ticks_ms:
        mine = [r for r in rows if r[0] == tick]
        fired = [r for r in mine if r[3] != "skipped"]
        if not fired:
            out.append((tick, len(mine), 0, None, None))
            continue
        start = [(r[1] - tick) / 1000.0 for r in fired]
        done = [(r[2] - tick) / 1000.0 for r in fired if r[2] > 0]
        out.append((tick, len(mine), len(fired),
                    (min(start), pct(start, 50), pct(start, 99), max(start)),
                    (pct(done, 50), pct(done, 99), max(done)) if done else None))
    return out


def get_histogram(port):
    """The producer's own account of GET /cron-jobs/{id} handling time (from
    reading the request to the answer, so without waiting for a thread):
    {upper bound s: cumulative count} of visionbatch_api_request_seconds."""
    text = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % port, timeout=10).text()
    out = {}
    for m in re.finditer(r'^visionbatch_api_request_seconds_bucket\{route="/cron-jobs/\{\}",'
                         r'le="([^"]+)"\} (\d+)', text, re.M):
        out[float(m.group(1))] = int(m.group(2))
    return out


def handled_within(before, after, bound):
    """Share of the requests counted between two get_histogram()s that were
    handled within `bound` seconds."""
    total = after.get(float("inf"), 0) - before.get(float("inf"), 0)
    within = after.get(bound, 0) - before.get(bound, 0)
    return within / total if total else float("nan")


def run_wrk(port, ids, connections, seconds, tmp, rate=0):
    """wrk on GET /cron-jobs/{id}; with `rate` (requests/s) each connection
    waits connections/rate s before each request (wrk's delay()), so the
    load is about `rate` however fast the answers come."""
    script = os.path.join(tmp, "get_job_%d_%d.lua" % (connections, rate))
    sample = random.Random(7).sample(ids, min(len(ids), 2000))
    with open(script, "w") as f:
        f.write("local ids = {%s}\n" % ",".join('"%s"' % i for i in sample))
        f.write("math.randomseed(7)\n")
        f.write("request = function()\n"
                "  return wrk.format('GET', '/cron-jobs/' .. ids[math.random(#ids)])\n"
                "end\n")
        if rate:
            f.write("delay = function() return %d end\n" % max(1, 1000 * connections // rate))
    threads = min(2, connections)
    r = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % seconds,
                        "--latency", "-s", script, "http://127.0.0.1:%d" % port],
                       capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise SystemExit("wrk failed: %s" % r.stderr)
    text = r.stdout

    def lat(label):
        m = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), text, re.M)
        if not m:
            return float("nan")
        v = float(m.group(1))
        return v / 1000.0 if m.group(2) == "us" else v * 1000.0 if m.group(2) == "s" else v

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errs = re.search(r"Socket errors:.*", text)
    return {"p50": lat("50%"), "p99": lat("99%"), "rps": float(rps.group(1)) if rps else 0.0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errs.group(0) if errs else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=None, help="active jobs (default 10000)")
    ap.add_argument("--quick", action="store_true",
                    help="300 jobs, 1 tick, one 2 s wrk run at 4 connections")
    ap.add_argument("--ticks", type=int, default=None, help="minute boundaries to measure")
    ap.add_argument("--wrk-seconds", type=int, default=None)
    ap.add_argument("--connections", default="2,16,64", help="wrk connection counts")
    ap.add_argument("--fire-threads", type=int, default=None,
                    help="VISIONBATCH_CRON_FIRE_THREADS for the producers")
    ap.add_argument("--http-threads", type=int, default=None,
                    help="VISIONBATCH_HTTP_THREADS for the producers (omit: their default)")
    ap.add_argument("--producers", type=int, default=2,
                    help="producers sharing the jobs (default 2)")
    ap.add_argument("--platform", choices=("nginx", "stub"), default="nginx",
                    help="platform stand-in: nginx (default) or the Python stub")
    ap.add_argument("--get-rate", type=int, default=1000,
                    help="GET /cron-jobs/{id} requests/s while the jobs fire (0: none)")
    ap.add_argument("--get-seconds", type=int, default=None,
                    help="how long that load lasts from 2 s before each tick (default 12, "
                         "quick 4)")
    ap.add_argument("--distinct-keys", action="store_true",
                    help="an external_api_key per job (nginx ignores it; the default is one "
                         "key for all)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()
    n = args.jobs or (300 if args.quick else 10000)
    ticks = args.ticks or (1 if args.quick else 2)
    wrk_s = args.wrk_seconds or (2 if args.quick else 15)
    get_s = args.get_seconds or (4 if args.quick else 12)
    if args.quick and args.connections == ap.get_default("connections"):
        args.connections = "4"
    conns = [int(c) for c in args.connections.split(",") if c]
    failures = []
    for tool in ("redis-server", "redis-cli", "wrk") + (("nginx",) if args.platform == "nginx"
                                                        else ()):
        if not shutil.which(tool):
            raise SystemExit("bench_cron: %s not found (scripts/install-deps.sh)" % tool)
    if not kafka_ok():
        raise SystemExit("bench_cron: Kafka unavailable at %s: deploy/local/services.sh start"
                         % BROKERS)
    binary = harness.require_binary("visionbatch-producer")

    tmp = tempfile.mkdtemp(prefix="vb-bench-cron-")
    redis = harness.RedisServer()
    if args.platform == "nginx":
        platform = NginxPlatform(tmp)
    else:
        platform = harness.PlatformStub(log_path=os.path.join(tmp, "platform.log"))
        platform.start()
    procs = []
    try:
        ports = []
        for i in range(max(1, args.producers)):
            port = free_port()
            env = {"VISIONBATCH_SECRET_KEY": SECRET_KEY,
                   "REDIS_URL": "redis://127.0.0.1:%d/0" % redis.port,
                   "KAFKA_BROKERS": BROKERS,
                   "VISIONBATCH_WORKER_ID": "producer-%d" % (i + 1),
                   "VISIONBATCH_LOG_FILE": os.path.join(tmp, "producer-%d.log" % (i + 1)),
                   "VISIONBATCH_CONFIG": harness.write_config(os.path.join(tmp, "empty.json"),
                                                              {})}
            if args.fire_threads is not None:
                env["VISIONBATCH_CRON_FIRE_THREADS"] = str(args.fire_threads)
            if args.http_threads is not None:
                env["VISIONBATCH_HTTP_THREADS"] = str(args.http_threads)
            # wrk opens every connection from one address: above the
            # per-address limit (default 32) the producer would evict them
            if max(conns) > 32:
                env["VISIONBATCH_HTTP_MAX_CONNECTIONS_PER_IP"] = str(max(conns) + 16)
            pdir = os.path.join(tmp, "producer-%d" % (i + 1))
            os.makedirs(pdir)
            procs.append(harness.start_binary(binary, ["--listen", "127.0.0.1:%d" % port],
                                              env=env, log_dir=pdir))
            ports.append(port)
        port, proc = ports[0], procs[0]
        for p, pr in zip(ports, procs):
            harness.wait_until(lambda: producer_up(p, pr), timeout=30,
                               message="producer API up")
        print("jobs %d, producers %d, platform %s, fire threads %s, http threads %s, ticks %d, "
              "wrk %d s, cores %d"
              % (n, len(procs), args.platform,
                 args.fire_threads if args.fire_threads is not None else "default",
                 args.http_threads if args.http_threads is not None else "default", ticks, wrk_s,
                 os.cpu_count()))

        ids, took = create_jobs(port, n, platform, distinct_keys=args.distinct_keys)
        print("created %d jobs in %.1f s: %.0f jobs/s" % (len(ids), took, len(ids) / took))
        time.sleep(2)  # the scheduler's reload of the new version
        measure_listing(port, ids, failures)
        mem_idle = proc_mem(proc.pid)
        print("after creation: %s" % fmt_mem(mem_idle))

        # Measure the ticks strictly after the last creation (every job is due).
        first = (int(time.time()) // 60 + 1) * 60
        # The same GET load with nothing firing, when it fits before the
        # first tick: the reference for the latency while the jobs fire.
        idle_s = min(get_s, 5)
        if args.get_rate > 0 and first - 3 - time.time() > idle_s + 1:
            w = run_wrk(port, ids, 10, idle_s, tmp, rate=args.get_rate)
            print("GET /cron-jobs/{id} at %d/s with nothing firing: p50 %.2f ms, p99 %.2f ms, "
                  "%.0f requests/s" % (args.get_rate, w["p50"], w["p99"], w["rps"]))
            if w["non2xx"] or w["errors"] or w["rps"] <= 0:
                failures.append("GET with nothing firing: %d non-2xx, %s"
                                % (w["non2xx"], w["errors"] or "no requests"))
        else:
            print("GET /cron-jobs/{id} with nothing firing: no time left before the tick")
        tick_list = [first + 60 * i for i in range(ticks)]
        last = tick_list[-1]
        print("waiting for ticks %s" % ", ".join(time.strftime("%H:%M:%S", time.gmtime(t))
                                                 for t in tick_list))
        # Redis's own account of the ticks: CPU seconds and script calls.
        redis_cmd(redis.port, "CONFIG", "RESETSTAT")
        # Every command into the slow log, for the time per script kind.
        redis_cmd(redis.port, "CONFIG", "SET", "slowlog-max-len", "1000000")
        redis_cmd(redis.port, "CONFIG", "SET", "slowlog-log-slower-than", "0")
        redis_cmd(redis.port, "SLOWLOG", "RESET")
        cpu0 = redis_cpu(redis.port)
        watched = [("redis", redis.proc.pid)] + [
            ("producer-%d" % (i + 1), pr.pid) for i, pr in enumerate(procs)] + (
            [("nginx", platform.proc.pid)] if args.platform == "nginx" else [])
        proc_cpu0 = {name: cpu_seconds(pid) for name, pid in watched}
        # GET /cron-jobs/{id} at a fixed rate from 2 s before each tick.
        get_results = []

        def timed_gets():
            for t in tick_list:
                wait = t - 2 - time.time()
                if wait > 0:
                    time.sleep(wait)
                h0 = get_histogram(port)
                w = run_wrk(port, ids, 10, get_s, tmp, rate=args.get_rate)
                h1 = get_histogram(port)
                w["in_5ms"] = handled_within(h0, h1, 0.005)
                w["in_10ms"] = handled_within(h0, h1, 0.01)
                get_results.append((t, w))
        getter = threading.Thread(target=timed_gets) if args.get_rate > 0 else None
        if getter:
            getter.start()
        # Until the firings after the last tick are over (nothing running and
        # no new key for 3 s: O(1) commands only, so the wait does not load
        # Redis), or 58 s past it.
        prev = None
        while time.time() < last + 58:
            time.sleep(1.5)
            if time.time() < last + 2:
                continue
            size = redis_cmd(redis.port, "DBSIZE")
            running = redis_cmd(redis.port, "ZCARD", "visionbatch:execs:running")
            if size == prev and running == "0":
                break
            prev = size
        if getter:
            getter.join()
        redis_busy = redis_cpu(redis.port) - cpu0
        proc_cpu = {name: cpu_seconds(pid) - proc_cpu0[name] for name, pid in watched}
        stats = redis_cmd(redis.port, "INFO", "commandstats")
        redis_cmd(redis.port, "CONFIG", "SET", "slowlog-log-slower-than", "-1")
        profile = redis_profile(redis.port)
        redis_cmd(redis.port, "SLOWLOG", "RESET")
        rows = read_execs(redis.port)
        mem_ticks = proc_mem(proc.pid)
        print()
        print("| tick | executions | fired | schedule lag min / p50 / p99 / max s "
              "| firing done p50 / p99 / max s |")
        print("|---|---|---|---|---|")
        for tick, count, fired, start, done in lag_table(rows, [t * 1000 for t in tick_list]):
            print("| %s | %d | %d | %s | %s |" % (
                time.strftime("%H:%M", time.gmtime(tick / 1000)), count, fired,
                "%.2f / %.2f / %.2f / %.2f" % start if start else "-",
                "%.2f / %.2f / %.2f" % done if done else "-"))
            if count != n or fired != n:
                failures.append("tick %d: %d executions, %d fired, want %d each"
                                % (tick // 1000, count, fired, n))
        statuses, by_producer, per_job = {}, {}, {}
        for r in rows:
            if r[0] in [t * 1000 for t in tick_list]:
                statuses[r[3]] = statuses.get(r[3], 0) + 1
                by_producer[r[4]] = by_producer.get(r[4], 0) + 1
                per_job[(r[5], r[0])] = per_job.get((r[5], r[0]), 0) + 1
        print("statuses of those executions: %s" % statuses)
        print("Redis during the ticks: %.1f CPU s; %s" % (redis_busy, script_stats(stats)))
        print("Redis time by command during the ticks (calls, µs each, max µs): %s" % "; ".join(
            "%s %d, %.0f, %d" % (k, c[0], c[1] / c[0], c[2])
            for k, c in sorted(profile.items(), key=lambda kv: -kv[1][1])))
        print("CPU seconds during the ticks (with the GET load): %s" % ", ".join(
            "%s %.2f" % (name, proc_cpu[name]) for name, _ in watched))
        print("executions by producer: %s" % dict(sorted(by_producer.items())))
        twice = sum(1 for v in per_job.values() if v > 1)
        print("jobs x ticks: %d, fired more than once: %d" % (len(per_job), twice))
        if set(statuses) != {"success"}:
            failures.append("executions not all successful: %s" % statuses)
        if twice or len(per_job) != n * len(tick_list):
            failures.append("%d of %d job ticks fired more than once, %d expected"
                            % (twice, len(per_job), n * len(tick_list)))
        if get_results:
            print()
            print("| tick | GET /cron-jobs/{id} during firing: p50 ms | p99 ms | requests/s "
                  "| non-2xx | handled by the producer within 5 ms / 10 ms |")
            print("|---|---|---|---|---|---|")
            for t, w in get_results:
                print("| %s | %.2f | %.2f | %.0f | %d | %.2f %% / %.2f %% |%s" % (
                    time.strftime("%H:%M", time.gmtime(t)), w["p50"], w["p99"], w["rps"],
                    w["non2xx"], 100 * w["in_5ms"], 100 * w["in_10ms"],
                    " " + w["errors"] if w["errors"] else ""))
                if w["non2xx"] or w["errors"] or w["rps"] <= 0:
                    failures.append("GET during firing: %d non-2xx, %s"
                                    % (w["non2xx"], w["errors"] or "no requests"))
        print("after the ticks: %s" % fmt_mem(mem_ticks))

        print()
        print("| connections | p50 ms | p99 ms | requests/s | non-2xx |")
        print("|---|---|---|---|---|")
        for c in conns:
            w = run_wrk(port, ids, c, wrk_s, tmp)
            print("| %d | %.2f | %.2f | %.0f | %d |%s" % (c, w["p50"], w["p99"], w["rps"],
                                                         w["non2xx"],
                                                         " " + w["errors"] if w["errors"] else ""))
            if w["non2xx"] or w["errors"] or w["rps"] <= 0:
                failures.append("wrk at %d connections: %d non-2xx, %s"
                                % (c, w["non2xx"], w["errors"] or "no requests"))
        print("after wrk: %s" % fmt_mem(proc_mem(proc.pid)))
    finally:
        for pr in procs:
            pr.stop()
        platform.stop()
        redis.stop()
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        raise SystemExit("bench_cron: " + "; ".join(failures))


if __name__ == "__main__":
    main()
