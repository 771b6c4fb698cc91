"""System tests of the worker at the edges: a worker paused mid-upload, an
outage longer than the lease, run ids with ':', a run Redis fails for.

Same services and conventions as test_worker.py (real Kafka and Redis from
deploy/local/services.sh, Redis database 12, fresh upper-case run ids, the
shared runs topic and consumer group); the stand-ins run per test. Leases are
short (2 s) so the takeovers and backoffs these tests wait for stay quick.

Freezing a worker is made deterministic by the stand-in platform: its
`{"hold": s}` upload fault keeps the upload request (received in full) until
the test releases it, so the test knows the worker is inside its upload call
when it sends SIGSTOP.
"""

import os
import signal
import time
import unittest
import uuid

import harness
import test_worker as tw

LEASE_MS = 2000
UPLOAD_TIMEOUT_S = 30  # an upload attempt's deadline: the takeover waits for it


class WorkerEdgeTest(harness.SystemTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not tw.services_up():
            raise AssertionError("Kafka/Redis (deploy/local/services.sh start) or Kafka tools "
                                 "missing")

    def setUp(self):
        super().setUp()
        harness.require_binary("visionbatch-worker")
        self.redis = tw.Redis()
        self.addCleanup(self.redis.close)
        self.seed = uuid.uuid4().hex[:8]

    scenario = tw.WorkerTest.scenario
    healthy = tw.WorkerTest.healthy
    uploads_by_run = tw.WorkerTest.uploads_by_run
    assert_once = tw.WorkerTest.assert_once

    def start_stubs(self, n, batch_delay=None):
        scen = self.scenario(n)
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(batch_delay=batch_delay, polls_to_complete=1)
        return scen, platform, backend

    def settings(self, platform, backend, name, **extra):
        cfg = harness.processor_config(
            platform, backend,
            redis_url="redis://%s:%d/%d" % (tw.REDIS_HOST, tw.REDIS_PORT, tw.REDIS_DB),
            kafka_brokers=tw.KAFKA, group_id=tw.GROUP, lease_ms=LEASE_MS, log_file="",
            temp_dir=os.path.join(self.tmp, "work-" + name), status_poll_min_ms=100,
            status_poll_max_ms=500, retry_base_ms=100, retry_max_ms=1000,
            upload_timeout_s=UPLOAD_TIMEOUT_S)
        cfg.update(extra)
        return self.write_config(cfg, name="%s.json" % name)

    def start_worker(self, platform, backend, name, concurrency=2, **extra):
        path = self.settings(platform, backend, name, **extra)
        port = tw.free_port()
        wid = "%s-%s" % (name, self.seed)
        p = self.start_program("visionbatch-worker", "--config", path, "--concurrency",
                               str(concurrency), "--metrics-listen", "127.0.0.1:%d" % port,
                               "--worker-id", wid)
        p.worker_id, p.port, p.config = wid, port, path
        harness.wait_until(lambda: self.healthy(p), timeout=30, message="worker %s healthy" % name)
        return p

    def state(self, run_id):
        return self.redis.run(run_id.upper())

    def held_upload(self, platform):
        return [u for u in platform.uploads() if u.get("held")]

    def freeze_in_upload(self, platform, scen, fault):
        """Starts worker A, lets it reach its report upload (held by the
        stand-in) and freezes it there. Returns (A, run id)."""
        platform.faults(upload=[fault])
        a = self.start_worker(platform, self.backend, "pa")
        rid = scen["runs"][0]["vision_analysis_id"]
        tw.publish([(rid, tw.message(scen["runs"][0]))])
        harness.wait_until(lambda: self.held_upload(platform), timeout=60, interval=0.1,
                           message="A's upload reaching the platform")
        a.signal(signal.SIGSTOP)
        self.addCleanup(a.signal, signal.SIGCONT)
        a.must_live = False
        return a, rid

    def resume_and_finish(self, a):
        a.signal(signal.SIGCONT)
        harness.wait_until(lambda: "run finished: outcome=" in a.stderr(), timeout=60,
                           interval=0.2, message="A finishing its run after the pause")

    # ------------------------------------------------------------------

    def test_paused_worker_does_not_send_its_upload_after_losing_the_lock(self):
        """A freezes with its upload answered 503 (the retry still to come),
        past its lease; B takes the run over and uploads; A resumes: its retry
        must not be sent (the pre-request lock check stops it)."""
        scen, platform, self.backend = self.start_stubs(1)
        a, rid = self.freeze_in_upload(platform, scen, {"hold": 120, "status": 503})
        platform.control("POST", "release")  # A's 503 waits in its socket
        b = self.start_worker(platform, self.backend, "pb")
        harness.wait_until(lambda: self.state(rid).get("state") == "uploaded", timeout=120,
                           interval=0.3, message="B uploading the run")
        self.assertEqual(self.state(rid).get("worker"), b.worker_id)
        self.resume_and_finish(a)
        self.assert_once(platform, [rid])
        # Stopped by the pre-request check, or — when the lease renewer
        # happens to notice first after the resume — by its cancel flag.
        self.assertIn("outcome=lease_lost", a.stderr())
        self.assertIn("may be in flight", b.stderr())

    def test_paused_upload_that_lands_late_is_not_repeated(self):
        """A freezes while the platform holds its upload; B takes the run over
        and must wait until A's upload can no longer be in flight before it
        asks the platform — by then A's upload has landed, so B skips."""
        scen, platform, self.backend = self.start_stubs(1)
        a, rid = self.freeze_in_upload(platform, scen, {"hold": 120})
        b = self.start_worker(platform, self.backend, "pb")

        def b_at_upload():
            st = self.state(rid)
            return st.get("worker") == b.worker_id and st.get("state") in ("uploading", "uploaded")
        harness.wait_until(b_at_upload, timeout=120, interval=0.1,
                           message="B reaching the upload of the run")
        platform.control("POST", "release")  # A's upload lands now
        harness.wait_until(lambda: self.state(rid).get("state") == "uploaded", timeout=120,
                           interval=0.3, message="B finishing the run")
        self.resume_and_finish(a)
        self.assert_once(platform, [rid])
        self.assertIn("upload skipped", b.stderr())

    def test_outage_of_three_leases_kills_no_run(self):
        """20 runs, a producer polling every second, two workers, and a blob
        store answering 503 for 3 × the lease: every run is uploaded once and
        none is dead — retries follow the backoff on every path. With 3
        attempts the backoff (lease, then 2 × lease) spans just those 3 leases,
        so any path retrying sooner (a claim republishing a failed run at once,
        a redelivery counted again) exhausts attempts inside the outage. Failed
        downloads are not retried within an attempt, so attempts fail fast."""
        scen, platform, self.backend = self.start_stubs(20)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        outage_s = 3 * LEASE_MS / 1000
        workers = [self.start_worker(platform, self.backend, "o%d" % i, concurrency=4,
                                     max_attempts=3, retries=0) for i in range(2)]
        pcfg = self.settings(platform, None, "producer", poll_interval_s=1, max_attempts=3)
        platform.config(blob_outage_until=time.time() + outage_s)
        prod = self.start_program("visionbatch-producer", "--config", pcfg, "--interval", "1")
        harness.wait_until(lambda: all(self.state(i).get("state") in ("uploaded", "dead")
                                       for i in ids), timeout=120, interval=0.5,
                           message="every run uploaded or dead")
        self.assertTrue(any(f["status"] == 503 for f in platform.file_fetches()),
                        "the outage was not seen")
        states = {i: self.state(i) for i in ids}
        self.assertEqual({i: s.get("state") for i, s in states.items()
                          if s.get("state") != "uploaded"}, {}, "runs dead after the outage")
        tw.WorkerTest.wait_uploaded(self, platform, ids, timeout=30, workers=workers)
        self.assert_once(platform, ids)
        attempts = sorted(int(s.get("attempts")) for s in states.values())
        print("\noutage %.0f s (lease %d ms): attempts per run %s" % (outage_s, LEASE_MS, attempts))
        self.assertLessEqual(max(attempts), 3)
        self.assertTrue(prod.alive(), prod.stderr()[-3000:])

    def test_run_id_with_colon_is_processed_in_distributed_mode(self):
        scen = self.scenario(2)
        colon = "ORG:%s" % uuid.uuid4().hex.upper()
        r = scen["runs"][0]
        for d in r["documents"]:
            d["vision_analysis_id"] = colon
        r["vision_analysis_id"] = colon
        platform = self.start_platform(scenario=scen)
        self.backend = self.start_backend(polls_to_complete=1)
        ids = [x["vision_analysis_id"] for x in scen["runs"]]
        w = self.start_worker(platform, self.backend, "c1")
        pcfg = self.settings(platform, None, "producer")
        res = self.run_program("visionbatch-producer", "--config", pcfg, "--once", timeout=90)
        self.assertEqual(res.returncode, 0, res)
        self.assertIn("published=2", res.stderr)
        try:
            tw.WorkerTest.wait_uploaded(self, platform, ids, timeout=60, workers=(w,))
        except AssertionError:
            raise AssertionError("runs not uploaded; worker log:\n" + w.stderr()[-4000:])
        self.assert_once(platform, ids)
        show = self.run_cli("runs", "show", colon.lower(), "--config", pcfg, "--json")
        self.assertEqual(show.returncode, 0, show)
        self.assertIn('"uploaded"', show.stdout)
        self.assertIn(colon, show.stdout)

    def test_one_run_redis_fails_for_does_not_stop_the_poll_pass(self):
        scen = self.scenario(3)
        platform = self.start_platform(scenario=scen)
        ids = [x["vision_analysis_id"] for x in scen["runs"]]
        bad = ids[0]  # listed first: the runs after it must still be published
        self.redis.cmd("SET", "visionbatch:run:" + bad, "not a hash")
        self.addCleanup(self.redis.cmd, "DEL", "visionbatch:run:" + bad)
        pcfg = self.settings(platform, None, "producer")
        port = tw.free_port()
        p = self.start_program("visionbatch-producer", "--config", pcfg, "--interval", "3600",
                               "--listen", "127.0.0.1:%d" % port)
        harness.wait_until(lambda: "poll summary" in p.stderr(), timeout=60, interval=0.2,
                           message="the first poll pass")
        summary = [ln for ln in p.stderr().splitlines() if "poll summary" in ln][0]
        self.assertIn("published=2", summary)
        self.assertIn("run_errors=1", summary)
        self.assertIn("not_attempted=0", summary)
        for i in ids[1:]:
            self.assertEqual(self.state(i).get("state"), "queued")
        metrics = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % port).text()
        self.assertIn('visionbatch_producer_run_errors_total{source="poll"} 1', metrics)


if __name__ == "__main__":
    unittest.main()
