"""System test of the local services that visionbatch's distributed tests use.

What: checks that the Kafka broker and the Redis server started by
deploy/local/services.sh (scripts/test.sh starts them before CTest) answer,
that the visionbatch topics exist with their partition counts, that a keyed
message with headers round-trips and a consumer group commits its offsets
through kcat, and that Redis keeps data across a restart thanks to its AOF.
Why: kcat is linked against the same Debian librdkafka as the C code, so these
exchanges prove the client library speaks the broker's protocol.
How: the shared services are only read from, or written to on a topic of this
test's own, so tests running beside this one are not disturbed; the restart
tests start a second, private Redis / Kafka through services.sh on free ports
with their own state directory, and stop them at the end.
Environment: KAFKA_PORT (9092), REDIS_PORT (6379), VB_RUNS_PARTITIONS (6),
VB_SOURCE_DIR (repository root).
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import unittest
import uuid

SOURCE_DIR = os.environ.get(
    "VB_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SERVICES = os.path.join(SOURCE_DIR, "deploy", "local", "services.sh")
KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
RUNS_PARTITIONS = int(os.environ.get("VB_RUNS_PARTITIONS", "6"))
BROKER = "127.0.0.1:%d" % KAFKA_PORT


def run(args, env=None, input_text=None, timeout=120, check=True):
    """Runs a command, returns CompletedProcess; fails loudly with its output."""
    proc = subprocess.run(args, input=input_text, capture_output=True,
                          text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


def services(*args, env=None, timeout=240):
    return run([SERVICES] + list(args), env=env, timeout=timeout)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_metadata(broker, topic=None):
    args = ["kcat", "-L", "-J", "-b", broker, "-m", "10"]
    if topic:
        args += ["-t", topic]
    return json.loads(run(args).stdout)


def partition_count(broker, topic):
    for t in kafka_metadata(broker, topic).get("topics", []):
        if t.get("topic") == topic and not t.get("error"):
            return len(t.get("partitions", []))
    return None


def redis_cli(port, *args):
    return run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
               + list(args)).stdout.strip()


def consume_all(broker, topic, group=None):
    """Consumes a topic to its end; returns messages as dicts (kcat JSON)."""
    args = ["kcat", "-b", broker, "-e", "-q", "-J",
            "-X", "topic.auto.offset.reset=earliest"]
    if group:
        args += ["-G", group, topic]
    else:
        args += ["-C", "-t", topic, "-o", "beginning"]
    out = run(args, timeout=90).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def produce(broker, topic, key, value, headers=()):
    args = ["kcat", "-P", "-b", broker, "-t", topic, "-K", "\t",
            "-X", "acks=all"]
    for name, val in headers:
        args += ["-H", "%s=%s" % (name, val)]
    run(args, input_text="%s\t%s\n" % (key, value))


def header_pairs(msg):
    """kcat -J prints headers as a flat [name, value, name, value, …] list."""
    flat = msg.get("headers") or []
    return list(zip(flat[0::2], flat[1::2]))


def managed(service):
    """True if services.sh (default state dir) runs this service itself."""
    out = run([SERVICES, "status", service], check=False).stdout
    return " up (pid " in out


class SharedServicesTest(unittest.TestCase):
    """Kafka and Redis as scripts/test.sh started them."""

    @classmethod
    def setUpClass(cls):
        status = run([SERVICES, "status"], check=False)
        if status.returncode != 0:
            raise AssertionError(
                "Kafka and Redis are not up; run deploy/local/services.sh "
                "start (scripts/test.sh does)\n" + status.stdout + status.stderr)
        cls.topic = "visionbatch.selftest.%s" % uuid.uuid4().hex[:12]
        services("create-topic", cls.topic, "3")

    @classmethod
    def tearDownClass(cls):
        run([SERVICES, "delete-topic", cls.topic], check=False)

    def test_kafka_answers_metadata_with_one_broker(self):
        meta = kafka_metadata(BROKER)
        self.assertEqual([b["name"] for b in meta["brokers"]], [BROKER])

    def test_runs_topic_has_configured_partitions(self):
        self.assertEqual(partition_count(BROKER, "visionbatch.runs"),
                         RUNS_PARTITIONS)

    def test_dlq_topic_has_one_partition(self):
        self.assertEqual(partition_count(BROKER, "visionbatch.runs.dlq"), 1)

    def test_topics_are_not_auto_created(self):
        name = "visionbatch.absent.%s" % uuid.uuid4().hex[:12]
        self.assertIsNone(partition_count(BROKER, name))
        self.assertIsNone(partition_count(BROKER, name))

    def test_start_is_idempotent_while_running(self):
        res = services("start")
        # Either ours (already running) or one started elsewhere that is reused.
        self.assertRegex(res.stdout + res.stderr, r"already running|using it as is")
        services("status")

    def test_keyed_message_with_headers_round_trips(self):
        key = "va-%s" % uuid.uuid4().hex
        value = json.dumps({"vision_analysis_id": key, "n": 1})
        produce(BROKER, self.topic, key, value,
                [("trace_id", "t-1"), ("attempt", "2")])
        mine = [m for m in consume_all(BROKER, self.topic)
                if m.get("key") == key]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["payload"], value)
        self.assertEqual(header_pairs(mine[0]),
                         [("trace_id", "t-1"), ("attempt", "2")])
        # Same key, same partition: the key decides the partition.
        produce(BROKER, self.topic, key, "second")
        again = [m for m in consume_all(BROKER, self.topic)
                 if m.get("key") == key]
        self.assertEqual(len(again), 2)
        self.assertEqual(again[0]["partition"], again[1]["partition"])

    def test_consumer_group_commits_offsets(self):
        group = "visionbatch-selftest-%s" % uuid.uuid4().hex[:12]
        first = "first-%s" % uuid.uuid4().hex
        produce(BROKER, self.topic, first, "1")
        seen = [m["key"] for m in consume_all(BROKER, self.topic, group)]
        self.assertIn(first, seen)
        second = "second-%s" % uuid.uuid4().hex
        produce(BROKER, self.topic, second, "2")
        # auto.offset.reset=earliest: without committed offsets the group
        # would read `first` again.
        seen = [m["key"] for m in consume_all(BROKER, self.topic, group)]
        self.assertEqual(seen, [second])

    def test_redis_answers_ping(self):
        self.assertEqual(redis_cli(REDIS_PORT, "PING"), "PONG")

    def test_redis_appendonly_is_on(self):
        if not managed("redis"):
            self.skipTest("the Redis on port %d was not started by services.sh"
                          % REDIS_PORT)
        self.assertEqual(redis_cli(REDIS_PORT, "CONFIG", "GET", "appendonly")
                         .splitlines(), ["appendonly", "yes"])


class PrivateServicesTest(unittest.TestCase):
    """A second Redis / Kafka with their own ports and state directory."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vb-services-")
        self.env = dict(os.environ, VB_SERVICES_DIR=self.dir,
                        REDIS_PORT=str(free_port()),
                        KAFKA_PORT=str(free_port()),
                        KAFKA_CONTROLLER_PORT=str(free_port()))

    def tearDown(self):
        run([SERVICES, "stop"], env=self.env, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_redis_restart_keeps_a_key(self):
        port = int(self.env["REDIS_PORT"])
        services("start", "redis", env=self.env)
        self.assertEqual(redis_cli(port, "SET", "visionbatch:selftest",
                                   "kept"), "OK")
        services("restart", "redis", env=self.env)
        self.assertEqual(redis_cli(port, "GET", "visionbatch:selftest"),
                         "kept")
        self.assertTrue(os.path.isdir(os.path.join(self.dir, "redis",
                                                   "appendonlydir")))

    def test_stop_then_status_reports_down(self):
        services("start", "redis", env=self.env)
        services("status", "redis", env=self.env)
        services("stop", "redis", env=self.env)
        status = run([SERVICES, "status", "redis"], env=self.env, check=False)
        self.assertNotEqual(status.returncode, 0)
        self.assertIn("redis: down", status.stdout)

    def test_kafka_restart_keeps_topics_and_messages(self):
        broker = "127.0.0.1:%s" % self.env["KAFKA_PORT"]
        services("start", "kafka", env=self.env)
        self.assertEqual(partition_count(broker, "visionbatch.runs"),
                         RUNS_PARTITIONS)
        key = "va-%s" % uuid.uuid4().hex
        produce(broker, "visionbatch.runs", key, "before-restart")
        services("restart", "kafka", env=self.env)
        msgs = [m for m in consume_all(broker, "visionbatch.runs")
                if m.get("key") == key]
        self.assertEqual([m["payload"] for m in msgs], ["before-restart"])


if __name__ == "__main__":
    unittest.main()
