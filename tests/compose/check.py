#!/usr/bin/env python3
"""The compose stack of docs/deploy.md, brought up and checked in a real engine.

Run by tests/compose/run.sh (which installs and starts the engine, builds the
images and makes a copy of the checkout, VB_COMPOSE_SRC). It works on that
copy so that docker/.env of the developer is never touched: docker/.env is made from docker/.env.example with a
token, a secret key and free host ports, the platform settings left empty (a
stack that runs cron jobs only must come up healthy). Then, with project name
COMPOSE_PROJECT (test only):

  docker-compose -f docker/compose.yaml -f ../tests/compose/compose.test.yaml \
      up -d --build --scale worker=2

and checks, in order: every container healthy and topic-init exited 0; the
probes and the scrape answer without a token, the rest only with it; the
guide's curl flow with the token (create, list, get with the key as "***",
activate, run now, executions); the run goes end to end with exactly one
upload; both workers are members of the consumer group, which they reach
through the SASL (SCRAM-SHA-512) listener only; the workers' Redis
connections are TLS ones of ACL user vbworker (the certificates and
passwords are made here, see compose.test.yaml); kcat reads the
message (key = run id, headers, no secret); no secret in any container's
log; a worker stopped with SIGTERM exits 0; the cron job and the run's state
survive `down` and `up`; `down -v` leaves no container, network or volume.
Every wait is bounded; the stack is always removed (down -v), also on
failure or SIGTERM. Prints "compose: N passed, N failed".
"""

import base64
import json
import shutil
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "stubs"))
from common import DEFAULT_API_KEY, SAS_SIG, SECRET_MARKER  # noqa: E402

PROJECT = os.environ.get("VB_COMPOSE_PROJECT", "vbcomposetest")
DOCKER = "/usr/bin/docker"
ORG = "38162954-469A-40BC-B619-3E9F71DE6DB9"
RUN_ID = "6004729D-E2C2-43D3-833C-79CE18E00646"
GROUP = "visionbatch-workers"
TOPIC = "visionbatch.runs"

results = []  # (name, ok, detail)


class Failed(Exception):
    pass


