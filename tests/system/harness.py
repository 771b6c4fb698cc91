"""Helpers for the system tests of visionbatch (standard library only).

The system tests run the real programs from $VB_BIN_DIR against the stand-in
servers of tests/stubs: platform_server.py (External Vision Analysis API) and
backend_server.py (batch analysis backend). This module starts those servers
as subprocesses on free ports, talks to their /_control API, writes processor
config files, runs the programs with a timeout, and builds N-runs x M-images
scenarios.

Every process started here runs in its own process group and is killed on
stop(), on test cleanup (SystemTestCase registers it) and, as a last resort,
at interpreter exit. No fixed ports: servers bind port 0 and report the port.

Typical use:

    class PipelineTest(harness.SystemTestCase):
        def test_guide_run(self):
            platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
            backend = self.start_backend()
            cfg = self.write_config(harness.processor_config(platform, backend))
            res = self.run_cli("run-once", "--config", cfg, timeout=60)
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(len(platform.uploads()), 1)
"""

import atexit
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("VB_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
STUBS_DIR = os.path.join(SOURCE_DIR, "tests", "stubs")
FIXTURES_DIR = os.path.join(SOURCE_DIR, "tests", "fixtures")
GUIDE_SCENARIO = os.path.join(FIXTURES_DIR, "guide_example.json")

sys.path.insert(0, STUBS_DIR)
import common  # noqa: E402  (shared with the stand-in servers)
from common import (DEFAULT_API_KEY, SAS_QUERY, SAS_SIG, SECRET_MARKER,  # noqa: E402,F401
                    MultipartError, Part, build_multipart, parse_multipart)

GUIDE_RUN_ID = "6004729D-E2C2-43D3-833C-79CE18E00646"
GUIDE_RUN_CODE = "VISION_RUN_001"
GUIDE_ORG_ID = "38162954-469A-40BC-B619-3E9F71DE6DB9"
GUIDE_ORG_NAME = "LexCorp"
GUIDE_QUERY = "Analyze these images for defects and anomalies"
GUIDE_DESCRIPTIONS = {
    "oceanix_01.jpg": "Port side hull section near waterline",
    "oceanix_02.jpg": "Starboard deck area with recent repairs",
}

_live = set()
_live_lock = threading.Lock()


def _kill_group(proc, grace=3.0):
    """SIGTERM the process group, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    with _live_lock:
        _live.discard(proc)


@atexit.register
def _kill_all():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        _kill_group(p, grace=0.5)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Response:
    """An HTTP answer: status, headers (dict, lower-case keys), body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:200])


def http_request(method, url, body=None, headers=None, timeout=30):
    """Sends one request; returns a Response for any HTTP status.

    body: bytes, str, or a JSON-able object (sent as application/json).
    Raises urllib.error.URLError / OSError on connection failures.
    """
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        data = e.read()
        return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, data)


