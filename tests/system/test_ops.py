"""System tests of the operator commands `visionbatch dlq list|replay` and
`visionbatch topics` on real Kafka and Redis.

Kafka: $KAFKA_BROKERS (127.0.0.1:9092, started by deploy/local/services.sh).
Every test creates its own runs and dead-letter topics
(harness.private_topics, deleted afterwards) and its own consumer group, so nothing is
shared with other suites. Redis: a private redis-server on a free port for
this class. Messages are written and read with kcat. The stand-in platform
and backend run per test; runs reach the topic through visionbatch-producer
--once and are processed by a real visionbatch-worker.

When Kafka, kcat or redis-server is missing the tests are skipped.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import harness

BROKERS = harness.kafka_brokers()
SERVICES = os.environ.get("VB_SERVICES_SCRIPT") or os.path.join(harness.SOURCE_DIR, "deploy", "local",
                                                                 "services.sh")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_up():
    if not shutil.which("kcat") or not shutil.which("redis-server") or not os.access(SERVICES, os.X_OK):
        return False
    try:
        r = subprocess.run(["kcat", "-L", "-b", BROKERS, "-m", "5"], capture_output=True, timeout=20)
        return r.returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def read_topic(topic):
    """Every message of ``topic``: dicts with key, headers (dict), value (str)."""
    return harness.read_topic(topic, BROKERS)


class OpsTest(harness.SystemTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not kafka_up():
            # A missing service is a failure, not a skip: the suite must not pass empty.
            raise AssertionError("Kafka (deploy/local/services.sh start), kcat or redis-server "
                                 "missing")
        cls.redis = harness.RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for b in ("visionbatch", "visionbatch-worker", "visionbatch-producer"):
            harness.require_binary(b)
        self.topic, self.dlq = harness.private_topics(self, ("vb-ops", 2), ("vb-ops-dlq", 1))
        self.group = harness.unique_name("vb-ops")

    def stubs(self, n, outcome=None):
        scen = harness.make_scenario(n, 1, seed=uuid.uuid4().hex[:8])
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1, outcome=outcome)
        return [r["vision_analysis_id"] for r in scen["runs"]], platform, backend

    def config(self, platform, backend, **extra):
        cfg = harness.processor_config(
            platform, backend, redis_url="redis://127.0.0.1:%d/0" % self.redis.port,
            kafka_brokers=BROKERS, topic=self.topic, dlq_topic=self.dlq, group_id=self.group,
            log_file="", temp_dir=os.path.join(self.tmp, "work"), status_poll_min_ms=50,
            status_poll_max_ms=200, retry_base_ms=100, retry_max_ms=500, lease_ms=5000)
        cfg.update(extra)
        return self.write_config(cfg, name="cfg-%s.json" % uuid.uuid4().hex[:6])

    def start_worker(self, cfg):
        port = free_port()
        w = self.start_program("visionbatch-worker", "--config", cfg, "--concurrency", "2",
                               "--metrics-listen", "127.0.0.1:%d" % port)

        def healthy():
            if not w.alive():
                raise AssertionError("worker died:\n" + w.stderr()[-3000:])
            try:
                return harness.http_request("GET", "http://127.0.0.1:%d/healthz" % port,
                                            timeout=2).status == 200
            except OSError:
                return False
        harness.wait_until(healthy, timeout=30, message="worker healthy")
        return w

    def cli(self, cfg, *args, ok=True):
        res = self.run_cli(*args, "--config", cfg, timeout=60)
        if ok:
            self.assertEqual(res.returncode, 0, res)
        return res

    def lag(self, cfg):
        res = self.cli(cfg, "topics", "--json")
        data = json.loads(res.stdout)
        self.assertEqual(data["group"], self.group)
        t = {x["name"]: x for x in data["topics"]}[self.topic]
        self.assertEqual(t["partitions"], 2)
        return t

    # ------------------------------------------------------------------

    def test_dead_run_is_listed_with_its_reason_and_replayed(self):
        ids, platform, backend = self.stubs(1, outcome="failed")
        rid = ids[0]
        cfg = self.config(platform, backend, max_attempts=1)
        res = self.run_program("visionbatch-producer", "--once", "--config", cfg, timeout=60)
        self.assertEqual(res.returncode, 0, res)
        w = self.start_worker(cfg)
        harness.wait_until(lambda: self.redis.state(rid) == "dead", timeout=60, interval=0.3,
                           message="run dead")

        def listed():
            data = json.loads(self.cli(cfg, "dlq", "list", "--json").stdout)
            return [m for m in data["messages"] if m["run_id"] == rid]
        msgs = harness.wait_until(listed, timeout=30, interval=0.5, message="run in dlq list")
        m = msgs[-1]
        self.assertEqual(m["key"], rid)
        self.assertEqual(m["kind"], "run")
        self.assertTrue(m["replayable"])
        self.assertTrue(m["reason"], m)
        self.assertIsNotNone(m["timestamp"])
        text = self.cli(cfg, "dlq", "list").stdout
        self.assertIn(rid, text)
        self.assertIn(m["reason"][:40], text)

        # a dry run changes nothing
        res = self.cli(cfg, "dlq", "replay", rid, "--dry-run")
        self.assertIn("would replay run %s (state dead" % rid, res.stdout)
        self.assertEqual(self.redis.state(rid), "dead")
        before = len(read_topic(self.topic))

        # the backend is healthy again; the replayed run is processed
        w.stop()
        backend.config(outcome="completed")
        res = self.cli(cfg, "dlq", "replay", rid.lower())
        self.assertIn("replayed run %s" % rid, res.stdout)
        self.assertEqual(self.redis.state(rid), "queued")
        self.assertEqual(self.redis.cli("HGET", "visionbatch:run:" + rid, "attempts"), "0")
        msgs = read_topic(self.topic)
        self.assertEqual(len(msgs), before + 1)
        replayed = msgs[-1] if msgs[-1]["key"] == rid else [x for x in msgs if x["key"] == rid][-1]
        self.assertEqual(replayed["headers"].get("vb-source"), "replay")
        self.assertEqual(json.loads(replayed["value"])["run_id"], rid)

        self.start_worker(cfg)
        harness.wait_until(lambda: self.redis.state(rid) == "uploaded", timeout=60, interval=0.3,
                           message="replayed run uploaded")
        self.assertEqual({r["vision_analysis_id"]: r["uploads"] for r in platform.records()["runs"]}[rid], 1)

        # uploaded now: a second replay is refused
        res = self.cli(cfg, "dlq", "replay", rid, ok=False)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("already uploaded", res.stderr)

    def test_poison_message_is_listed_but_not_replayed(self):
        ids, platform, backend = self.stubs(1)
        cfg = self.config(platform, backend)
        key = "POISON-" + uuid.uuid4().hex
        r = subprocess.run(["kcat", "-P", "-b", BROKERS, "-t", self.dlq, "-k", key,
                            "-H", "vb-reason=message is not a JSON object"],
                           input=b"not json at all", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        data = json.loads(self.cli(cfg, "dlq", "list", "--json").stdout)
        self.assertEqual(data["total"], 1)
        m = data["messages"][0]
        self.assertEqual((m["key"], m["kind"], m["run_id"], m["replayable"]),
                         (key, "poison", None, False))
        self.assertEqual(m["reason"], "message is not a JSON object")
        res = self.cli(cfg, "dlq", "replay", key, ok=False)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("cannot be decoded", res.stderr)
        res = self.cli(cfg, "dlq", "replay", "--all", ok=False)
        self.assertIn("1 poison message(s) skipped", res.stdout)
        self.assertEqual(read_topic(self.topic), [], "nothing may be published")

    def test_topics_shows_lag_that_drops_after_consuming(self):
        ids, platform, backend = self.stubs(6)
        cfg = self.config(platform, backend)
        t = self.lag(cfg)
        self.assertEqual((t["messages"], t["total_lag"]), (0, 0))
        res = self.run_program("visionbatch-producer", "--once", "--config", cfg, timeout=60)
        self.assertEqual(res.returncode, 0, res)
        t = self.lag(cfg)
        self.assertEqual(t["messages"], 6)
        self.assertEqual(t["total_lag"], 6)
        self.assertTrue(all(p["committed"] is None for p in t["lag"]), t)
        text = self.cli(cfg, "topics").stdout
        self.assertIn("consumer group %s on %s" % (self.group, self.topic), text)
        self.assertIn("total lag 6", text)

        self.start_worker(cfg)
        harness.wait_until(lambda: all(self.redis.state(i) == "uploaded" for i in ids),
                           timeout=90, interval=0.5, message="runs uploaded")
        t = harness.wait_until(lambda: (lambda x: x if x["total_lag"] == 0 else None)(self.lag(cfg)),
                               timeout=30, interval=0.5, message="lag 0")
        self.assertEqual(sum(p["committed"] or 0 for p in t["lag"]), 6)

    def test_topics_lists_while_other_topics_are_deleted(self):
        # Other tenants of the cluster create and delete topics at any time. A topic deleted
        # between the metadata read and its offsets is left out of the listing, not an error.
        ids, platform, backend = self.stubs(1)
        cfg = self.config(platform, backend)
        stop, churned, errors = threading.Event(), [0], []

        def churn():
            while not stop.is_set():
                name = harness.unique_name("vb-churn")
                try:
                    harness.create_topics([(name, 64)], BROKERS)
                    harness.delete_topics([name], BROKERS)
                    churned[0] += 1
                except AssertionError as e:
                    errors.append(str(e))
                    return
        t = threading.Thread(target=churn, daemon=True)
        t.start()
        try:
            harness.wait_until(lambda: churned[0] >= 1 or errors, timeout=60,
                               message="first topic churned")
            listings = 0
            while listings < 40 or churned[0] < 10:
                res = self.cli(cfg, "topics", "--json", ok=False)
                self.assertEqual(res.returncode, 0, res)
                names = [x["name"] for x in json.loads(res.stdout)["topics"]]
                self.assertIn(self.topic, names)
                listings += 1
                self.assertLess(listings, 400, "the churn thread stalled")
        finally:
            stop.set()
            t.join(60)
        self.assertEqual(errors, [])



if __name__ == "__main__":
    unittest.main()
