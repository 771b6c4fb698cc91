"""System tests of visionbatch on a secured Kafka: SASL and TLS listeners.

What: the producer, a worker and `visionbatch topics` reach Kafka through a
SASL_PLAINTEXT listener and through an SSL listener, with the librdkafka
properties passed through the config file's "kafka" object, the
VISIONBATCH_KAFKA_PROPERTY_* environment and --kafka-property; one run per
listener goes end to end (published, processed, uploaded, committed). A
wrong password and an untrusted CA make each program exit non-zero within
seconds with a message that names the cause; no password is ever printed.
Why: managed Kafka (Confluent Cloud, MSK, Aiven) only speaks SASL and TLS.
How: deploy/local/services.sh serves the secured listeners when started with
KAFKA_SASL_PORT / KAFKA_SSL_PORT (scripts/test.sh does); their addresses, the
password and the CA file are read from its state directory ($VB_SERVICES_DIR,
default deploy/local/var). When that broker has no secured listeners, this
class starts a private broker of its own (slower). Topics are this class's
own; Redis is a private redis-server.
SASL mechanism: SCRAM-SHA-512 where librdkafka is 2.6.1 or newer; older
librdkafka (Debian 12 has 2.0.2) computes a SCRAM proof that Kafka 4
refuses, so there the listener's PLAIN mechanism carries the runs and a test
checks that SCRAM fails clearly instead of hanging.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest
import uuid

import harness

SERVICES = os.environ.get("VB_SERVICES_SCRIPT") or os.path.join(harness.SOURCE_DIR, "deploy", "local",
                                                                 "services.sh")
USER = os.environ.get("KAFKA_SASL_USER", "visionbatch")
FAIL_WITHIN_S = 30  # a refused login or handshake must end a program within this


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def librdkafka_version():
    """(major, minor, patch) of the librdkafka kcat links (the same as ours)."""
    r = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=20)
    m = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


SCRAM_WORKS = librdkafka_version() >= (2, 6, 1)


class SecuredBroker:
    """The services.sh Kafka with its secured listeners: the shared one when it
    serves them, else a private one."""

    def __init__(self):
        self.private_dir = None
        self.env = dict(os.environ)
        self.dir = self.env.get("VB_SERVICES_DIR") or os.path.join(harness.SOURCE_DIR, "deploy", "local",
                                                                   "var")
        found = self.listeners()
        if "SASL_PLAINTEXT" not in found or "SSL" not in found:
            self.private_dir = self.dir = tempfile.mkdtemp(prefix="vb-kafkasec-")
            self.env.update({
                "VB_SERVICES_DIR": self.private_dir, "KAFKA_PORT": str(free_port()),
                "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_SASL_PORT": str(free_port()),
                "KAFKA_SSL_PORT": str(free_port())})
            self.services("start", "kafka", timeout=300)
            found = self.listeners()
        self.sasl, self.ssl = found["SASL_PLAINTEXT"], found["SSL"]
        self.ca = os.path.join(self.dir, "kafka", "tls", "ca.pem")
        self.password = self.env.get("KAFKA_SASL_PASSWORD")
        pw_file = os.path.join(self.dir, "kafka", "sasl-password")
        if not os.path.isfile(self.ca) or not (self.password or os.path.isfile(pw_file)):
            raise AssertionError("no secured listeners under %s: (re)start Kafka with "
                                 "KAFKA_SASL_PORT and KAFKA_SSL_PORT set (deploy/local/services.sh "
                                 "restart kafka)" % self.dir)
        if not self.password:
            with open(pw_file) as f:
                self.password = f.read().strip()

    def listeners(self):
        """{name: host:port} of the listeners in the broker's generated config."""
        try:
            with open(os.path.join(self.dir, "kafka", "server.properties")) as f:
                line = next((x for x in f if x.startswith("listeners=")), "listeners=")
        except OSError:
            return {}
        return dict(item.split("://", 1) for item in line.strip()[len("listeners="):].split(",")
                    if "://" in item)

    def services(self, *args, timeout=240):
        r = subprocess.run([SERVICES] + list(args), env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError("services.sh %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))

    def stop(self):
        if self.private_dir:
            self.services("stop", "kafka")
            shutil.rmtree(self.private_dir, True)


class KafkaSecurityTest(harness.SystemTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not shutil.which("kcat") or not shutil.which("redis-server") or not shutil.which("openssl"):
            raise AssertionError("kcat, redis-server and openssl are needed")
        cls.broker = SecuredBroker()
        cls.redis = harness.RedisServer()
        tag = uuid.uuid4().hex[:8]
        cls.topics = {"sasl": "vb-sec-sasl-%s" % tag, "ssl": "vb-sec-ssl-%s" % tag}
        for t in cls.topics.values():
            cls.broker.services("create-topic", t, "2")

    @classmethod
    def tearDownClass(cls):
        for t in cls.topics.values():
            try:
                cls.broker.services("delete-topic", t)
            except AssertionError:
                pass
        cls.redis.stop()
        cls.broker.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for b in ("visionbatch", "visionbatch-worker", "visionbatch-producer"):
            harness.require_binary(b)

    # -- helpers -----------------------------------------------------------

    def sasl_props(self, mechanism=None):
        return {"security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": mechanism or ("SCRAM-SHA-512" if SCRAM_WORKS else "PLAIN"),
                "sasl.username": USER}

    def ssl_props(self, ca=None):
        return {"security.protocol": "SSL", "ssl.ca.location": ca or self.broker.ca}

    def config(self, platform, backend, kafka, topic, group):
        cfg = harness.processor_config(
            platform, backend, kafka=kafka, topic=topic, dlq_topic=topic + ".dlq", group_id=group,
            log_file="", temp_dir=os.path.join(self.tmp, "work"), status_poll_min_ms=50,
            status_poll_max_ms=200, retry_base_ms=100, retry_max_ms=500, lease_ms=5000)
        return self.write_config(cfg, name="cfg-%s.json" % uuid.uuid4().hex[:6])

    def args(self, cfg, brokers):
        # Options beat KAFKA_BROKERS / REDIS_URL that the caller may export.
        return ["--config", cfg, "--kafka-brokers", brokers, "--redis-url", self.redis.url]

    def assertFailsClearly(self, res, words):
        self.assertFalse(res.timed_out, res)
        self.assertNotEqual(res.returncode, 0, res)
        self.assertLess(res.duration, FAIL_WITHIN_S, res)
        for w in words:
            self.assertIn(w, res.stderr, res)
        self.assertNoSecrets(res.output, [self.broker.password])

    def assertEveryProgramFails(self, args, words):
        """The producer, a worker and `topics` with these arguments all fail clearly."""
        self.assertFailsClearly(self.run_program("visionbatch-producer", "--once", *args, timeout=90),
                                words)
        self.assertFailsClearly(self.run_program("visionbatch-worker", *args, "--metrics-listen",
                                                 "127.0.0.1:%d" % free_port(), timeout=90), words)
        self.assertFailsClearly(self.run_cli("topics", *args, timeout=90), words)

    def end_to_end(self, listener, brokers, kafka, env):
        """Producer --once, a worker and `topics` through one listener."""
        topic, group = self.topics[listener], "vb-sec-%s-%s" % (listener, uuid.uuid4().hex[:6])
        scen = harness.make_scenario(1, 1, seed=uuid.uuid4().hex[:8])
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1)
        cfg = self.config(platform, backend, kafka, topic, group)
        a = self.args(cfg, brokers)

        res = self.run_program("visionbatch-producer", "--once", *a, env=env, timeout=90)
        self.assertEqual(res.returncode, 0, res)
        self.assertNoSecrets(res.output, [self.broker.password])

        port = free_port()
        w = self.start_program("visionbatch-worker", *a, "--concurrency", "1", "--metrics-listen",
                               "127.0.0.1:%d" % port, env=env)

        def uploaded():
            if not w.alive():
                raise AssertionError("worker died:\n" + w.stderr()[-3000:])
            return self.redis.state(rid) == "uploaded"
        harness.wait_until(uploaded, timeout=60, interval=0.3, message="run uploaded")
        self.assertEqual(len(platform.uploads()), 1)

        def lag_zero():
            r = self.run_cli("topics", "--json", *a, env=env, timeout=60)
            self.assertEqual(r.returncode, 0, r)
            t = {x["name"]: x for x in json.loads(r.stdout)["topics"]}[topic]
            return t if t["total_lag"] == 0 and t["messages"] == 1 else None
        harness.wait_until(lag_zero, timeout=30, interval=0.5, message="lag 0 seen through " + listener)
        self.assertEqual(w.stop(grace=15), 0, w.stderr()[-3000:])
        self.assertNoSecrets(w.stdout() + w.stderr(), [self.broker.password])

    # -- tests -------------------------------------------------------------

    def test_sasl_listener_end_to_end(self):
        # The password comes from the environment, the rest from the file.
        env = {"VISIONBATCH_KAFKA_PROPERTY_SASL_PASSWORD": self.broker.password}
        self.end_to_end("sasl", self.broker.sasl, self.sasl_props(), env)

    def test_ssl_listener_end_to_end(self):
        self.end_to_end("ssl", self.broker.ssl, self.ssl_props(), {})

    def test_wrong_password_fails_fast_with_a_clear_error(self):
        platform = self.start_platform(scenario=harness.make_scenario(1, 1, seed="wp"))
        cfg = self.config(platform, None, self.sasl_props(), self.topics["sasl"], "vb-sec-wrong")
        a = self.args(cfg, self.broker.sasl) + ["--kafka-property",
                                                "sasl.password=not-" + self.broker.password]
        words = ["authentication failed", "SASL authentication error"]
        self.assertEveryProgramFails(a, words)

    def test_untrusted_ca_fails_fast_with_a_clear_error(self):
        other = os.path.join(self.tmp, "other-ca.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=not the broker's CA", "-keyout", os.path.join(self.tmp, "o.key"),
                        "-out", other], check=True, capture_output=True, timeout=60)
        platform = self.start_platform(scenario=harness.make_scenario(1, 1, seed="ca"))
        cfg = self.config(platform, None, self.ssl_props(other), self.topics["ssl"], "vb-sec-ca")
        a = self.args(cfg, self.broker.ssl)
        words = ["TLS handshake failed", "certificate verify failed"]
        self.assertEveryProgramFails(a, words)

    def test_unknown_and_reserved_properties_stop_at_start(self):
        # An unknown property or a reserved one stops the program at start
        # (exit 2) with librdkafka's message, before any connection.
        res = self.run_cli("topics", "--kafka-brokers", self.broker.sasl, "--kafka-property",
                           "sasl.pasword=x", "--kafka-property", "enable.auto.commit=true", timeout=30)
        self.assertEqual(res.returncode, 2, res)
        self.assertIn('No such configuration property: "sasl.pasword"', res.stderr)
        self.assertIn("enable.auto.commit is set by visionbatch itself", res.stderr)

    @unittest.skipIf(SCRAM_WORKS, "this librdkafka speaks SCRAM to Kafka 4: the end-to-end test uses it")
    def test_scram_of_old_librdkafka_fails_clearly(self):
        # librdkafka < 2.6.1 builds a SCRAM proof that Kafka 4 refuses even
        # with the right password: the operator gets the broker's reason.
        res = self.run_cli("topics", "--kafka-brokers", self.broker.sasl,
                           "--redis-url", self.redis.url,
                           "--kafka-property", "security.protocol=SASL_PLAINTEXT",
                           "--kafka-property", "sasl.mechanisms=SCRAM-SHA-512",
                           "--kafka-property", "sasl.username=" + USER,
                           env={"VISIONBATCH_KAFKA_PROPERTY_SASL_PASSWORD": self.broker.password},
                           timeout=90)
        self.assertFailsClearly(res, ["authentication failed", "SCRAM-SHA-512"])


if __name__ == "__main__":
    unittest.main()
