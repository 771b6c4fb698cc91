"""System test of visionbatch across hosts: Kafka and Redis on one host,
workers on two others, and one worker host cut off from the network mid-run.

What: a producer publishes 12 runs (2 images each); workers on two hosts take
them from one consumer group and both hosts process some; every run is
uploaded exactly once. Then 12 more runs: as soon as host 1 has runs in
progress its network link is cut. Host 2 must finish every run — host 1's
runs in progress through lease expiry and its reaper, host 1's queued
messages through the consumer-group rebalance — each uploaded exactly once,
and host 1 must not upload any of them again once its link is back (its
locks are lost).

How: the "hosts" are Linux network namespaces made by this test (needs root
and iproute2):

    root namespace: bridge vbbr<tag>, address 10.231.N.1/24 (the test itself)
      ├─ veth ── vbsvc-<tag>  10.231.N.2   Kafka (KRaft), Redis, the stand-in
      │                                    platform and backend, the producer
      ├─ veth ── vbw1-<tag>   10.231.N.11  visionbatch-worker --worker-id host1
      └─ veth ── vbw2-<tag>   10.231.N.12  visionbatch-worker --worker-id host2

<tag> is random and N a /24 of 10.231.0.0/16 not in use in the root
namespace, so runs side by side do not collide. The addresses exist only on
the bridge and inside these namespaces: no traffic leaves the machine. Kafka
and Redis are private to the test: deploy/local/services.sh started inside
vbsvc with KAFKA_HOST / REDIS_BIND set to its address and a temporary state
directory; the topic (4 partitions) and the consumer group are unique. Each
worker runs with --lease-ms 5000 and --concurrency 2. "Cutting the link" is
`ip link set <host-side veth of vbw1> down`: host 1's worker stays alive but
reaches nothing. Teardown (also after a failure) stops the programs, kills
whatever still runs inside the namespaces (only this test's processes live
there), and deletes the namespaces and the bridge.

Without root or `ip netns` the test fails, unless VB_ALLOW_NO_NETNS=1 (then
it is skipped). It also needs kcat, redis-server, java and the Kafka jars
(deploy/local/services.sh fetch). Runtime: about 2 minutes.
"""

import collections
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import harness

SERVICES = os.path.join(harness.SOURCE_DIR, "deploy", "local", "services.sh")
KAFKA_PORT, KAFKA_CONTROLLER_PORT, REDIS_PORT = 9092, 9093, 6379
METRICS_PORT = 9101
LEASE_MS = 5000
CONCURRENCY = 2
PARTITIONS = 4
RUNS, IMAGES = 12, 2


def _allow_missing():
    return os.environ.get("VB_ALLOW_NO_NETNS") == "1"


def _sh(args, check=True, timeout=60):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(map(str, args)), r.returncode,
                                                   (r.stderr or r.stdout).strip()))
    return r


