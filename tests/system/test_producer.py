"""System tests of visionbatch-producer and `visionbatch runs` against real
Kafka and Redis.

Kafka: $KAFKA_BROKERS (default 127.0.0.1:9092), started by
deploy/local/services.sh. The class publishes to runs and dead-letter topics
of its own (harness.private_topics), so suites run side by side; each test
still records the end offsets first and only looks at messages after them,
keyed by its own run ids (fresh per test) or carrying its own trace id.

Redis: each test class starts a private redis-server on a free port (the
binary is on PATH wherever the services run), so no other suite's data is
touched and nothing is ever flushed; set VB_TEST_REDIS_URL to use an existing
server instead (its database must be yours alone).

When Kafka or redis-server is missing the tests fail, unless
VB_ALLOW_NO_KAFKA=1 (then they are skipped). Tools: kcat, redis-cli.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness

BROKERS = harness.kafka_brokers()
OTHER_ORG = "11111111-2222-3333-4444-555555555555"


def _allow_missing():
    return os.environ.get("VB_ALLOW_NO_KAFKA") == "1"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_ok():
    """Kafka answers at BROKERS (and kcat is there to ask)."""
    if not shutil.which("kcat"):
        return False
    try:
        r = subprocess.run(["kcat", "-L", "-b", BROKERS, "-m", "5"], capture_output=True,
                           timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def partitions(topic):
    r = subprocess.run(["kcat", "-L", "-J", "-b", BROKERS, "-t", topic, "-m", "10"],
                       capture_output=True, timeout=30, check=True)
    md = json.loads(r.stdout)
    for t in md["topics"]:
        if t["topic"] == topic:
            return sorted(p["partition"] for p in t["partitions"])
    raise AssertionError("topic %s not found" % topic)


def end_offsets(topic):
    """{partition: end offset} right now."""
    args = ["kcat", "-Q", "-J", "-b", BROKERS]
    for p in partitions(topic):
        args += ["-t", "%s:%d:-1" % (topic, p)]
    r = subprocess.run(args, capture_output=True, timeout=30, check=True)
    data = json.loads(r.stdout)[topic]
    return {int(k): v["offset"] for k, v in data.items() if k != "topic"}


def messages_since(topic, offsets):
    """Every message after ``offsets``: dicts with key, headers (dict), value (str)."""
    out = []
    for p, off in sorted(offsets.items()):
        r = subprocess.run(["kcat", "-C", "-b", BROKERS, "-t", topic, "-p", str(p), "-o", str(off),
                            "-e", "-q", "-J"], capture_output=True, timeout=60, check=True)
        for line in r.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line:
                continue
            m = json.loads(line)
            h = m.get("headers") or []
            out.append({"key": m.get("key"), "headers": dict(zip(h[0::2], h[1::2])),
                        "value": m.get("payload") or "", "partition": p})
    return out


class ProducerTest(harness.SystemTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.require_binary("visionbatch-producer")
        cls.redis = None
        url = os.environ.get("VB_TEST_REDIS_URL")
        missing = []
        if not kafka_ok():
            missing.append("Kafka at %s or kcat" % BROKERS)
        if not shutil.which("redis-cli") or (not url and not shutil.which("redis-server")):
            missing.append("redis-server/redis-cli")
        if missing:
            msg = "unavailable: %s; start deploy/local/services.sh" % ", ".join(missing)
            if _allow_missing():
                raise unittest.SkipTest(msg + " (skipped: VB_ALLOW_NO_KAFKA=1)")
            raise AssertionError(msg + " or set VB_ALLOW_NO_KAFKA=1")
        # Topics of the class's own: no other suite reads or writes them.
        cls.topic, cls.dlq = harness.private_topics(cls, ("vb-producer", 6), ("vb-producer-dlq", 1))
        if url:
            cls.redis_url = url
        else:
            cls.redis = harness.RedisServer()
            cls.redis_url = "redis://127.0.0.1:%d/0" % cls.redis.port

    @classmethod
    def tearDownClass(cls):
        if cls.redis:
            cls.redis.stop()
        super().tearDownClass()

    # -- helpers ---------------------------------------------------------------

    def redis_cli(self, *args):
        rest = self.redis_url.split("://", 1)[1]
        hostport, _, db = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        r = subprocess.run(["redis-cli", "-h", host, "-p", port, "-n", db or "0"] +
                           [str(a) for a in args], capture_output=True, timeout=10, check=True)
        return r.stdout.decode().strip()

    def run_state(self, run_id):
        lines = self.redis_cli("HGETALL", "visionbatch:run:" + run_id.upper()).splitlines()
        return dict(zip(lines[0::2], lines[1::2]))

    def set_state(self, run_id, **fields):
        harness.reindex_run(self.redis_cli, run_id.upper(), **fields)

    def forget(self, run_id):
        self.redis_cli("DEL", "visionbatch:run:" + run_id.upper(), "visionbatch:lock:" + run_id.upper())
        for key in ["visionbatch:runs"] + ["visionbatch:runs:state:" + st
                                           for st in harness.RUN_STATES]:
            self.redis_cli("ZREM", key, run_id.upper())

    def scenario(self, n=2, org=harness.GUIDE_ORG_ID):
        """Runs with ids unique to this test."""
        return harness.make_scenario(n, 1, seed=uuid.uuid4().hex[:12], organization_id=org)

    def config(self, platform, name="config.json", **extra):
        values = dict(redis_url=self.redis_url, kafka_brokers=BROKERS, topic=self.topic,
                      dlq_topic=self.dlq, log_file="")
        values.update(extra)
        values = harness.processor_config(platform, None, **values)
        return self.write_config(values, name=name)

    def producer(self, cfg, *args, timeout=90):
        res = harness.run_binary("visionbatch-producer", ["--config", cfg] + list(args),
                                 timeout=timeout)
        self.assertNoSecrets(res.output, msg="producer output")
        return res

    def once_ok(self, cfg, *args):
        res = self.producer(cfg, "--once", *args)
        self.assertEqual(res.returncode, 0, res)
        return res

    def keyed(self, msgs, ids):
        ids = {i.upper() for i in ids}
        return [m for m in msgs if (m["key"] or "").upper() in ids]

    # -- tests -----------------------------------------------------------------

    def test_once_publishes_guide_run_with_headers_and_no_secrets(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        cfg = self.config(platform)
        self.forget(harness.GUIDE_RUN_ID)
        before = end_offsets(self.topic)
        res = self.once_ok(cfg)
        st = self.run_state(harness.GUIDE_RUN_ID)
        self.assertEqual(st["state"], "queued")
        trace = st["trace_id"]
        self.assertRegex(trace, r"^[0-9a-f]{32}$")
        # Other suites may publish the guide run too: ours carries our trace id.
        mine = [m for m in self.keyed(messages_since(self.topic, before), [harness.GUIDE_RUN_ID])
                if m["headers"].get("vb-trace-id") == trace]
        self.assertEqual(len(mine), 1, mine)
        m = mine[0]
        self.assertEqual(m["key"], harness.GUIDE_RUN_ID)
        self.assertEqual(m["headers"].get("vb-schema"), "1")
        self.assertEqual(m["headers"].get("vb-attempt"), "1")
        self.assertEqual(m["headers"].get("vb-source"), "poll")
        self.assertNoSecrets(m["value"], secrets=("sig=", platform.api_key),
                             msg="Kafka message value")
        v = json.loads(m["value"])
        self.assertEqual(v["schema"], 1)
        self.assertEqual(v["run_id"], harness.GUIDE_RUN_ID)
        self.assertEqual(v["credentials"], {"source": "config"})
        self.assertEqual(v["trace_id"], trace)
        self.assertEqual(v["attempt"], 1)
        self.assertEqual(len(v["run"]["documents"]), 3)
        for d in v["run"]["documents"]:
            self.assertNotIn("?", d["document_path"])
        self.assertIn("published=1", res.stderr)

        # The run is queued now: a second pass leaves it alone.
        res2 = self.once_ok(cfg)
        self.assertIn("published=0 skipped_in_progress=1", res2.stderr)
        st2 = self.run_state(harness.GUIDE_RUN_ID)
        self.assertEqual((st2["version"], st2["trace_id"]), (st["version"], trace))

    def test_second_pass_publishes_nothing_while_runs_are_queued(self):
        scen = self.scenario(3)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        platform = self.start_platform(scenario=scen)
        cfg = self.config(platform)
        before = end_offsets(self.topic)
        self.once_ok(cfg)
        first = self.keyed(messages_since(self.topic, before), ids)
        self.assertEqual(sorted(m["key"] for m in first), sorted(ids))
        middle = end_offsets(self.topic)
        res = self.once_ok(cfg)
        self.assertEqual(self.keyed(messages_since(self.topic, middle), ids), [])
        self.assertIn("published=0 skipped_in_progress=3", res.stderr)

    def test_runs_of_other_organizations_are_not_published(self):
        mine = self.scenario(1)
        theirs = self.scenario(2, org=OTHER_ORG)
        platform = self.start_platform(scenario={"runs": mine["runs"] + theirs["runs"],
                                                 "files": {}})
        cfg = self.config(platform)
        before = end_offsets(self.topic)
        res = self.once_ok(cfg)
        msgs = messages_since(self.topic, before)
        self.assertEqual(len(self.keyed(msgs, [mine["runs"][0]["vision_analysis_id"]])), 1)
        self.assertEqual(self.keyed(msgs, [r["vision_analysis_id"] for r in theirs["runs"]]), [])
        self.assertIn("other_org=2", res.stderr)
        for r in theirs["runs"]:
            self.assertEqual(self.run_state(r["vision_analysis_id"]), {})

    def test_failed_run_with_attempts_left_is_published_again(self):
        scen = self.scenario(1)
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        cfg = self.config(platform, max_attempts=3)
        self.once_ok(cfg)
        self.set_state(rid, state="failed", attempts="2", lease_until="0")
        before = end_offsets(self.topic)
        self.once_ok(cfg)
        msgs = self.keyed(messages_since(self.topic, before), [rid])
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["headers"].get("vb-attempt"), "3")
        self.assertEqual(json.loads(msgs[0]["value"])["attempt"], 3)
        st = self.run_state(rid)
        self.assertEqual((st["state"], st["attempts"]), ("queued", "2"))

    def test_run_out_of_attempts_goes_to_the_dead_letter_topic_once(self):
        scen = self.scenario(1)
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        cfg = self.config(platform, max_attempts=2)
        self.once_ok(cfg)
        self.set_state(rid, state="failed", attempts="2", lease_until="0",
                       last_error="backend said no")
        before, before_dlq = end_offsets(self.topic), end_offsets(self.dlq)
        res = self.once_ok(cfg)
        self.assertIn("dead=1", res.stderr)
        self.assertEqual(self.keyed(messages_since(self.topic, before), [rid]), [])
        dlq = self.keyed(messages_since(self.dlq, before_dlq), [rid])
        self.assertEqual(len(dlq), 1, dlq)
        self.assertEqual(dlq[0]["headers"].get("vb-reason"), "dead")
        self.assertEqual(json.loads(dlq[0]["value"])["run_id"], rid)
        self.assertEqual(self.run_state(rid)["state"], "dead")
        # Already dead: no second copy.
        mid_dlq = end_offsets(self.dlq)
        self.once_ok(cfg)
        self.assertEqual(self.keyed(messages_since(self.dlq, mid_dlq), [rid]), [])

    def test_unpublishable_run_is_released_for_the_next_pass(self):
        scen = self.scenario(1)
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        # A topic that does not exist: the broker answers, the message times out (30 s).
        cfg = self.config(platform, topic="visionbatch.missing-" + uuid.uuid4().hex[:8])
        cfg2 = self.config(platform, name="config2.json")
        res = self.producer(cfg, "--once", timeout=120)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("failed_publish=1", res.stderr)
        st = self.run_state(rid)
        self.assertEqual((st["state"], st["attempts"]), ("failed", "0"))
        self.assertIn("not published", st["last_error"])
        # The next pass (with a real topic) publishes it at once.
        before = end_offsets(self.topic)
        self.once_ok(cfg2)
        self.assertEqual(len(self.keyed(messages_since(self.topic, before), [rid])), 1)

    def test_unreachable_kafka_claims_nothing(self):
        scen = self.scenario(1)
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        cfg = self.config(platform, kafka_brokers="127.0.0.1:%d" % _free_port())
        res = self.producer(cfg, "--once", timeout=60)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("unreachable", res.stderr)
        self.assertEqual(self.run_state(rid), {})

    def test_interval_mode_stops_cleanly_on_sigterm(self):
        scen = self.scenario(1)
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        cfg = self.config(platform)
        p = self.start_program("visionbatch-producer", "--config", cfg, "--interval", "3600",
                               "--listen", "127.0.0.1:%d" % _free_port())
        harness.wait_until(lambda: self.run_state(rid).get("state") == "queued", timeout=30,
                           message="the first pass")
        self.assertIn("REST API listening", p.stderr())
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.stderr())
        self.assertIn("stopping", p.stderr())

    def test_help_version_and_usage(self):
        res = harness.run_binary("visionbatch-producer", ["--help"], timeout=10)
        self.assertEqual(res.returncode, 0)
        for word in ("--once", "--interval", "--healthcheck", "--kafka-brokers"):
            self.assertIn(word, res.stdout)
        for prog in ("visionbatch-producer", "visionbatch-worker"):
            out = harness.run_binary(prog, ["--help"], timeout=10).stdout
            self.assertEqual(out.count("\nSettings ("), 1, prog)  # one header above the table
        res = harness.run_binary("visionbatch-producer", ["--version"], timeout=10)
        self.assertEqual(res.returncode, 0)
        self.assertRegex(res.stdout, r"^visionbatch-producer \d+\.\d+\.\d+")
        res = harness.run_binary("visionbatch-producer", ["--interval", "zero"], timeout=10)
        self.assertEqual(res.returncode, 2)
        res = harness.run_binary("visionbatch-producer", ["--bogus"], timeout=10)
        self.assertEqual(res.returncode, 2)

    def test_healthcheck(self):
        port = _free_port()
        t0 = time.monotonic()
        res = harness.run_binary("visionbatch-producer",
                                 ["--healthcheck", "--listen", "127.0.0.1:%d" % port], timeout=10)
        self.assertEqual(res.returncode, 1, res)
        self.assertLess(time.monotonic() - t0, 6)

        class Health(BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/healthz"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Health)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        res = harness.run_binary("visionbatch-producer",
                                 ["--healthcheck", "--listen",
                                  "127.0.0.1:%d" % srv.server_address[1]], timeout=10)
        self.assertEqual(res.returncode, 0, res)

    def test_runs_list_show_and_retry(self):
        scen = self.scenario(2)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        platform = self.start_platform(scenario=scen)
        cfg = self.config(platform, max_attempts=2)
        self.once_ok(cfg)
        env = {"REDIS_URL": self.redis_url, "VISIONBATCH_LOG_FILE": ""}

        res = self.run_cli("runs", "list", env=env, timeout=20)
        self.assertEqual(res.returncode, 0, res)
        self.assertIn("STATE", res.stdout)
        for rid in ids:
            self.assertRegex(res.stdout, rid + r"\s+queued\s+0")

        res = self.run_cli("runs", "show", ids[0].lower(), env=env, timeout=20)
        self.assertEqual(res.returncode, 0, res)
        self.assertIn("id: " + ids[0], res.stdout)
        self.assertIn("state: queued", res.stdout)
        self.assertIn("attempts: 0", res.stdout)

        res = self.run_cli("runs", "retry", ids[0], env=env, timeout=20)
        self.assertEqual(res.returncode, 1, res)  # queued: nothing to retry
        self.assertIn("only dead or failed", res.stderr)

        self.set_state(ids[0], state="dead", attempts="2", lease_until="0",
                       last_error="gave up")
        res = self.run_cli("runs", "list", "--state", "dead", "--json", env=env, timeout=20)
        self.assertEqual(res.returncode, 0, res)
        listed = [r for r in json.loads(res.stdout)["runs"] if r["id"] in ids]
        self.assertEqual([r["id"] for r in listed], [ids[0]])
        self.assertTrue(all(r["state"] == "dead" for r in json.loads(res.stdout)["runs"]))
        self.assertEqual(listed[0]["last_error"], "gave up")

        res = self.run_cli("runs", "retry", ids[0], env=env, timeout=20)
        self.assertEqual(res.returncode, 0, res)
        self.assertIn("next visionbatch-producer pass", res.stdout)
        shown = json.loads(self.run_cli("runs", "show", ids[0], "--json", env=env,
                                        timeout=20).stdout)
        self.assertEqual((shown["state"], shown["attempts"]), ("failed", 0))
        before = end_offsets(self.topic)
        self.once_ok(cfg)
        self.assertEqual(len(self.keyed(messages_since(self.topic, before), [ids[0]])), 1)

        res = self.run_cli("runs", "show", "NO-SUCH-RUN", env=env, timeout=20)
        self.assertEqual(res.returncode, 1)
        res = self.run_cli("runs", "frobnicate", env=env, timeout=20)
        self.assertEqual(res.returncode, 2)
        res = self.run_cli("runs", "list", "--limit", "0", env=env, timeout=20)
        self.assertEqual(res.returncode, 2)
        res = self.run_cli("runs", "--help", timeout=20)
        self.assertEqual(res.returncode, 0)
        self.assertIn("runs retry", res.stdout)


if __name__ == "__main__":
    unittest.main()
