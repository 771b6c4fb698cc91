"""System test of the workers' heartbeats in the console's GET /workers.

A producer and a worker (lease 3 s: a beat a second) on a private Redis and
Kafka topic: the running worker's heartbeat is listed, live, with its host,
slots and the time of its last beat, on its consumer-group member too; a
worker that stops beating (SIGSTOP) turns stale; one that stops (SIGTERM)
disappears.
"""

import base64
import datetime
import os
import signal
import socket
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_producer import BROKERS, kafka_ok  # noqa: E402

SECRET_KEY = base64.b64encode(b"h" * 32).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConsoleWorkersTest(harness.SystemTestCase):
    def setUp(self):
        super().setUp()
        harness.require_binary("visionbatch-producer")
        if not kafka_ok():
            raise AssertionError("Kafka unavailable at %s: start deploy/local/services.sh" % BROKERS)
        self.redis = harness.RedisServer()
        self.addCleanup(self.redis.stop)
        self.topic, = harness.private_topics(self, ("visionbatch.test.beats", 2))
        self.group = "visionbatch-beats-" + uuid.uuid4().hex[:8]

    def workers(self):
        """GET /workers; None while it is not answered (starting, being computed)."""
        try:
            r = harness.http_request("GET", self.base + "/workers", timeout=10)
        except OSError:
            return None
        return r.json() if r.status == 200 else None

    def beat_of(self, worker):
        w = self.workers()
        for b in (w or {}).get("heartbeats", []):
            if b["worker"] == worker:
                return w, b
        return w, None

    def test_heartbeat_live_stale_and_gone(self):
        port = free_port()
        self.base = "http://127.0.0.1:%d" % port
        env = {"VISIONBATCH_SECRET_KEY": SECRET_KEY, "REDIS_URL": self.redis.url,
               "KAFKA_BROKERS": BROKERS, "VISIONBATCH_LOG_FILE": os.path.join(self.tmp, "p.log"),
               "VISIONBATCH_CONFIG": self.write_config({}, "empty.json")}
        producer = self.start_program("visionbatch-producer", "--listen", "127.0.0.1:%d" % port,
                                      "--topic", self.topic, "--group-id", self.group, env=env)
        harness.wait_until(lambda: self.workers() is not None or not producer.alive(),
                           timeout=30, message="GET /workers answered")
        self.assertTrue(producer.alive(), producer.stderr()[-2000:])
        worker_id = "beat-worker-" + uuid.uuid4().hex[:6]
        wcfg = self.write_config({
            "redis_url": self.redis.url, "kafka_brokers": BROKERS, "topic": self.topic,
            "group_id": self.group, "log_file": "", "worker_id": worker_id, "lease_ms": 3000,
            "temp_dir": os.path.join(self.tmp, "work"), "concurrency": 3,
            "metrics_listen": "127.0.0.1:%d" % free_port(),
        }, "worker.json")
        worker = self.start_program("visionbatch-worker", "--config", wcfg,
                                    env={"VISIONBATCH_SECRET_KEY": SECRET_KEY,
                                         "REDIS_URL": self.redis.url, "KAFKA_BROKERS": BROKERS})

        # Running: its heartbeat is live, and the group member shows it.
        def live_member():
            w, b = self.beat_of(worker_id)
            return b and b["heartbeat"] == "live" and b["member"] and (w, b)
        w, b = harness.wait_until(live_member, timeout=60, message="a live heartbeat")
        self.assertEqual((b["slots"], b["in_flight"], b["interval_ms"]), (3, 0, 1000))
        self.assertEqual(b["host"], socket.gethostname())
        last = datetime.datetime.fromisoformat(b["last_heartbeat"].replace("Z", "+00:00"))
        age = datetime.datetime.now(datetime.timezone.utc) - last
        self.assertLess(abs(age.total_seconds()), 30)
        member = [m for m in w["members"] if m["worker"] == worker_id][0]
        self.assertEqual((member["heartbeat"], member["slots"]), ("live", 3))
        self.assertEqual(member["last_heartbeat"], b["last_heartbeat"])
        # Beats go on: a later view has a later beat.
        harness.wait_until(lambda: (self.beat_of(worker_id)[1] or {}).get(
            "last_heartbeat", "") > b["last_heartbeat"], timeout=15, message="a later beat")

        # Frozen: no more beats, stale after three intervals; beating again: live.
        worker.signal(signal.SIGSTOP)
        try:
            harness.wait_until(lambda: (self.beat_of(worker_id)[1] or {}).get(
                "heartbeat") == "stale", timeout=30, message="a stale heartbeat")
        finally:
            worker.signal(signal.SIGCONT)
        harness.wait_until(lambda: (self.beat_of(worker_id)[1] or {}).get(
            "heartbeat") == "live", timeout=30, message="live again")

        # Stopped: the record is removed with the worker.
        worker.signal(signal.SIGTERM)
        harness.wait_until(lambda: not worker.alive(), timeout=60, message="worker exit")
        harness.wait_until(lambda: self.workers() is not None and
                           self.beat_of(worker_id)[1] is None, timeout=15,
                           message="the heartbeat gone")
        self.assertEqual(self.redis.cli("EXISTS", "visionbatch:worker:" + worker_id), "0")


if __name__ == "__main__":
    unittest.main()