def wait_until(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Polls predicate() until it returns a truthy value; returns that value.

    Raises AssertionError with ``message`` on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


# --------------------------------------------------------------------------
# Stand-in servers
# --------------------------------------------------------------------------


class StubProcess:
    """A stand-in server subprocess. Use PlatformStub or BackendStub."""

    script = None

    def __init__(self, args=(), scenario=None, record_dir=None, log_path=None):
        self.args = list(args)
        if scenario is not None and not isinstance(scenario, str):
            fd, path = tempfile.mkstemp(prefix="vb-scenario-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(scenario, f)
            self._tmp_scenario = path
            scenario = path
        else:
            self._tmp_scenario = None
        self.scenario = scenario
        self.record_dir = record_dir
        self.log_path = log_path
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"

    @property
    def base_url(self):
        return "http://%s:%d" % (self.host, self.port)

    def command(self):
        cmd = [sys.executable, os.path.join(STUBS_DIR, self.script), "--host", self.host, "--port", "0"]
        if self.scenario:
            cmd += ["--scenario", self.scenario]
        if self.record_dir:
            cmd += ["--record-dir", self.record_dir]
        return cmd + self.args

    def start(self, timeout=15.0):
        """Starts the server and waits for its 'PORT <n>' line. Returns self."""
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix="vb-%s-" % self.script[:-3], suffix=".log")
            os.close(fd)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        with _live_lock:
            _live.add(self.proc)
        lines = queue.Queue()

        def reader(out):
            for line in iter(out.readline, b""):
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, args=(self.proc.stdout,), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if not line or not line.startswith(b"PORT "):
            self.stop()
            raise RuntimeError("%s did not start (first line %r); log:\n%s"
                               % (self.script, line, self.log()))
        self.port = int(line.split()[1])
        return self

    def stop(self):
        """Kills the server (idempotent)."""
        if self.proc is not None:
            _kill_group(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()
        if self._tmp_scenario:
            try:
                os.unlink(self._tmp_scenario)
            except OSError:
                pass
            self._tmp_scenario = None

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    # -- control API -----------------------------------------------------------

    def control(self, method, path, body=None):
        """Calls /_control/<path>; returns the decoded JSON (raises on non-200)."""
        r = http_request(method, "%s/_control/%s" % (self.base_url, path.lstrip("/")),
                         body=body if body is not None else ({} if method == "POST" else None))
        if r.status != 200:
            raise RuntimeError("control %s %s -> %d %s" % (method, path, r.status, r.text()))
        return r.json()

    def faults(self, spec=None, **queues):
        """Appends fault entries: faults({"get": [{"status": 500}]}) or faults(get=[...])."""
        body = dict(spec or {})
        body.update(queues)
        return self.control("POST", "faults", body)

    def pending_faults(self):
        return self.control("GET", "faults")

    def config(self, **values):
        """Sets config values (see the server's docstring); returns the config."""
        if values:
            self.control("POST", "config", values)
        return self.control("GET", "config")

    def records(self):
        return self.control("GET", "records")

    def reset(self, **body):
        return self.control("POST", "reset", body)


class PlatformStub(StubProcess):
    """The External Vision Analysis API stand-in (tests/stubs/platform_server.py)."""

    script = "platform_server.py"

    def __init__(self, scenario=None, api_key=None, record_dir=None, args=(), log_path=None):
        extra = list(args)
        if api_key:
            extra += ["--api-key", api_key]
        super().__init__(extra, scenario, record_dir, log_path)
        self.api_key = api_key or (self._scenario_key() or DEFAULT_API_KEY)

    def _scenario_key(self):
        if not self.scenario:
            return None
        with open(self.scenario) as f:
            return json.load(f).get("api_key")

    @property
    def get_url(self):
        return self.base_url + "/api/v1/documents/vision_analysis"

    @property
    def post_url(self):
        return self.base_url + "/api/v1/documents/vision_analysis/upload"

    def add_runs(self, runs, files=None):
        return self.control("POST", "runs", {"runs": list(runs), "files": files or {}})

    def add_scenario(self, scenario):
        """Adds the runs and files of a make_scenario() dict."""
        return self.add_runs(scenario.get("runs", []), scenario.get("files"))

    def runs(self):
        """The runs as currently served (document paths resolved, is_processed live)."""
        return self.control("GET", "runs")["runs"]

    def mark(self, run_id, processed=True):
        return self.control("POST", "mark", {"vision_analysis_id": run_id, "processed": processed})

    def unprocessed_ids(self):
        return [r["vision_analysis_id"] for r in self.runs() if not r["is_processed"]]

    def gets(self):
        return self.records()["gets"]

    def uploads(self):
        return self.records()["uploads"]

    def file_fetches(self):
        return self.records()["files"]

    def list_runs(self, page=None, page_size=None, is_processed="false", api_key=None):
        """Calls the GET endpoint as a client would; returns a Response."""
        q = []
        if is_processed is not None:
            q.append("is_processed=%s" % is_processed)
        if page is not None:
            q.append("page=%s" % page)
        if page_size is not None:
            q.append("page_size=%s" % page_size)
        url = self.get_url + ("?" + "&".join(q) if q else "")
        key = self.api_key if api_key is None else api_key
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        return http_request("GET", url, headers=headers)


class BackendStub(StubProcess):
    """The batch analysis backend stand-in (tests/stubs/backend_server.py)."""

    script = "backend_server.py"

    def __init__(self, scenario=None, batch_delay=None, polls_to_complete=None, outcome=None,
                 record_dir=None, args=(), log_path=None):
        extra = list(args)
        if batch_delay is not None:
            extra += ["--batch-delay", str(batch_delay)]
        if polls_to_complete is not None:
            extra += ["--polls-to-complete", str(polls_to_complete)]
        if outcome is not None:
            extra += ["--outcome", outcome]
        super().__init__(extra, scenario, record_dir, log_path)

    @property
    def url(self):
        return self.base_url

    def uploads(self):
        return self.records()["uploads"]

    def batches(self):
        return self.records()["batches"]


# --------------------------------------------------------------------------
# Programs under test
# --------------------------------------------------------------------------


class RunResult:
    """Outcome of run_binary(): returncode (None if killed on timeout),
    stdout, stderr (str), timed_out, duration (s), cmd (list)."""

    def __init__(self, cmd, returncode, stdout, stderr, timed_out, duration):
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.duration = duration

    @property
    def output(self):
        return self.stdout + self.stderr

    def __repr__(self):
        return "RunResult(rc=%r, timed_out=%r, %.2fs)\n--- stdout\n%s\n--- stderr\n%s" % (
            self.returncode, self.timed_out, self.duration, self.stdout[-4000:], self.stderr[-4000:])


def bin_dir():
    return os.environ.get("VB_BIN_DIR") or os.path.join(SOURCE_DIR, "build")


def find_binary(name):
    """Path of program ``name`` in $VB_BIN_DIR (or a direct subdirectory), or None."""
    d = bin_dir()
    for cand in [os.path.join(d, name), os.path.join(d, "bin", name)] + [
            os.path.join(d, sub, name) for sub in sorted(os.listdir(d))] if os.path.isdir(d) else []:
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def require_binary(name):
    """Path of program ``name``; raises unittest.SkipTest when it is not built."""
    path = find_binary(name)
    if path is None:
        raise unittest.SkipTest("%s is not built in %s" % (name, bin_dir()))
    return path


# The shared services' addresses scripts/test.sh exports for the unit tests.
# A program under test gets Redis and Kafka from its test (config file or
# env=), never by inheritance: these variables override config files, and a
# test's private Redis or Kafka must not be swapped for the shared one.
SERVICE_ENV = ("REDIS_URL", "KAFKA_BROKERS")


def program_env():
    """os.environ without SERVICE_ENV: the base environment of programs under test."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}


def run_binary(name, args=(), timeout=60, env=None, cwd=None, input=None, clean_env=False):
    """Runs a program from $VB_BIN_DIR to completion; returns a RunResult.

    name: program name (or an absolute path). env: variables added to the
    environment (or the whole environment with clean_env=True, plus PATH).
    On timeout the whole process group is killed and timed_out is True.
    """
    path = name if os.path.isabs(name) else require_binary(name)
    cmd = [path] + [str(a) for a in args]
    if clean_env:
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        full_env = program_env()
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            env=full_env, cwd=cwd, start_new_session=True)
    with _live_lock:
        _live.add(proc)
    timed_out = False
    data = input.encode() if isinstance(input, str) else input
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    finally:
        _kill_group(proc, grace=0.1)
    rc = None if timed_out else proc.returncode
    return RunResult(cmd, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                     timed_out, time.monotonic() - t0)


class BackgroundProcess:
    """A long-running program (producer, worker) with output in log files."""

    def __init__(self, cmd, env, cwd, log_dir):
        os.makedirs(log_dir, exist_ok=True)
        base = os.path.join(log_dir, "%s-%d" % (os.path.basename(cmd[0]), int(time.time() * 1000)))
        self.stdout_path = base + ".out"
        self.stderr_path = base + ".err"
        self.cmd = cmd
        with open(self.stdout_path, "wb") as o, open(self.stderr_path, "wb") as e:
            self.proc = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env,
                                         cwd=cwd, start_new_session=True)
        with _live_lock:
            _live.add(self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after ``grace`` s; returns the exit code."""
        _kill_group(self.proc, grace)
        return self.proc.returncode

    def stdout(self):
        with open(self.stdout_path, "r", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()


def start_binary(name, args=(), env=None, cwd=None, log_dir=None):
    """Starts a program from $VB_BIN_DIR in the background; returns a BackgroundProcess.

    The caller must stop() it (SystemTestCase.start_program registers that).
    """
    path = name if os.path.isabs(name) else require_binary(name)
    full_env = program_env()
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    return BackgroundProcess([path] + [str(a) for a in args], full_env, cwd,
                             log_dir or tempfile.mkdtemp(prefix="vb-logs-"))


class RespClient:
    """A minimal Redis client (RESP2) for tests and benchmarks that read what
    the programs wrote: cmd() sends one command and returns its reply
    (str, int, None or a list of those). It connects on first use, selects
    `db` when it is not 0, and reconnects `retries` times (0.5 s apart)
    after a dropped connection."""

    def __init__(self, port, db=0, host="127.0.0.1", timeout=5, retries=0):
        self.host, self.port, self.db = host, port, db
        self.timeout, self.retries = timeout, retries
        self.sock = None

    @property
    def url(self):
        return "redis://%s:%d/%d" % (self.host, self.port, self.db)

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ValueError("bad reply %r" % line)

    def _send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            b = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        self.sock.sendall(out)
        return self._read()

    def cmd(self, *args):
        for attempt in range(self.retries + 1):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection((self.host, self.port),
                                                         timeout=self.timeout)
                    self.f = self.sock.makefile("rb")
                    if self.db:
                        self._send("SELECT", str(self.db))
                return self._send(*args)
            except (OSError, ConnectionError):
                self.close()
                if attempt == self.retries:
                    raise
                time.sleep(0.5)

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def run(self, run_id):
        """The run record visionbatch:run:<id> as a dict ({} when absent)."""
        flat = self.cmd("HGETALL", "visionbatch:run:" + run_id) or []
        return dict(zip(flat[0::2], flat[1::2]))


class RedisServer:
    """A private redis-server on a free port, without persistence, for tests
    that must not share state with the other suites."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vb-redis-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.ping, timeout=10, message="redis-server to answer")

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def ping(self):
        return self.cli("PING") == "PONG"

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def state(self, run_id):
        return self.cli("HGET", "visionbatch:run:" + run_id, "state")

    def put_run(self, run_id, updated_at, **fields):
        """Writes a run record as a transition of store.c would: the hash, the
        index and the per-state indexes (fields must hold ``state``)."""
        reindex_run(self.cli, run_id, updated_at=updated_at, **fields)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, True)


# --------------------------------------------------------------------------
# Config and scenarios
# --------------------------------------------------------------------------


RUN_STATES = ("queued", "processing", "uploading", "uploaded", "failed", "dead")


def reindex_run(cli, run_id, state, updated_at=None, **fields):
    """Sets a run record's fields (``state`` among them) through ``cli`` (a
    redis-cli wrapper) and keeps the index ``visionbatch:runs`` (score
    updated_at; None keeps the run's score) and the per-state indexes
    ``visionbatch:runs:state:<state>`` as store.c does."""
    fields["state"] = state
    if updated_at is not None:
        fields["updated_at"] = updated_at
    args = []
    for k, v in fields.items():
        args += [k, str(v)]
    cli("HSET", "visionbatch:run:" + run_id, *args)
    if updated_at is not None:
        cli("ZADD", "visionbatch:runs", updated_at, run_id)
    score = cli("ZSCORE", "visionbatch:runs", run_id)
    for st in RUN_STATES:
        if st != state:
            cli("ZREM", "visionbatch:runs:state:" + st, run_id)
    cli("ZADD", "visionbatch:runs:state:" + state, score, run_id)


# Read-only, atomic: every run of the index is in the per-state index of its
# state (same score) and in no other; every per-state entry is in the index.
STATE_INDEX_CHECK = """
local states = {'queued', 'processing', 'uploading', 'uploaded', 'failed', 'dead'}
local bad = {}
local ids = redis.call('ZRANGE', 'visionbatch:runs', 0, -1, 'WITHSCORES')
for i = 1, #ids, 2 do
  local id, score, key = ids[i], ids[i + 1], 'visionbatch:run:' .. ids[i]
  local st = redis.call('TYPE', key)['ok'] == 'hash' and redis.call('HGET', key, 'state')
  for _, s in ipairs(states) do
    local sc = redis.call('ZSCORE', 'visionbatch:runs:state:' .. s, id)
    if s == st and sc ~= score then bad[#bad + 1] = id .. ' (' .. s .. ') not in its index'
    elseif s ~= st and sc then bad[#bad + 1] = id .. ' (' .. tostring(st) .. ') in ' .. s end
  end
end
for _, s in ipairs(states) do
  for _, id in ipairs(redis.call('ZRANGE', 'visionbatch:runs:state:' .. s, 0, -1)) do
    if not redis.call('ZSCORE', 'visionbatch:runs', id) then
      bad[#bad + 1] = id .. ' in ' .. s .. ' but not in the index'
    end
  end
end
return bad
"""


def state_index_problems(cmd):
    """The runs whose per-state index entries disagree with their records
    (STATE_INDEX_CHECK); ``cmd`` runs a Redis command and returns its reply."""
    return cmd("EVAL", STATE_INDEX_CHECK, 0) or []


def write_config(path, values):
    """Writes ``values`` as JSON to ``path`` with mode 0600; returns path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=2)
    os.chmod(path, 0o600)
    return path


def processor_config(platform, backend, organization_id=GUIDE_ORG_ID, **extra):
    """The five processor settings (SPEC §5) pointing at the two stand-ins."""
    cfg = {
        "external_api_get_url": platform.get_url,
        "external_api_post_url": platform.post_url,
        "external_api_key": platform.api_key,
        "backend_api_url": backend.url if backend is not None else "http://127.0.0.1:9",
        "organization_id": organization_id,
    }
    cfg.update(extra)
    return cfg


def _uuid(seed, *parts):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "vb-test/%s/%s" % (seed, "/".join(map(str, parts))))).upper()


def make_scenario(n_runs, n_images, image_bytes=2048, kind="jpeg", descriptions=True,
                  organization_id=GUIDE_ORG_ID, organization_name=GUIDE_ORG_NAME,
                  user_query=GUIDE_QUERY, seed="s", description=None, start=1):
    """A platform scenario of ``n_runs`` runs with ``n_images`` images each.

    Images are served by /gen/ as valid ``kind`` images of ``image_bytes``
    bytes (names img_<run>_<image>.jpg|png). With descriptions=True each run
    has a descriptions_<code>.json document mapping every image name to
    description(run_index, image_index, name) (default "Image <i> of <code>").
    Ids are deterministic UUIDs (upper case) derived from ``seed``. Returns
    {"runs": [...], "files": {...}} for --scenario, PlatformStub(scenario=...)
    or PlatformStub.add_scenario().
    """
    ext = "png" if kind == "png" else "jpg"
    runs, files = [], {}
    for r in range(start, start + n_runs):
        rid = _uuid(seed, "run", r)
        code = "VISION_RUN_%s_%03d" % (seed.upper(), r)
        docs = []
        descs = {}
        for i in range(1, n_images + 1):
            name = "img_%s_%03d_%03d.%s" % (seed, r, i, ext)
            docs.append({
                "vision_analysis_documents_id": _uuid(seed, "vad", r, i),
                "vision_analysis_id": rid,
                "document_id": _uuid(seed, "doc", r, i),
                "document_name": name,
                "is_input": True,
                "document_type": "image",
                "_gen": {"bytes": image_bytes, "kind": kind},
            })
            descs[name] = description(r, i, name) if description else "Image %d of %s" % (i, code)
        if descriptions:
            dname = "descriptions_%s.json" % code
            files[dname] = {"json": descs}
            docs.append({
                "vision_analysis_documents_id": _uuid(seed, "vad", r, "d"),
                "vision_analysis_id": rid,
                "document_id": _uuid(seed, "doc", r, "d"),
                "document_name": dname,
                "is_input": True,
                "document_type": "json",
            })
        runs.append({
            "vision_analysis_id": rid,
            "vision_analysis_run_code": code,
            "is_processed": False,
            "organization_id": organization_id,
            "organization_name": organization_name,
            "user_query": user_query,
            "created_date": "2025-11-21T18:%02d:%02dZ" % ((r // 60) % 60, r % 60),
            "documents": docs,
        })
    return {"runs": runs, "files": files}


def guide_scenario():
    """The guide's example scenario (tests/fixtures/guide_example.json) as a dict."""
    with open(GUIDE_SCENARIO) as f:
        scen = json.load(f)
    scen["fixtures_dir"] = FIXTURES_DIR
    return scen


# --------------------------------------------------------------------------
# Test case base
# --------------------------------------------------------------------------


class SystemTestCase(unittest.TestCase):
    """unittest base: a temp dir per test, stand-ins and programs cleaned up.

    self.tmp is removed after the test unless VB_KEEP_TMP=1 is set.
    """

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="vb-systest-")
        if os.environ.get("VB_KEEP_TMP") != "1":
            self.addCleanup(shutil.rmtree, self.tmp, True)

    def _start_stub(self, stub):
        stub.log_path = stub.log_path or os.path.join(self.tmp, "%s.log" % stub.script[:-3])
        self.addCleanup(stub.stop)
        return stub.start()

    def start_platform(self, scenario=None, api_key=None, record=False, **kw):
        """Starts a PlatformStub (record=True saves bodies under self.tmp/platform-records)."""
        rd = os.path.join(self.tmp, "platform-records") if record else kw.pop("record_dir", None)
        return self._start_stub(PlatformStub(scenario=scenario, api_key=api_key, record_dir=rd, **kw))

    def start_backend(self, scenario=None, record=False, **kw):
        """Starts a BackendStub; keyword arguments as BackendStub."""
        rd = os.path.join(self.tmp, "backend-records") if record else kw.pop("record_dir", None)
        return self._start_stub(BackendStub(scenario=scenario, record_dir=rd, **kw))

    def write_config(self, values, name="config.json"):
        """Writes a 0600 JSON config file under self.tmp; returns its path."""
        return write_config(os.path.join(self.tmp, name), values)

    def run_cli(self, *args, timeout=120, env=None, **kw):
        """Runs `visionbatch <args>` (skips the test if it is not built)."""
        return run_binary("visionbatch", args, timeout=timeout, env=env, **kw)

    def run_program(self, name, *args, timeout=120, env=None, **kw):
        return run_binary(name, args, timeout=timeout, env=env, **kw)

    def start_program(self, name, *args, env=None, cwd=None):
        """Starts a long-running program; it is stopped at cleanup."""
        p = start_binary(name, args, env=env, cwd=cwd, log_dir=os.path.join(self.tmp, "logs"))
        self.addCleanup(p.stop)
        return p

    def assertNoSecrets(self, text, secrets=(), msg=None):
        """Fails if ``text`` holds the API key, the SAS signature or any of ``secrets``."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for s in (DEFAULT_API_KEY, SECRET_MARKER, SAS_SIG) + tuple(secrets):
            if s and s in text:
                i = text.index(s)
                self.fail((msg or "secret leaked") + ": %r found near %r" % (s, text[max(0, i - 80):i + 80]))


# --------------------------------------------------------------------------
# Kafka topics of a test's own
# --------------------------------------------------------------------------


def kafka_brokers():
    """The shared Kafka of deploy/local/services.sh: $KAFKA_BROKERS, else 127.0.0.1:9092."""
    return os.environ.get("KAFKA_BROKERS") or "127.0.0.1:9092"


def unique_name(prefix):
    """``prefix`` plus a random suffix: names of topics and groups of one test."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def _topics_tool(action, args, brokers=None):
    tool = require_binary("vb-test-topics")
    r = subprocess.run([tool, "-b", brokers or kafka_brokers(), action] + list(args),
                       capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError("vb-test-topics %s %s failed: %s"
                             % (action, " ".join(args), r.stderr.decode(errors="replace")))


def create_topics(specs, brokers=None):
    """Creates topics (idempotent) and waits until each has partition leaders.

    specs: (name, partitions) pairs. Uses tests/tools/vb_test_topics.c (one
    admin request, no JVM), so a test can afford topics of its own.
    """
    if specs:
        _topics_tool("create", ["%s:%d" % (n, p) for n, p in specs], brokers)


def delete_topics(names, brokers=None):
    """Deletes topics; a topic that does not exist is no error."""
    if names:
        _topics_tool("delete", list(names), brokers)


def truncate_topic(name, partitions, brokers=None):
    """Deletes every record of ``name`` (partitions 0..partitions-1) up to its
    end: no consumer can fetch them any more."""
    _topics_tool("truncate", ["%s:%d" % (name, partitions)], brokers)


def kcat_publish(topic, pairs, brokers=None, partition=None):
    """Publishes (key, value) pairs to ``topic`` with kcat (values without newlines), to
    ``partition`` when given, else by key."""
    data = "".join("%s\t%s\n" % (k, v) for k, v in pairs).encode("utf-8")
    where = [] if partition is None else ["-p", str(partition)]
    r = subprocess.run(["kcat", "-P", "-b", brokers or kafka_brokers(), "-t", topic, "-K", "\t"]
                       + where, input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("kcat -P to %s failed: %s"
                             % (topic, r.stderr.decode(errors="replace")))


def read_topic(topic, brokers=None):
    """Every message of ``topic``: dicts with key, headers (dict), value (str), partition,
    offset."""
    r = subprocess.run(["kcat", "-C", "-b", brokers or kafka_brokers(), "-t", topic, "-o",
                        "beginning", "-e", "-q", "-J"], capture_output=True, timeout=60, check=True)
    out = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        if line.strip():
            m = json.loads(line)
            h = m.get("headers") or []
            out.append({"key": m.get("key"), "headers": dict(zip(h[0::2], h[1::2])),
                        "value": m.get("payload") or "", "partition": m.get("partition"),
                        "offset": m.get("offset")})
    return out


def private_topics(case, *specs, brokers=None):
    """Creates topics named ``<prefix>-<random>`` for (prefix, partitions) specs;
    deletes them at ``case``'s cleanup (a TestCase, or a class with
    addClassCleanup). Returns the names in order."""
    names = [unique_name(prefix) for prefix, _ in specs]
    create_topics(list(zip(names, [p for _, p in specs])), brokers)
    cleanup = case.addCleanup if isinstance(case, unittest.TestCase) else case.addClassCleanup
    cleanup(delete_topics, names, brokers)
    return names
