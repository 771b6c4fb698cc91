"""System tests of visionbatch-worker on real Kafka and Redis.

Kafka ($KAFKA_BROKERS, else 127.0.0.1:9092) is the one scripts/test.sh starts
through deploy/local/services.sh; each test has runs and dead-letter topics
and a consumer group of its own (harness.private_topics), and the class a
private redis-server, so these tests run beside other suites. The stand-in
platform and backend run per test. Messages are published, and the
dead-letter topic read, with kcat; Redis is read with a tiny RESP client.
Every test uses fresh upper-case run ids. The test that restarts the shared
Kafka and Redis lives in test_worker_restarts.py, which runs alone.
"""

import json
import os
import re
import shutil
import signal
import socket
import time
import unittest
import uuid

import harness

KAFKA = harness.kafka_brokers()
LEASE_MS = 5000


def read_dlq(topic, brokers=KAFKA):
    """Every message of the dead-letter topic as text lines (headers, key, value)."""
    return ["%s\t%s\t%s" % (",".join("%s:%s" % kv for kv in m["headers"].items()), m["key"],
                             m["value"]) for m in harness.read_topic(topic, brokers)]


class Redis(harness.RespClient):
    """The tests' Redis client: reconnects once, and a run read while Redis
    is down reads as absent."""

    def __init__(self, port, db=0, host="127.0.0.1"):
        super().__init__(port, db=db, host=host, retries=1)

    def run(self, run_id):
        try:
            return super().run(run_id)
        except (OSError, ConnectionError):
            return {}