def _missing_requirements():
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN)"
    ip = shutil.which("ip")
    if not ip:
        return "iproute2 `ip` not found"
    try:
        r = subprocess.run([ip, "netns", "list"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "`ip netns` unavailable: %s" % e
    if r.returncode != 0:
        return "`ip netns` unavailable: %s" % r.stderr.decode(errors="replace").strip()
    for tool in ("kcat", "redis-server", "redis-cli", "java"):
        if not shutil.which(tool):
            return "%s not found (scripts/install-deps.sh)" % tool
    if not os.access(SERVICES, os.X_OK):
        return "%s missing" % SERVICES
    return None


def _free_subnet():
    """A 10.231.N.0/24 with no address of the root namespace in it."""
    used = _sh(["ip", "-4", "-o", "addr", "show"]).stdout + _sh(["ip", "-4", "route"]).stdout
    for _ in range(200):
        n = 1 + secrets.randbelow(254)
        if "10.231.%d." % n not in used:
            return n
    raise AssertionError("no free 10.231.N.0/24 for the test network")


class Topology:
    """Three namespaces on a bridge in the root namespace (see the module doc)."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        n = _free_subnet()
        self.net = ipaddress.ip_network("10.231.%d.0/24" % n)
        self.bridge = "vbbr" + self.tag
        self.root_addr = "10.231.%d.1" % n
        # name -> (namespace, address, host-side veth, namespace-side veth)
        self.hosts = {}
        for name, last in (("svc", 2), ("w1", 11), ("w2", 12)):
            self.hosts[name] = ("vb%s-%s" % (name, self.tag), "10.231.%d.%d" % (n, last),
                                "vbh%s%s" % (self.tag, name), "vbn%s%s" % (self.tag, name))
        self.created_ns = []
        self.created_links = []

    def ns(self, name):
        return self.hosts[name][0]

    def addr(self, name):
        return self.hosts[name][1]

    def veth(self, name):
        return self.hosts[name][2]

    def exec_prefix(self, name):
        return ["ip", "netns", "exec", self.ns(name)]

    def create(self):
        _sh(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.created_links.append(self.bridge)
        _sh(["ip", "addr", "add", "%s/24" % self.root_addr, "dev", self.bridge])
        _sh(["ip", "link", "set", self.bridge, "up"])
        self._allow_forwarding()
        for name, (ns, addr, host_if, ns_if) in self.hosts.items():
            _sh(["ip", "netns", "add", ns])
            self.created_ns.append(ns)
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            _sh(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if])
            self.created_links.append(host_if)
            _sh(["ip", "link", "set", ns_if, "netns", ns])
            _sh(["ip", "link", "set", host_if, "master", self.bridge])
            _sh(["ip", "link", "set", host_if, "up"])
            _sh(["ip", "-n", ns, "addr", "add", "%s/24" % addr, "dev", ns_if])
            _sh(["ip", "-n", ns, "link", "set", ns_if, "up"])

    def _forward_rule(self, op):
        return ["iptables", op, "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    def _allow_forwarding(self):
        """Lets frames cross our bridge when bridge netfilter is on and the
        FORWARD policy drops (a container engine on the machine sets both):
        one ACCEPT rule for this bridge only, removed by destroy()."""
        self.forward_rule = False
        if shutil.which("iptables") is None:
            return
        if _sh(["iptables", "-S", "FORWARD"], check=False).returncode != 0:
            return
        r = _sh(self._forward_rule("-I"), check=False)
        self.forward_rule = r.returncode == 0

    def set_link(self, name, up):
        _sh(["ip", "link", "set", self.veth(name), "up" if up else "down"])

    def destroy(self):
        """Kills what still runs in the namespaces, deletes them and the links."""
        for ns in self.created_ns:
            r = _sh(["ip", "netns", "pids", ns], check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
        deadline = time.monotonic() + 10
        for ns in self.created_ns:
            while _sh(["ip", "netns", "pids", ns], check=False).stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            _sh(["ip", "netns", "del", ns], check=False)
        if getattr(self, "forward_rule", False):
            _sh(self._forward_rule("-D"), check=False)
            self.forward_rule = False
        for link in reversed(self.created_links):
            if _sh(["ip", "link", "show", link], check=False).returncode == 0:
                _sh(["ip", "link", "del", link], check=False)
        self.created_ns, self.created_links = [], []


class NsPlatform(harness.PlatformStub):
    """The platform stand-in, started inside a namespace on its address."""

    def __init__(self, prefix, host, **kw):
        super().__init__(**kw)
        self.prefix, self.host = prefix, host

    def command(self):
        return self.prefix + super().command()


class NsBackend(harness.BackendStub):
    def __init__(self, prefix, host, **kw):
        super().__init__(**kw)
        self.prefix, self.host = prefix, host

    def command(self):
        return self.prefix + super().command()


class MultiHostTest(harness.SystemTestCase):

    def setUp(self):
        super().setUp()
        why = _missing_requirements()
        if why:
            if _allow_missing():
                self.skipTest("multi-host test needs network namespaces: %s "
                              "(skipped: VB_ALLOW_NO_NETNS=1)" % why)
            self.fail("multi-host test needs network namespaces: %s; run as root with "
                      "iproute2 or set VB_ALLOW_NO_NETNS=1" % why)
        self.worker_bin = harness.require_binary("visionbatch-worker")
        self.producer_bin = harness.require_binary("visionbatch-producer")
        self.topo = Topology()
        self.addCleanup(self.topo.destroy)
        self.topo.create()
        self.start_services()
        self.check_network()
        self.topic = "vb.multihost." + self.topo.tag
        self.group = "vb-multihost-" + self.topo.tag
        self.services("create-topic", self.topic, PARTITIONS)
        svc = self.topo.exec_prefix("svc")
        self.platform = self._start_stub(NsPlatform(svc, self.topo.addr("svc")))
        self.backend = self._start_stub(NsBackend(svc, self.topo.addr("svc"), batch_delay=2,
                                                  polls_to_complete=1))
        self.redis = harness.RespClient(REDIS_PORT, host=self.topo.addr("svc"))
        self.addCleanup(self.redis.close)
        self.seq = 0

    # -- set-up ------------------------------------------------------------------

    def check_network(self):
        """Both worker hosts reach Redis on the services host across the bridge."""
        probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"
        for name in ("w1", "w2"):
            r = _sh(self.topo.exec_prefix(name) + [sys.executable, "-c", probe,
                                                   self.topo.addr("svc"), REDIS_PORT], check=False)
            if r.returncode != 0:
                self.fail("host %s cannot reach %s:%d over bridge %s (bridge netfilter?): %s"
                          % (name, self.topo.addr("svc"), REDIS_PORT, self.topo.bridge,
                             r.stderr.strip()[-500:]))

    def services(self, *args, timeout=240):
        env = ["env", "KAFKA_HOST=%s" % self.topo.addr("svc"),
               "REDIS_BIND=%s" % self.topo.addr("svc"), "KAFKA_PORT=%d" % KAFKA_PORT,
               "KAFKA_CONTROLLER_PORT=%d" % KAFKA_CONTROLLER_PORT, "REDIS_PORT=%d" % REDIS_PORT,
               "VB_SERVICES_DIR=%s" % self.services_dir, "VB_RUNS_PARTITIONS=1"]
        return _sh(self.topo.exec_prefix("svc") + env + [SERVICES] + [str(a) for a in args],
                   timeout=timeout)

    def start_services(self):
        self.services_dir = tempfile.mkdtemp(prefix="vb-multihost-services-")
        self.addCleanup(shutil.rmtree, self.services_dir, True)
        self.addCleanup(self.stop_services)
        t0 = time.monotonic()
        self.services("start")
        print("\nservices up in %.1f s on %s" % (time.monotonic() - t0, self.topo.addr("svc")))

    def stop_services(self):
        try:
            self.services("stop", timeout=120)
        except (AssertionError, subprocess.TimeoutExpired) as e:
            print("services.sh stop: %s" % e)  # the namespace teardown kills what is left

    def config(self, name):
        addr = self.topo.addr("svc")
        cfg = harness.processor_config(
            self.platform, self.backend, redis_url="redis://%s:%d/0" % (addr, REDIS_PORT),
            kafka_brokers="%s:%d" % (addr, KAFKA_PORT), topic=self.topic, group_id=self.group,
            lease_ms=LEASE_MS, log_file="", temp_dir=os.path.join(self.tmp, "work-" + name),
            status_poll_min_ms=100, status_poll_max_ms=500, retry_base_ms=100,
            retry_max_ms=1000)
        return self.write_config(cfg, name="%s.json" % name)

    def start_worker(self, host):
        worker_id = "host" + host[1:]
        addr = self.topo.addr(host)
        cmd = self.topo.exec_prefix(host) + [
            self.worker_bin, "--config", self.config(worker_id), "--concurrency", str(CONCURRENCY),
            "--lease-ms", str(LEASE_MS), "--worker-id", worker_id, "--metrics-listen",
            "%s:%d" % (addr, METRICS_PORT), "--shutdown-grace-s", "5"]
        p = harness.BackgroundProcess(cmd, harness.program_env(), None,
                                      os.path.join(self.tmp, "logs", worker_id))
        self.addCleanup(p.stop)
        p.worker_id, p.url = worker_id, "http://%s:%d/healthz" % (addr, METRICS_PORT)
        harness.wait_until(lambda: self.healthy(p), timeout=30, message="%s healthy" % worker_id)
        return p

    def healthy(self, p):
        if not p.alive():
            raise AssertionError("%s exited:\n%s" % (p.worker_id, p.stderr()[-3000:]))
        try:
            return harness.http_request("GET", p.url, timeout=2).status == 200
        except OSError:
            return False

    def assigned(self, p):
        return "partition(s) assigned" in p.stderr()

    # -- runs --------------------------------------------------------------------

    def add_runs(self):
        """Adds RUNS fresh runs to the platform; returns their ids."""
        self.seq += 1
        scen = harness.make_scenario(RUNS, IMAGES, seed="%s%d" % (self.topo.tag, self.seq))
        self.platform.add_scenario(scen)
        return [r["vision_analysis_id"] for r in scen["runs"]]

    def produce(self, ids):
        res = harness.run_binary(os.path.abspath(shutil.which("ip")), [
            "netns", "exec", self.topo.ns("svc"), self.producer_bin, "--once", "--config",
            self.config("producer")], timeout=90)
        self.assertEqual(res.returncode, 0, res)
        self.assertIn("published=%d" % len(ids), res.stderr)

    def ok_uploads(self):
        """{run id: number of uploads answered 200}."""
        counts = collections.Counter()
        for u in self.platform.uploads():
            if u.get("status") == 200:
                counts[(u.get("fields") or {}).get("vision_analysis_id", "").upper()] += 1
        return counts

    def states(self, ids):
        return {i: self.redis.run(i) for i in ids}

    def wait_all_uploaded(self, ids, timeout, workers):
        def done():
            for w in workers:
                if not w.alive():
                    raise AssertionError("%s exited:\n%s" % (w.worker_id, w.stderr()[-3000:]))
            counts = self.ok_uploads()
            return all(counts[i] >= 1 for i in ids) and all(
                s.get("state") == "uploaded" for s in self.states(ids).values())
        harness.wait_until(done, timeout=timeout, interval=0.5,
                           message="%d runs uploaded" % len(ids))

    def assert_once(self, ids):
        counts = self.ok_uploads()
        wrong = {i: counts[i] for i in ids if counts[i] != 1}
        self.assertEqual(wrong, {}, "runs not uploaded exactly once (run id: uploads)")

    # -- the test ----------------------------------------------------------------

    def test_two_worker_hosts_share_runs_and_one_cut_off_is_taken_over(self):
        w1 = self.start_worker("w1")
        w2 = self.start_worker("w2")
        harness.wait_until(lambda: self.assigned(w1) and self.assigned(w2), timeout=30,
                           interval=0.2, message="partitions assigned to both hosts")

        # Phase 1: both hosts take work, every run uploaded once.
        ids1 = self.add_runs()
        t0 = time.monotonic()
        self.produce(ids1)
        self.wait_all_uploaded(ids1, timeout=120, workers=(w1, w2))
        took = time.monotonic() - t0
        time.sleep(1)
        self.assert_once(ids1)
        by_worker = collections.Counter(s.get("worker") for s in self.states(ids1).values())
        print("phase 1: %d runs in %.1f s, by host: %s" % (len(ids1), took, dict(by_worker)))
        self.assertGreater(by_worker["host1"], 0, "host1 processed no run: %s" % by_worker)
        self.assertGreater(by_worker["host2"], 0, "host2 processed no run: %s" % by_worker)
        self.assertEqual(sum(by_worker.values()), len(ids1))

        # Phase 2: cut host1 off while it has runs in progress.
        self.backend.config(batch_delay=4)
        ids2 = self.add_runs()
        self.produce(ids2)

        def host1_busy():
            st = self.states(ids2)
            mine = {i: s.get("state") for i, s in st.items() if s.get("worker") == "host1"}
            if any(v == "uploading" for v in mine.values()):
                return None  # an upload on the wire would race the cut; wait for a quiet moment
            return [i for i, v in mine.items() if v == "processing"]
        victims = harness.wait_until(host1_busy, timeout=60, interval=0.1,
                                     message="host1 processing runs")
        self.topo.set_link("w1", up=False)
        cut_at = time.monotonic()
        print("phase 2: link of host1 cut with %d run(s) in progress there" % len(victims))
        taken = {}

        def taken_over():
            for i, s in self.states(victims).items():
                if i not in taken and s.get("worker") == "host2":
                    taken[i] = time.monotonic() - cut_at
            return len(taken) == len(victims)
        harness.wait_until(taken_over, timeout=LEASE_MS / 1000 + 45, interval=0.2,
                           message="host2 taking over %s" % victims)
        self.wait_all_uploaded(ids2, timeout=LEASE_MS / 1000 + 90, workers=(w2,))
        all_done = time.monotonic() - cut_at
        print("phase 2: takeover of host1's runs after the cut: %s s; all %d runs uploaded "
              "%.1f s after the cut" % (", ".join("%.1f" % t for t in sorted(taken.values())),
                                         len(ids2), all_done))
        self.assert_once(ids2)
        for i in victims:
            self.assertEqual(self.redis.run(i).get("worker"), "host2")

        # Link back: host1 finds its locks lost and uploads nothing again.
        self.topo.set_link("w1", up=True)
        harness.wait_until(lambda: self.healthy(w1), timeout=30, interval=0.5,
                           message="host1 answering again")
        ended = {}

        def host1_let_go():
            for m in re.finditer(r"run=([0-9A-F-]{36}) run finished: outcome=(\w+)", w1.stderr()):
                if m.group(1) in victims:
                    ended[m.group(1)] = m.group(2)
            return len(ended) == len(victims)
        harness.wait_until(host1_let_go, timeout=30, interval=0.5,
                           message="host1 ending its runs that were taken over")
        print("phase 2: host1's own ending of its cut-off runs: %s" % sorted(ended.values()))
        self.assertNotIn("uploaded", ended.values())
        time.sleep(5)
        self.assert_once(ids1 + ids2)
        self.assertTrue(w1.alive(), "host1's worker exited:\n" + w1.stderr()[-3000:])
        self.assertEqual({s.get("state") for s in self.states(ids2).values()}, {"uploaded"})


if __name__ == "__main__":
    unittest.main()
