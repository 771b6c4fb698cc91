"""System tests of the cron-jobs REST API served by visionbatch-producer.

The guide's curl flow against the real service (real Kafka with topics of
the class's own, a private Redis), firing a job through the API's run
endpoint publishes its runs with the job as credentials source (never the key
itself) and a worker finishes the execution, and the API's security rules
(token required off loopback). When the scheduler fires on its own — each
tick once across producers sharing a Redis, catch-up windows, overlap — is
proven with an injected clock in tests/unit/test_scheduler.c, so nothing
here waits for a minute boundary.
"""

import base64
import json
import os
import socket
import subprocess
import time
import unittest
import uuid

import harness
from test_producer import BROKERS, end_offsets, kafka_ok, messages_since

SECRET_KEY = base64.b64encode(b"k" * 32).decode()
GUIDE_JOB = {
    "name": "Test Vision Analysis Job",
    "schedule": "0 * * * *",
    "external_api_get_url": "https://api.example.com/api/v1/documents/vision_analysis",
    "external_api_post_url": "https://api.example.com/api/v1/documents/vision_analysis/upload",
    "external_api_key": "your_jwt_token",
    "backend_api_url": "http://localhost:8000",
    "organization_id": "your_org_id",
    "enabled": False,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_names(pid):
    """The names (comm) of the threads of process ``pid``; librdkafka names
    the main thread of each client instance "rdk:main"."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names


class CronApiTest(harness.SystemTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.require_binary("visionbatch-producer")
        if not kafka_ok():
            raise AssertionError("Kafka unavailable at %s: start deploy/local/services.sh"
                                 % BROKERS)
        cls.topic = harness.private_topics(cls, ("vb-cron", 2))[0]
        cls.redis = harness.RedisServer()
        cls.redis_url = "redis://127.0.0.1:%d/0" % cls.redis.port

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.redis_cli("FLUSHDB")  # the private Redis of this class: jobs of other tests go

    def redis_cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.redis.port)] + [str(a) for a in args],
                           capture_output=True, timeout=10, check=True)
        return r.stdout.decode()

    def start_producer(self, *args, listen=None, env=None):
        port = free_port()
        listen = listen or "127.0.0.1:%d" % port
        e = {"VISIONBATCH_SECRET_KEY": SECRET_KEY, "REDIS_URL": self.redis_url,
             "KAFKA_BROKERS": BROKERS, "VISIONBATCH_LOG_FILE": os.path.join(self.tmp, "p.log"),
             "VISIONBATCH_CONFIG": self.write_config({"topic": self.topic}, "base.json")}
        e.update(env or {})
        proc = self.start_program("visionbatch-producer", "--listen", listen, *args, env=e)
        base = "http://127.0.0.1:%s" % listen.rsplit(":", 1)[1]
        token = e.get("VISIONBATCH_API_TOKEN")
        harness.wait_until(lambda: self._ready(base, proc, token), timeout=30,
                           message="producer ready")
        return proc, base

    def start_cron_worker(self, topic, **settings):
        """A worker on `topic` with no platform settings of its own (cron-job
        runs carry theirs); `settings` add to or override its config."""
        cfg = {
            "redis_url": self.redis_url, "kafka_brokers": BROKERS, "topic": topic,
            "group_id": "visionbatch-cron-" + uuid.uuid4().hex[:8], "log_file": "",
            "temp_dir": os.path.join(self.tmp, "work"), "status_poll_min_ms": 50,
            "metrics_listen": "127.0.0.1:%d" % free_port(),
        }
        cfg.update(settings)
        return self.start_program("visionbatch-worker", "--config",
                                  self.write_config(cfg, "worker.json"),
                                  env={"VISIONBATCH_SECRET_KEY": SECRET_KEY})

    def _ready(self, base, proc, token):
        """/readyz answers 200: connected, and the scheduler takes "run now"."""
        if not proc.alive():
            raise AssertionError("producer exited: %s" % proc.stderr()[-2000:])
        headers = {"Authorization": "Bearer " + token} if token else {}
        try:
            return harness.http_request("GET", base + "/readyz", headers=headers,
                                        timeout=5).status == 200
        except OSError:
            return False

    def call(self, method, url, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        return harness.http_request(method, url, body=data, headers=headers)

    # ---- the guide's flow, verbatim shapes ----

    def test_guide_curl_flow(self):
        proc, base = self.start_producer()
        r = self.call("POST", base + "/cron-jobs", GUIDE_JOB)
        self.assertEqual(r.status, 201, r.text())
        created = r.json()
        self.assertEqual(set(created), {"status", "job_id", "name", "schedule", "enabled"})
        self.assertEqual((created["status"], created["name"], created["schedule"], created["enabled"]),
                         ("success", GUIDE_JOB["name"], "0 * * * *", False))
        jid = created["job_id"]
        job = self.call("GET", base + "/cron-jobs/" + jid).json()
        self.assertEqual(job["config"]["external_api_key"], "***")
        self.assertEqual(job["config"]["organization_id"], "your_org_id")
        self.assertTrue(job["next_run"].endswith(":00:00Z"), job["next_run"])
        for k in ("job_id", "name", "schedule", "config", "enabled", "scheduled", "next_run",
                  "created_at", "updated_at"):
            self.assertIn(k, job)
        act = self.call("POST", base + "/cron-jobs/%s/activate" % jid).json()
        self.assertEqual(act, {"status": "success", "message": "Cron job %s activated" % jid})
        listed = self.call("GET", base + "/cron-jobs?enabled_only=true").json()["cron_jobs"]
        self.assertEqual([j["job_id"] for j in listed], [jid])
        ex = self.call("GET", base + "/cron-jobs/%s/executions?limit=20" % jid).json()
        self.assertEqual(ex, {"job_id": jid, "executions": []})
        self.call("POST", base + "/cron-jobs/%s/deactivate" % jid)
        self.assertEqual(self.call("GET", base + "/cron-jobs?enabled_only=true").json()["cron_jobs"], [])
        d = self.call("DELETE", base + "/cron-jobs/" + jid).json()
        self.assertEqual(d["message"], "Cron job %s deleted" % jid)
        self.assertEqual(self.call("GET", base + "/cron-jobs/" + jid).status, 404)
        # The key never reached Redis, the logs or an answer in plaintext.
        self.assertNotIn("your_jwt_token", self.redis_cli("--no-raw", "KEYS", "*"))
        self.assertNotIn("your_jwt_token", proc.stderr())

    def test_firing_a_job_publishes_its_runs_without_secrets(self):
        scen = harness.make_scenario(2, 1, seed=uuid.uuid4().hex[:10])
        platform = self.start_platform(scenario=scen)
        proc, base = self.start_producer()
        body = dict(GUIDE_JOB, external_api_get_url=platform.get_url,
                    external_api_post_url=platform.post_url, external_api_key=platform.api_key,
                    organization_id=harness.GUIDE_ORG_ID, enabled=True)
        jid = self.call("POST", base + "/cron-jobs", body).json()["job_id"]
        stored = self.redis_cli("HGETALL", "visionbatch:job:" + jid)
        self.assertNotIn(platform.api_key, stored)
        before = end_offsets(self.topic)
        r = self.call("POST", base + "/cron-jobs/%s/run" % jid)
        self.assertEqual(r.status, 202, r.text())
        eid = r.json()["execution_id"]

        def published():
            for e in self.call("GET", base + "/cron-jobs/%s/executions" % jid).json()["executions"]:
                if e["execution_id"] == eid and int(e.get("runs_published", 0)) == 2:
                    return e
            return None
        execution = harness.wait_until(published, timeout=30, message="2 runs published")
        self.assertEqual(execution["status"], "running")  # until workers finish them
        ids = {r["vision_analysis_id"] for r in scen["runs"]}
        msgs = [m for m in messages_since(self.topic, before) if (m["key"] or "").upper() in ids]
        self.assertEqual(len(msgs), 2)
        for m in msgs:
            value = json.loads(m["value"])
            self.assertEqual(value["credentials"], {"source": "job", "job_id": jid})
            self.assertEqual(value["execution_id"], eid)
            self.assertEqual(m["headers"].get("vb-source"), "cron")
            self.assertNoSecrets(m["value"], secrets=(platform.api_key,))
        # The run state is visible through the API.
        rid = next(iter(ids))
        st = self.call("GET", base + "/runs/" + rid).json()
        self.assertEqual(st["state"], "queued")
        self.assertEqual(st["execution_id"], eid)
        self.assertEqual(self.call("GET", base + "/runs/NOPE-" + uuid.uuid4().hex).status, 404)
        self.assertNoSecrets(proc.stderr(), secrets=(platform.api_key,))

    def test_cron_run_end_to_end_through_a_worker(self):
        """A job fired through the API: a worker processes its runs with the job's
        credentials (no platform settings of its own) and the execution ends
        success with the backend batch ids."""
        topic = harness.private_topics(self, ("vb-cron-e2e", 2))[0]
        scen = harness.make_scenario(2, 2, seed=uuid.uuid4().hex[:10])
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1)
        _, base = self.start_producer("--topic", topic)
        worker = self.start_cron_worker(topic, concurrency=2)
        body = dict(GUIDE_JOB, schedule="0 0 1 1 *", external_api_get_url=platform.get_url,
                    external_api_post_url=platform.post_url, external_api_key=platform.api_key,
                    backend_api_url=backend.url, organization_id=harness.GUIDE_ORG_ID,
                    enabled=True)
        jid = self.call("POST", base + "/cron-jobs", body).json()["job_id"]
        eid = self.call("POST", base + "/cron-jobs/%s/run" % jid).json()["execution_id"]

        def finished():
            for e in self.call("GET", base + "/cron-jobs/%s/executions" % jid).json()["executions"]:
                if e["execution_id"] == eid and e["status"] not in ("running",):
                    return e
            return None
        e = harness.wait_until(finished, timeout=90, message="execution finished")
        self.assertEqual(e["status"], "success", e)
        self.assertEqual(int(e["runs_published"]), 2)
        uploads = [u for u in platform.uploads() if u["status"] == 200]
        self.assertEqual(sorted(u["fields"]["vision_analysis_id"] for u in uploads),
                         sorted(r["vision_analysis_id"] for r in scen["runs"]))
        batch_ids = {b["batch_id"] for b in backend.batches()}
        self.assertEqual(set(e["batch_id"].split(",")), batch_ids)
        self.assertNoSecrets(worker.stderr(), secrets=(platform.api_key,))
        # Producer and worker share the key: each run came sealed in its message.
        self.assertNotIn("looking the run up on the platform", worker.stderr())

    def test_parallel_firings_share_one_kafka_producer(self):
        """Four jobs due in one pass fire on four slots at once, through the one
        Kafka producer of the process (one librdkafka instance: one "rdk:main"
        thread), and each execution counts exactly the runs published for it."""
        scen = harness.make_scenario(4, 1, seed=uuid.uuid4().hex[:10])
        platform = self.start_platform(scenario=scen)
        # Each firing's first GET waits 2 s, so the four firings overlap.
        platform.faults(get=[{"delay": 2.0}] * 4)
        proc, base = self.start_producer("--cron-fire-threads", "4")
        now = int(time.time())
        # Hourly at the minute of 2 minutes ago: exactly one tick due once the
        # last tick is put 5 minutes back, and no other tick during the test.
        minute = time.gmtime(now - 120).tm_min
        body = dict(GUIDE_JOB, schedule="%d * * * *" % minute,
                    external_api_get_url=platform.get_url,
                    external_api_post_url=platform.post_url, external_api_key=platform.api_key,
                    organization_id=harness.GUIDE_ORG_ID, enabled=True)
        jids = [self.call("POST", base + "/cron-jobs", body).json()["job_id"] for _ in range(4)]
        threads_idle = thread_names(proc.pid)
        for jid in jids:
            self.redis_cli("HSET", "visionbatch:job:" + jid, "last_tick", now - 300)
        before = end_offsets(self.topic)
        self.redis_cli("INCR", "visionbatch:jobs:version")  # reload: all four due in one pass

        def fired():
            execs = []
            for jid in jids:
                ex = self.call("GET", base + "/cron-jobs/%s/executions" % jid).json()["executions"]
                done = [e for e in ex if e["status"] != "skipped"]
                if not done:
                    return None
                execs += done
            return execs if sum(int(e.get("runs_published", 0)) for e in execs) == 4 else None
        execs = harness.wait_until(fired, timeout=60, message="four firings, four runs published")
        gets = sorted(g["time"] for g in platform.gets() if g["query"].get("page") == "1")
        self.assertEqual(len(gets), 4)
        self.assertLess(gets[-1] - gets[0], 2.0, "the four firings did not overlap")
        threads = thread_names(proc.pid)
        print("producer threads: %d idle (%d rdk:main), %d after four parallel firings "
              "(%d rdk:main)" % (len(threads_idle), threads_idle.count("rdk:main"),
                                 len(threads), threads.count("rdk:main")))
        self.assertEqual(threads.count("rdk:main"), 1, threads)
        # Every run went out once, and each execution counts its own publishes.
        ids = {r["vision_analysis_id"] for r in scen["runs"]}
        msgs = [m for m in messages_since(self.topic, before) if (m["key"] or "").upper() in ids]
        self.assertEqual(sorted(m["key"].upper() for m in msgs), sorted(ids))
        per_exec = {}
        for m in msgs:
            eid = json.loads(m["value"])["execution_id"]
            per_exec[eid] = per_exec.get(eid, 0) + 1
        for e in execs:
            self.assertEqual(int(e.get("runs_published", 0)), per_exec.get(e["execution_id"], 0), e)

    # ---- security ----

    def test_non_loopback_needs_a_token(self):
        port = free_port()
        res = harness.run_binary("visionbatch-producer", ["--listen", "0.0.0.0:%d" % port],
                                 env={"REDIS_URL": self.redis_url, "KAFKA_BROKERS": BROKERS,
                                      "VISIONBATCH_LOG_FILE": "",
                                      "VISIONBATCH_CONFIG": self.write_config({}, "e.json")},
                                 timeout=30)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("token", res.output)
        token = uuid.uuid4().hex
        _, base = self.start_producer(listen="0.0.0.0:%d" % free_port(),
                                      env={"VISIONBATCH_API_TOKEN": token})
        self.assertEqual(self.call("GET", base + "/cron-jobs").status, 401)
        self.assertEqual(self.call("GET", base + "/cron-jobs", token="wrong").status, 401)
        self.assertEqual(self.call("GET", base + "/cron-jobs", token=token).status, 200)
        self.assertEqual(self.call("GET", base + "/healthz").status, 200)

    def test_bad_bodies_are_rejected_with_detail(self):
        _, base = self.start_producer()
        cases = [
            (b"{not json", 400),
            (json.dumps(dict(GUIDE_JOB, schedule="61 * * * *")).encode(), 400),
            (json.dumps({k: v for k, v in GUIDE_JOB.items() if k != "name"}).encode(), 400),
            (json.dumps(dict(GUIDE_JOB, extra=1)).encode(), 400),
            (b"{" + b" " * 70000 + b"}", 413),
        ]
        for body, status in cases:
            r = self.call("POST", base + "/cron-jobs", body)
            self.assertEqual(r.status, status, body[:80])
            self.assertIn("detail", r.json())
        self.assertIn("minute", self.call("POST", base + "/cron-jobs",
                                          dict(GUIDE_JOB, schedule="61 * * * *")).json()["detail"])
        self.assertEqual(self.call("PATCH", base + "/cron-jobs").status, 405)

    def test_jitter_is_stored_shown_and_validated(self):
        _, base = self.start_producer()
        self.assertEqual(self.call("GET", base + "/cron-jobs/%s" % self.create(base)).json()
                         ["jitter_s"], 0)
        jid = self.create(base, jitter_s=45)
        self.assertEqual(self.call("GET", base + "/cron-jobs/" + jid).json()["jitter_s"], 45)
        r = self.call("PUT", base + "/cron-jobs/" + jid, {"jitter_s": 3600})
        self.assertEqual((r.status, r.json()["jitter_s"]), (200, 3600), r.text())
        for bad in (-1, 3601, 2.5, "10"):
            r = self.call("POST", base + "/cron-jobs", dict(GUIDE_JOB, jitter_s=bad))
            self.assertEqual(r.status, 400, bad)
            self.assertIn("jitter_s must be an integer from 0 (off) to 3600", r.json()["detail"])

    def create(self, base, **fields):
        r = self.call("POST", base + "/cron-jobs", dict(GUIDE_JOB, **fields))
        self.assertEqual(r.status, 201, r.text())
        return r.json()["job_id"]


if __name__ == "__main__":
    unittest.main()