def services_up(brokers=KAFKA):
    host, _, port = brokers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return all(shutil.which(t) for t in ("kcat", "redis-server", "redis-cli"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def message(run, job_id=None):
    """A schema-1 run message for a platform scenario run (document paths without query)."""
    run = json.loads(json.dumps(run))
    for d in run.get("documents", []):
        d.pop("_gen", None)
        d["document_path"] = "http://unused.invalid/" + d["document_name"]
    cred = {"source": "job", "job_id": job_id} if job_id else {"source": "config"}
    return json.dumps({"schema": 1, "run_id": run["vision_analysis_id"],
                       "organization_id": run["organization_id"],
                       "run_code": run["vision_analysis_run_code"], "credentials": cred,
                       "execution_id": None, "trace_id": uuid.uuid4().hex, "attempt": 1,
                       "published_at": "2026-01-01T00:00:00Z", "run": run})


class WorkerCase(harness.SystemTestCase):
    """Helpers of the worker tests (no tests of its own): a private Redis
    for the class, private topics and group per test on the Kafka at
    ``kafka``."""

    kafka = KAFKA

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not services_up(cls.kafka):
            # A missing service is a failure, not a skip: the suite must not pass empty.
            raise AssertionError("Kafka (deploy/local/services.sh start), kcat or redis-server "
                                 "missing")
        cls.redis_server = harness.RedisServer()
        cls.addClassCleanup(cls.redis_server.stop)
        cls.redis_port, cls.redis_db = cls.redis_server.port, 0

    def setUp(self):
        super().setUp()
        harness.require_binary("visionbatch-worker")
        self.redis = Redis(self.redis_port, self.redis_db)
        self.addCleanup(self.redis.close)
        self.addCleanup(self.check_state_index)  # after the programs have stopped
        self.seed = uuid.uuid4().hex[:8]
        self.topic, self.dlq = harness.private_topics(self, ("vb-worker", 4), ("vb-worker-dlq", 1),
                                                      brokers=self.kafka)
        self.group = harness.unique_name("vb-workers")

    def check_state_index(self):
        """Every run the test's workers and producers moved is in the per-state
        index of its state only (read in one script, so exact)."""
        try:
            problems = harness.state_index_problems(self.redis.cmd)
        except (OSError, ConnectionError):
            return  # Redis is down at the end of a restart test: nothing to read
        self.assertEqual(problems, [], "per-state run indexes disagree with the records")

    def publish(self, pairs):
        """Publishes (key, value) pairs to this test's runs topic."""
        harness.kcat_publish(self.topic, pairs, self.kafka)

    def scenario(self, n, images=1):
        scen = harness.make_scenario(n, images, seed=self.seed + "-%d" % time.time_ns())
        for r in scen["runs"]:  # fresh random ids, upper case
            new = str(uuid.uuid4()).upper()
            for d in r["documents"]:
                d["vision_analysis_id"] = new
            r["vision_analysis_id"] = new
        return scen

    def start_stubs(self, n, images=1, batch_delay=None):
        scen = self.scenario(n, images)
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(batch_delay=batch_delay, polls_to_complete=1)
        return scen, platform, backend

    def start_worker(self, platform, backend, name, concurrency=2, grace=60, extra=()):
        cfg = harness.processor_config(
            platform, backend, redis_url=self.redis.url, kafka_brokers=self.kafka, topic=self.topic,
            dlq_topic=self.dlq, group_id=self.group, lease_ms=LEASE_MS, log_file="",
            temp_dir=os.path.join(self.tmp, "work-" + name), status_poll_min_ms=100,
            status_poll_max_ms=500, retry_base_ms=100, retry_max_ms=1000)
        path = self.write_config(cfg, name="%s.json" % name)
        port = free_port()
        wid = "%s-%s" % (name, self.seed)
        p = self.start_program("visionbatch-worker", "--config", path, "--concurrency",
                               str(concurrency), "--metrics-listen", "127.0.0.1:%d" % port,
                               "--worker-id", wid, "--shutdown-grace-s", str(grace), *extra)
        p.worker_id, p.port, p.config = wid, port, path
        harness.wait_until(lambda: self.healthy(p), timeout=30, message="worker %s healthy" % name)
        return p

    def healthy(self, p):
        if not p.alive():
            raise AssertionError("worker died:\n" + p.stderr()[-3000:])
        try:
            return harness.http_request("GET", "http://127.0.0.1:%d/healthz" % p.port,
                                        timeout=2).status == 200
        except OSError:
            return False

    def uploads_by_run(self, platform):
        return {r["vision_analysis_id"]: r["uploads"] for r in platform.records()["runs"]}

    def wait_uploaded(self, platform, ids, timeout, workers=()):
        def done():
            for w in workers:
                if not w.alive() and getattr(w, "must_live", True):
                    raise AssertionError("worker exited:\n" + w.stderr()[-3000:])
            counts = self.uploads_by_run(platform)
            return all(counts.get(i, 0) >= 1 for i in ids) and all(
                self.redis.run(i).get("state") == "uploaded" for i in ids)
        harness.wait_until(done, timeout=timeout, interval=0.5,
                           message="%d runs uploaded" % len(ids))

    def assert_once(self, platform, ids):
        counts = self.uploads_by_run(platform)
        dup = {i: counts.get(i, 0) for i in ids if counts.get(i, 0) != 1}
        self.assertEqual(dup, {}, "runs not uploaded exactly once")


class WorkerTest(WorkerCase):
    def test_two_workers_upload_fifty_runs_exactly_once(self):
        scen, platform, backend = self.start_stubs(50)
        w1 = self.start_worker(platform, backend, "a1")
        w2 = self.start_worker(platform, backend, "a2")
        # Both in the group before the runs arrive: otherwise w1, alone with
        # every partition, may fetch and finish them all before w2 joins.
        harness.wait_until(lambda: re.search(r"kafka: [1-9]\d* partition\(s\) assigned",
                                             w2.stderr()),
                           timeout=60, interval=0.2, message="w2 assigned partitions")
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.publish([(r["vision_analysis_id"], message(r)) for r in scen["runs"]])
        self.wait_uploaded(platform, ids, timeout=120, workers=(w1, w2))
        time.sleep(1)
        self.assert_once(platform, ids)
        workers = {self.redis.run(i).get("worker") for i in ids}
        self.assertEqual(workers, {w1.worker_id, w2.worker_id}, "both workers should take runs")
        metrics = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % w1.port).text()
        self.assertIn('visionbatch_runs_total{outcome="uploaded"}', metrics)
        self.assertIn("visionbatch_run_duration_seconds_bucket", metrics)
        # Every uploaded run is counted once in each phase of the breakdown.
        uploaded = int(float(re.search(r'^visionbatch_runs_total\{outcome="uploaded"\} (\S+)$',
                                       metrics, re.M).group(1)))
        self.assertGreater(uploaded, 0)
        phases = {k: int(float(v)) for k, v in re.findall(
            r'^visionbatch_run_phase_seconds_count\{phase="(\w+)"\} (\S+)$', metrics, re.M)}
        self.assertEqual(phases, {p: uploaded for p in ("claim", "open", "download", "submit",
                                                        "wait", "report", "upload", "record")})
        wait_s = float(re.search(r'^visionbatch_run_phase_seconds_sum\{phase="wait"\} (\S+)$',
                                 metrics, re.M).group(1))
        self.assertGreater(wait_s, 0.0)

    def test_kill_nine_mid_run_is_taken_over_without_duplicate_upload(self):
        scen, platform, backend = self.start_stubs(8, batch_delay=4)
        w1 = self.start_worker(platform, backend, "b1")
        w2 = self.start_worker(platform, backend, "b2")
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.publish([(i, message(r)) for i, r in zip(ids, scen["runs"])])

        def w1_busy():
            return [i for i in ids if self.redis.run(i).get("state") == "processing"
                    and self.redis.run(i).get("worker") == w1.worker_id]
        victims = harness.wait_until(w1_busy, timeout=60, interval=0.2, message="w1 busy")
        w1.signal(signal.SIGKILL)
        w1.wait(5)
        killed_at = time.time()
        w1.must_live = False
        taken = {}

        def taken_over():
            for i in victims:
                st = self.redis.run(i)
                if i not in taken and st.get("worker") not in (None, w1.worker_id):
                    taken[i] = time.time() - killed_at
            return len(taken) == len(victims)
        harness.wait_until(taken_over, timeout=LEASE_MS / 1000 + 40, interval=0.2,
                           message="takeover of %s" % victims)
        self.wait_uploaded(platform, ids, timeout=120, workers=(w2,))
        time.sleep(1)
        self.assert_once(platform, ids)
        worst = max(taken.values())
        print("\ntakeover after kill -9: %s s (lease %d ms)"
              % (", ".join("%.1f" % t for t in sorted(taken.values())), LEASE_MS))
        self.assertLess(worst, LEASE_MS / 1000 + 30)

    def test_kill_nine_leaves_run_dirs_the_next_worker_sweeps(self):
        # Batches of 15 s keep every run in flight while the workers come and go.
        scen, platform, backend = self.start_stubs(2, batch_delay=15)
        work = os.path.join(self.tmp, "work-shared")
        w1 = self.start_worker(platform, backend, "k1", extra=("--temp-dir", work))
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.publish([(i, message(r)) for i, r in zip(ids, scen["runs"])])

        def run_dirs():
            return sorted(n for n in os.listdir(work) if n.startswith("run-")) \
                if os.path.isdir(work) else []
        dead = harness.wait_until(lambda: len(run_dirs()) == 2 and run_dirs(), timeout=60,
                                  interval=0.2, message="two runs in flight on k1")
        w1.signal(signal.SIGKILL)
        w1.wait(5)
        w1.must_live = False
        self.assertEqual(run_dirs(), dead, "kill -9 leaves the run dirs behind")

        # The next worker on the same temp_dir removes them before it takes work…
        w2 = self.start_worker(platform, backend, "k2",
                               extra=("--temp-dir", work, "--temp-sweep-interval-s", "1"))
        self.assertEqual(set(run_dirs()) & set(dead), set())
        self.assertIn("temp sweep: removed", w2.stderr())
        # …and, periodically, what dies while it runs (a run dir whose lock nobody holds).
        late = os.path.join(work, "run-late-ABCDEFGHIJKL")
        os.mkdir(late, 0o700)
        with open(os.path.join(late, ".lock"), "w") as f:
            f.write("1\n")
        harness.wait_until(lambda: not os.path.exists(late), timeout=15,
                           message="periodic sweep of a dead run dir")
        # …and a third one, started while k2 works on the runs it took over,
        # leaves k2's directories alone.
        live = harness.wait_until(lambda: run_dirs(), timeout=LEASE_MS / 1000 + 40,
                                  interval=0.2, message="k2 took a run over")
        w3 = self.start_worker(platform, backend, "k3", extra=("--temp-dir", work))
        self.assertTrue(set(live) <= set(run_dirs()), "a live worker's run dir was swept")
        self.wait_uploaded(platform, ids, timeout=120, workers=(w2, w3))
        self.assert_once(platform, ids)
        harness.wait_until(lambda: run_dirs() == [], timeout=10, message="run dirs removed")

    def test_duplicate_messages_upload_once(self):
        scen, platform, backend = self.start_stubs(4, batch_delay=1)
        w = self.start_worker(platform, backend, "c1")
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        msgs = [(i, message(r)) for i, r in zip(ids, scen["runs"])]
        self.publish(msgs + msgs)
        self.wait_uploaded(platform, ids, timeout=60, workers=(w,))
        def skips(i):
            return len(re.findall(r"run %s(?::| is locked).*message skipped" % i, w.stderr()))
        before = {i: skips(i) for i, _ in msgs[:2]}
        self.publish(msgs[:2])  # again, after they are done
        # Positive signal first: the worker took both messages and skipped them.
        harness.wait_until(lambda: all(skips(i) > before[i] for i in before), timeout=60,
                           interval=0.2, message="the redelivered messages skipped")
        self.assert_once(platform, ids)
        self.assertTrue(w.alive())

    def test_run_hidden_from_one_scan_is_still_processed(self):
        """The platform pages by offset: runs finished elsewhere while a worker
        pages shift later runs forward, so one scan can miss a run that is still
        unprocessed. The worker must not take that for "already processed"."""
        scen, platform, backend = self.start_stubs(1)
        empty = {"code": 200, "status": "success",
                 "data": {"page": 1, "page_size": 50, "total": 0, "vision_analysis": []}}
        platform.faults(get=[{"body": empty}])  # the worker's first scan sees nothing
        w = self.start_worker(platform, backend, "h1")
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.publish([(ids[0], message(scen["runs"][0]))])
        self.wait_uploaded(platform, ids, timeout=60, workers=(w,))
        self.assert_once(platform, ids)
        self.assertEqual(platform.pending_faults().get("get", []), [])

    def test_encoded_secret_in_a_platform_error_is_masked_everywhere(self):
        """A platform error body echoing a percent-encoded URL with its SAS
        signature: the log, the run's last_error and the DLQ vb-reason show
        `sig%3D***`, never the signature."""
        scen, platform, backend = self.start_stubs(1)
        secret = "EncSig" + uuid.uuid4().hex
        body = {"detail": "cannot use url=https%3A%2F%2Fblob%2Fc%3Fsv%3D1%26sig%3D" + secret +
                          "%26se%3D2030 (or sig%253D" + secret + ")"}
        platform.faults(get=[{"status": 422, "body": body}])  # permanent: dead at once
        w = self.start_worker(platform, backend, "s1")
        rid = scen["runs"][0]["vision_analysis_id"]
        self.publish([(rid, message(scen["runs"][0]))])
        harness.wait_until(lambda: self.redis.run(rid).get("state") == "dead", timeout=60,
                           interval=0.5, message="the run dead")
        last_error = self.redis.run(rid).get("last_error", "")
        self.assertIn("API returned 422", last_error)
        self.assertIn("sig%3D***%26se%3D2030", last_error)
        self.assertIn("sig%253D***", last_error)
        lines = []

        def in_dlq():
            lines[:] = [ln for ln in read_dlq(self.dlq, self.kafka) if rid in ln]
            return any("vb-reason:" in ln for ln in lines)
        harness.wait_until(in_dlq, timeout=60, interval=1, message="the run in the DLQ")
        self.assertIn("sig%3D***", "\n".join(lines))
        for where, text in (("log", w.stderr()), ("last_error", last_error),
                            ("vb-reason", "\n".join(lines))):
            self.assertNoSecrets(text, (secret,), msg="secret in the " + where)
        self.assertEqual(self.uploads_by_run(platform).get(rid, 0), 0)

    def test_poison_messages_go_to_dlq_and_work_goes_on(self):
        scen, platform, backend = self.start_stubs(2)
        w = self.start_worker(platform, backend, "d1")
        tag = uuid.uuid4().hex
        bad_id = "BAD ID " + tag
        poison = [
            ("P1-" + tag, "this is not json " + tag),
            ("P2-" + tag, json.dumps({"schema": 99, "tag": tag})),
            ("P3-" + tag, json.dumps({"schema": 1, "run_id": bad_id,
                                      "credentials": {"source": "config"}})),
        ]
        job_run = scen["runs"][1]
        ids = [scen["runs"][0]["vision_analysis_id"]]
        self.publish(poison + [(ids[0], message(scen["runs"][0])),
                               (job_run["vision_analysis_id"], message(job_run, job_id="JOB-" + tag))])
        self.wait_uploaded(platform, ids, timeout=60, workers=(w,))
        lines = []

        def dlq_has_all():
            lines[:] = [ln for ln in read_dlq(self.dlq, self.kafka)
                        if tag in ln or job_run["vision_analysis_id"] in ln]
            keys = ["P1-", "P2-", "P3-"]
            return all(any(k + tag in ln for ln in lines) for k in keys) and any(
                job_run["vision_analysis_id"] in ln for ln in lines)
        harness.wait_until(dlq_has_all, timeout=60, interval=1, message="poison in the DLQ")
        text = "\n".join(lines)
        self.assertIn("vb-reason:", text)
        self.assertIn("credentials unavailable", text)
        self.assertIn("schema", text)
        self.assertEqual(self.uploads_by_run(platform).get(job_run["vision_analysis_id"], 0), 0)
        self.assertTrue(w.alive())

    def test_sigterm_drains_runs_in_flight_and_exits_zero(self):
        scen, platform, backend = self.start_stubs(2, batch_delay=3)
        w = self.start_worker(platform, backend, "e1", grace=30)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        self.publish([(i, message(r)) for i, r in zip(ids, scen["runs"])])
        harness.wait_until(lambda: all(self.redis.run(i).get("state") == "processing"
                                       for i in ids), timeout=60, interval=0.2,
                           message="both runs in flight")
        w.signal(signal.SIGTERM)
        rc = w.wait(40)
        self.assertEqual(rc, 0, w.stderr()[-3000:])
        self.assertEqual({self.redis.run(i).get("state") for i in ids}, {"uploaded"})
        self.assert_once(platform, ids)
        self.assertIn("stopping: intake closed", w.stderr())

    def test_sigterm_after_grace_hands_runs_back_uncounted(self):
        scen, platform, backend = self.start_stubs(1, batch_delay=30)
        w = self.start_worker(platform, backend, "e2", grace=1)
        rid = scen["runs"][0]["vision_analysis_id"]
        self.publish([(rid, message(scen["runs"][0]))])
        harness.wait_until(lambda: self.redis.run(rid).get("state") == "processing",
                           timeout=60, interval=0.2, message="run in flight")
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(30), 0, w.stderr()[-3000:])
        st = self.redis.run(rid)
        self.assertIn(st.get("state"), ("failed", "queued"))
        self.assertEqual(st.get("attempts"), "0")
        self.assertIn("handed back", st.get("last_error", ""))
        self.assertIsNone(self.redis.cmd("GET", "visionbatch:lock:" + rid))


if __name__ == "__main__":
    unittest.main()
