"""Slow clients must not take the health endpoints down.

500 connections from 127.0.0.1 each send one byte of a request header per
second (a "slowloris") against the producer's REST API listener and against
the worker's metrics port. Meanwhile /healthz must answer 200 within 1 s on a
fresh connection, both from another loopback address (127.0.0.2: another
client) and from the attacking address itself (the Kubernetes case: kubelet
probes come from the node's address, which may also be the source of
masqueraded outside traffic).

The producer needs Redis (a private redis-server) and the worker Kafka
($KAFKA_BROKERS, as deploy/local/services.sh starts it) and Redis; the worker
consumes a topic of its own in a group of its own, so it touches no other
test's messages. Loopback only; bounded: 500 sockets, about 10 s of attack
per program. The producer runs with the default limits (the per-address
limit does the work); the worker with a 3 s header deadline, which must close
every slow connection left open.
"""

import os
import socket
import threading
import time
import unittest
import uuid

import harness

KAFKA = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
SLOW = 500            # slow connections from one address
ATTACK_S = 8.0        # probing time while the slow clients drip
PROBE_TIMEOUT = 1.0   # /healthz must answer within this


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slowloris:
    """SLOW connections from `source` to port, each sending one byte of an
    endless request header per second, until stop(). Dropped connections are
    not reopened (the count stays bounded)."""

    HEADER = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000

    def __init__(self, port, source="127.0.0.1", count=SLOW):
        self.port, self.source, self.count = port, source, count
        self.socks, self.refused, self.dropped = [], 0, 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)

    def start(self):
        for _ in range(self.count):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.bind((self.source, 0))
                s.connect(("127.0.0.1", self.port))
                s.send(self.HEADER[:1])
                self.socks.append([s, 1])
            except OSError:
                self.refused += 1
                s.close()
        self.thread.start()

    def _drip(self):
        while not self.stop_ev.wait(1.0):
            for entry in self.socks:
                s, pos = entry
                if s is None:
                    continue
                try:
                    s.send(self.HEADER[pos:pos + 1])
                    entry[1] = pos + 1 if pos + 1 < len(self.HEADER) else 30
                except OSError:
                    s.close()
                    entry[0] = None
                    self.dropped += 1

    def alive(self):
        return sum(1 for s, _ in self.socks if s is not None)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)
        for s, _ in self.socks:
            if s is not None:
                s.close()


def probe(port, source, path="/healthz"):
    """GET path on a fresh connection from `source`: (status or None, seconds)."""
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(PROBE_TIMEOUT)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        parts = data.split(b" ", 2)
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except OSError:
        status = None
    finally:
        s.close()
    return status, time.monotonic() - t0


class SlowClientsTest(harness.SystemTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = harness.RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()
        super().tearDownClass()

    def wait_healthy(self, proc, port):
        def ok():
            if not proc.alive():
                raise AssertionError("program died:\n" + proc.stderr()[-3000:])
            return probe(port, "127.0.0.1")[0] == 200
        harness.wait_until(ok, timeout=30, message="/healthz answering")

    def attack_and_probe(self, proc, port, after=None):
        attack = Slowloris(port)
        self.addCleanup(attack.stop)
        attack.start()
        failures, worst = [], 0.0
        t0 = time.monotonic()
        while time.monotonic() < t0 + ATTACK_S:
            for source in ("127.0.0.2", "127.0.0.1"):
                at = time.monotonic() - t0
                status, secs = probe(port, source)
                worst = max(worst, secs)
                if status != 200 or secs > PROBE_TIMEOUT:
                    failures.append((round(at, 2), source, status, round(secs, 3)))
            time.sleep(0.5)
        alive = attack.alive()
        if after:
            after(attack)
        attack.stop()
        print("\n" + "".join(line + "\n" for line in self.connection_metrics(port)))
        self.assertTrue(proc.alive(), proc.stderr()[-3000:])
        msg = ("%d of the probes failed (at, source, status, seconds): %s; slow connections: "
               "%d refused at connect, %d still open, %d dropped; slowest probe %.3f s"
               % (len(failures), failures[:10], attack.refused, alive, attack.dropped, worst))
        print("\n" + msg)
        self.assertEqual(failures, [], msg)
        return attack

    def connection_metrics(self, port):
        """The endpoint's connection metrics (empty before the endpoint had them)."""
        try:
            text = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % port,
                                        timeout=5).text()
        except OSError:
            return []
        return [line for line in text.splitlines() if line.startswith("visionbatch_http_")]

    def test_producer_listener(self):
        port = free_port()
        env = {"REDIS_URL": self.redis.url, "KAFKA_BROKERS": KAFKA, "VISIONBATCH_LOG_FILE": "",
               "VISIONBATCH_TOPIC": "visionbatch.slowclients.%s" % uuid.uuid4().hex[:8]}
        p = self.start_program("visionbatch-producer", "--listen", "127.0.0.1:%d" % port,
                               env=env)
        self.wait_healthy(p, port)
        # default limits: 32 per address, 10 s header deadline (longer than the attack)
        self.attack_and_probe(p, port)

    def test_worker_metrics_port(self):
        port = free_port()
        tag = uuid.uuid4().hex[:8]
        env = {"REDIS_URL": self.redis.url, "KAFKA_BROKERS": KAFKA, "VISIONBATCH_LOG_FILE": "",
               "VISIONBATCH_TOPIC": "visionbatch.slowclients.%s" % tag,
               "VISIONBATCH_GROUP_ID": "visionbatch-slowclients-%s" % tag,
               "VISIONBATCH_TEMP_DIR": os.path.join(self.tmp, "work")}
        # A short header deadline: the slow connections the per-address limit
        # leaves open are cut off too, although none of them is ever idle.
        p = self.start_program("visionbatch-worker", "--metrics-listen", "127.0.0.1:%d" % port,
                               "--http-header-timeout-s", "3", env=env)
        self.wait_healthy(p, port)

        def all_cut_off(attack):
            harness.wait_until(lambda: attack.alive() == 0, timeout=10,
                               message="slow connections closed by the header deadline")
            closed = [line for line in self.connection_metrics(port)
                      if 'closed_total{reason="header_timeout"}' in line]
            self.assertTrue(closed and float(closed[0].split()[-1]) >= 1, closed)

        self.attack_and_probe(p, port, after=all_cut_off)


if __name__ == "__main__":
    unittest.main()