def log(msg):
    sys.stdout.write("compose: %s\n" % msg)
    sys.stdout.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, check=True, timeout=120, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise Failed("%s -> %d\n%s%s" % (" ".join(args), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


def wait_for(what, fn, timeout, every=1.0):
    """fn() until it returns a true value; Failed after `timeout` seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # the service is not up yet
            last = e
        time.sleep(every)
    raise Failed("timed out after %ds waiting for %s (%s)" % (timeout, what, last))


def compose_env(src):
    """This process's environment less every variable the compose files
    interpolate: the shell's values beat docker/.env, and a caller that
    exported e.g. REDIS_URL=redis://127.0.0.1:6379 for its own tests would
    point the containers at themselves. The stack gets docker/.env only."""
    names = set()
    for rel in (("docker", "compose.yaml"), ("tests", "compose", "compose.test.yaml")):
        with open(os.path.join(src, *rel), encoding="utf-8") as f:
            names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", f.read()))
    return {k: v for k, v in os.environ.items() if k not in names}


class Stack:
    def __init__(self, src):
        self.src = src
        self.token = secrets.token_hex(32)
        self.secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.api_port = free_port()
        self.kafka_port = free_port()
        self.platform_port = free_port()
        self.env = compose_env(src)
        self.env["VBT_PLATFORM_PORT"] = str(self.platform_port)
        # The workers' credentials: SCRAM user, Redis ACL user, client key.
        self.scram_password = secrets.token_hex(16)
        self.redis_password = secrets.token_hex(16)
        self.key_password = secrets.token_hex(16)
        self.env.update(VBT_SCRAM_PASSWORD=self.scram_password,
                        VBT_REDIS_PASSWORD=self.redis_password,
                        VBT_KEY_PASSWORD=self.key_password)

    # -- setup ---------------------------------------------------------------

    def write_env(self):
        """docker/.env from the example, as the guide says: fill in the secrets."""
        values = {
            "VISIONBATCH_API_TOKEN": self.token,
            "VISIONBATCH_SECRET_KEY": self.secret_key,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "PRODUCER_HOST_PORT": str(self.api_port),
            "KAFKA_HOST_PORT": str(self.kafka_port),
            "RUNS_TOPIC_PARTITIONS": "4",
            "VISIONBATCH_CONCURRENCY": "2",
        }
        out = []
        with open(os.path.join(self.src, "docker", ".env.example"), encoding="utf-8") as f:
            for line in f:
                key = line.split("=", 1)[0]
                if not line.startswith("#") and "=" in line and key in values:
                    line = "%s=%s\n" % (key, values.pop(key))
                elif key in ("EXTERNAL_API_GET_URL", "EXTERNAL_API_POST_URL", "BACKEND_API_URL"):
                    line = key + "=\n"  # cron jobs only: every platform setting empty
                out.append(line)
        # Not in the example: faster status polls for the test's one run.
        out.append("VISIONBATCH_STATUS_POLL_MIN_MS=200\n")
        for k, v in values.items():
            out.append("%s=%s\n" % (k, v))
        path = os.path.join(self.src, "docker", ".env")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(out)
        os.chmod(path, 0o600)

    def make_certificates(self):
        """A throwaway CA, Redis's certificate (DNS:redis) and the workers'
        client certificate with an encrypted key, in tests/compose/tls/ of
        the copy (mounted read-only at /tls; readable by the containers'
        users, which differ from this one)."""
        d = os.path.join(self.src, "tests", "compose", "tls")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        with open(os.path.join(d, "san.cnf"), "w", encoding="utf-8") as f:
            f.write("subjectAltName=DNS:redis\n")
        steps = [
            ["req", "-x509"] + ec + ["-nodes", "-days", "2", "-subj", "/CN=vb-compose-ca",
                                     "-keyout", "ca.key", "-out", "ca.pem"],
            ["req"] + ec + ["-nodes", "-subj", "/CN=redis", "-keyout", "server.key", "-out", "server.csr"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.cnf", "-out", "server.pem"],
            ["req"] + ec + ["-subj", "/CN=vbworker", "-passout", "pass:" + self.key_password,
                            "-keyout", "client.key", "-out", "client.csr"],
            ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", "client.pem"],
        ]
        for step in steps:
            run(["openssl"] + step, cwd=d, timeout=30)
        os.chmod(d, 0o755)
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
            os.chmod(os.path.join(d, name), 0o644)

    def compose(self, *args, check=True, timeout=300):
        cmd = ["docker-compose", "-p", PROJECT, "-f", "docker/compose.yaml",
               "-f", "tests/compose/compose.test.yaml"] + list(args)
        return run(cmd, check=check, timeout=timeout, cwd=self.src, env=self.env)

    # -- inspection ------------------------------------------------------------

    def containers(self, service=None, all_=False):
        args = [DOCKER, "ps", "-q", "--filter", "label=com.docker.compose.project=" + PROJECT]
        if service:
            args += ["--filter", "label=com.docker.compose.service=" + service]
        if all_:
            args.append("-a")
        return run(args).stdout.split()

    def inspect(self, cid, fmt):
        return run([DOCKER, "inspect", "-f", fmt, cid]).stdout.strip()

    def all_healthy(self):
        bad = []
        for cid in self.containers():
            name = self.inspect(cid, "{{.Name}}")
            state = self.inspect(cid, "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}")
            if state != "healthy":
                bad.append("%s=%s" % (name, state))
        return not bad, bad

    def wait_healthy(self, timeout):
        want = {"kafka": 1, "redis": 1, "producer": 1, "worker": 2, "platform": 1, "backend": 1}

        def ok():
            for svc, n in want.items():
                if len(self.containers(svc)) != n:
                    return False
            good, _ = self.all_healthy()
            return good
        try:
            wait_for("every container healthy", ok, timeout, every=2)
        except Failed:
            _, bad = self.all_healthy()
            raise Failed("not healthy: %s" % bad)

    def api(self, method, path, body=None, token=True):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.api_port, path), method=method)
        if token:
            req.add_header("Authorization", "Bearer " + self.token)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, data, timeout=10) as r:
                raw = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read().decode(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def platform(self, path):
        url = "http://127.0.0.1:%d/_control/%s" % (self.platform_port, path)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read().decode())

    def kafka_tool(self, *args):
        return self.compose("exec", "-T", "kafka", *args, timeout=120).stdout

    def secrets(self):
        return [DEFAULT_API_KEY, self.token, self.secret_key, SAS_SIG, SECRET_MARKER,
                self.scram_password, self.redis_password, self.key_password]


def check(name):
    def deco(fn):
        def wrapper(*a):
            t = time.monotonic()
            try:
                fn(*a)
            except Exception as e:
                detail = str(e) if isinstance(e, (Failed, AssertionError)) else traceback.format_exc()
                results.append((name, False, detail))
                log("FAIL %s (%.1fs): %s" % (name, time.monotonic() - t, detail))
                return False
            results.append((name, True, ""))
            log("ok   %s (%.1fs)" % (name, time.monotonic() - t))
            return True
        return wrapper
    return deco


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Checks:
    def __init__(self, st):
        self.st = st
        self.job_id = None

    @check("up -d --build --scale worker=2: every container healthy, topic-init exited 0")
    def up(self):
        st = self.st
        st.compose("up", "-d", "--build", "--scale", "worker=2", timeout=600)
        st.wait_healthy(300)
        init = st.containers("topic-init", all_=True)
        expect(len(init) == 1, "topic-init containers: %s" % init)
        expect(st.inspect(init[0], "{{.State.Status}} {{.State.ExitCode}}") == "exited 0",
               "topic-init: " + st.inspect(init[0], "{{.State.Status}} {{.State.ExitCode}}"))

    @check("probes and scrape open, everything else needs the token")
    def endpoints(self):
        st = self.st
        for path in ("/healthz", "/readyz", "/metrics"):
            status, _ = st.api("GET", path, token=False)
            expect(status == 200, "%s without token -> %s" % (path, status))
        for path in ("/cron-jobs", "/openapi.json", "/nope"):
            status, _ = st.api("GET", path, token=False)
            expect(status == 401, "%s without token -> %s" % (path, status))

    @check("the guide's curl flow with the token, and one run end to end with exactly one upload")
    def guide_flow(self):
        st = self.st
        body = {"name": "Hourly Vision Analysis", "schedule": "0 * * * *",
                "external_api_get_url": "http://platform:8080/api/v1/documents/vision_analysis",
                "external_api_post_url": "http://platform:8080/api/v1/documents/vision_analysis/upload",
                "external_api_key": DEFAULT_API_KEY, "backend_api_url": "http://backend:8001",
                "organization_id": ORG, "enabled": True}
        status, job = st.api("POST", "/cron-jobs", body)
        expect(status in (200, 201), "create -> %s %s" % (status, job))
        self.job_id = job["job_id"]
        status, lst = st.api("GET", "/cron-jobs?enabled_only=true")
        expect(status == 200 and self.job_id in json.dumps(lst), "list -> %s %s" % (status, lst))
        status, got = st.api("GET", "/cron-jobs/" + self.job_id)
        text = json.dumps(got)
        expect(status == 200 and '"external_api_key": "***"' in text and DEFAULT_API_KEY not in text,
               "get -> %s %s" % (status, got))
        status, _ = st.api("POST", "/cron-jobs/%s/activate" % self.job_id)
        expect(status == 200, "activate -> %s" % status)
        status, fired = st.api("POST", "/cron-jobs/%s/run" % self.job_id)
        expect(status == 202, "run now -> %s %s" % (status, fired))

        def finished():
            s, ex = st.api("GET", "/cron-jobs/%s/executions?limit=20" % self.job_id)
            e = ex.get("executions") or []
            return e and e[0]["status"] not in ("running",) and e[0]

        execution = wait_for("the execution to finish", finished, 120)
        expect(execution["status"] == "success", "execution: %s" % execution)

        def uploaded():
            s, state = st.api("GET", "/runs/" + RUN_ID)
            return s == 200 and state.get("state") == "uploaded" and state

        wait_for("run state uploaded", uploaded, 120)
        ups = [u for u in st.platform("records")["uploads"]
               if u["fields"].get("vision_analysis_id") == RUN_ID]
        expect(len(ups) == 1, "uploads of the run: %d" % len(ups))
        expect(ups[0]["status"] == 200, "upload answered %s" % ups[0]["status"])

    @check("both workers are members of the consumer group (through the SASL SCRAM-SHA-512 listener)")
    def group(self):
        def members():
            out = self.st.kafka_tool("/opt/kafka/bin/kafka-consumer-groups.sh", "--bootstrap-server",
                                     "kafka:9092", "--describe", "--group", GROUP, "--members")
            rows = [ln for ln in out.splitlines() if ln.startswith(GROUP)]
            return len(rows) == 2 and rows
        wait_for("two members in %s" % GROUP, members, 60, every=3)

    @check("the workers' Redis connections are TLS (port 6380) as ACL user vbworker")
    def redis_tls(self):
        out = self.st.compose("exec", "-T", "redis", "redis-cli", "CLIENT", "LIST", timeout=60).stdout
        mine = [ln for ln in out.splitlines() if " user=vbworker " in ln]
        expect(len(mine) >= 2, "connections of user vbworker: %d\n%s" % (len(mine), out[-1500:]))
        for ln in mine:
            expect(re.search(r" laddr=\S+:6380 ", ln), "not on the TLS port: " + ln)
        plain = [ln for ln in out.splitlines()
                 if re.search(r" laddr=\S+:6379 ", ln) and "cmd=client|list" not in ln]
        expect(plain, "no plain connection (the producer's):\n" + out[-1500:])

    @check("kcat reads the message: key = run id, headers, no secret")
    def kcat(self):
        out = run(["kcat", "-b", "127.0.0.1:%d" % self.st.kafka_port, "-C", "-t", TOPIC,
                   "-o", "beginning", "-e", "-q", "-f", "key=%k headers=%h\n%s\n"], timeout=60).stdout
        expect("key=" + RUN_ID in out, "no message keyed %s: %s" % (RUN_ID, out[:500]))
        head = [ln for ln in out.splitlines() if ln.startswith("key=" + RUN_ID)][0]
        expect(len(head.split("headers=", 1)[1]) > 0, "no headers: " + head)
        for s in self.st.secrets():
            expect(s not in out, "a secret is on Kafka")

    @check("no secret in any container's log")
    def logs(self):
        out = self.st.compose("logs", "--no-color", timeout=60).stdout
        expect(len(out) > 1000, "suspiciously short logs (%d bytes)" % len(out))
        for s in self.st.secrets():
            expect(s not in out, "a secret is in the logs")

    @check("a worker stopped with SIGTERM exits 0")
    def sigterm(self):
        cid = self.st.containers("worker")[0]
        run([DOCKER, "stop", "-t", "90", cid], timeout=120)
        code = self.st.inspect(cid, "{{.State.ExitCode}}")
        expect(code == "0", "exit code %s" % code)

    @check("the cron job and the run's state survive down and up")
    def survive(self):
        st = self.st
        st.compose("down", timeout=180)
        expect(not st.containers(all_=True), "containers left after down")
        st.compose("up", "-d", "--scale", "worker=2", timeout=300)
        st.wait_healthy(300)
        status, got = st.api("GET", "/cron-jobs/" + self.job_id)
        expect(status == 200 and got.get("job_id") == self.job_id, "job after up: %s %s" % (status, got))
        status, state = st.api("GET", "/runs/" + RUN_ID)
        expect(status == 200 and state.get("state") == "uploaded", "run after up: %s %s" % (status, state))

    @check("down -v leaves no container, network or volume")
    def down_v(self):
        st = self.st
        st.compose("down", "-v", "--remove-orphans", timeout=180)
        label = "label=com.docker.compose.project=" + PROJECT
        left = []
        for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
            ids = run([DOCKER] + kind + ["--filter", label]).stdout.split()
            if ids:
                left.append("%s: %s" % (kind[0], ids))
        expect(not left, "left behind: %s" % left)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("compose: terminated"))
    t0 = time.monotonic()
    st = Stack(os.environ["VB_COMPOSE_SRC"])
    c = Checks(st)
    try:
        st.write_env()
        st.make_certificates()
        log("project %s, API on 127.0.0.1:%d, Kafka host listener 127.0.0.1:%d"
            % (PROJECT, st.api_port, st.kafka_port))
        # A stack of an earlier, killed run of this test goes first.
        st.compose("down", "-v", "--remove-orphans", check=False, timeout=180)
        if c.up():
            c.endpoints()
            if c.guide_flow():
                c.group()
                c.redis_tls()
                c.kcat()
            c.logs()
            c.sigterm()
            if c.job_id:
                c.survive()
        if any(not ok for _, ok, _ in results):
            r = st.compose("logs", "--no-color", "--tail", "40", check=False, timeout=60)
            sys.stdout.write(r.stdout[-8000:])
        c.down_v()
    finally:
        if not any(ok and name.startswith("down -v") for name, ok, _ in results):
            st.compose("down", "-v", "--remove-orphans", check=False, timeout=180)
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    log("%.0fs" % (time.monotonic() - t0))
    print("compose: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
