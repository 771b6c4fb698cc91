"""System tests of the sealed run in the Kafka message: what a run costs the
platform, and every way back to the platform lookup.

A producer with the shared secret key seals each run (its document URLs
with their SAS signatures) into the message, bound to the run id; a worker
with the same key processes it without asking the platform. The tests run
the real producer (`--once`) and worker against the stand-ins on real Kafka
and a private Redis (test_worker.WorkerCase), and count the platform's list
GETs from its own records: the producer publishes the whole queue first, so
every GET after that is a worker's.
"""

import base64
import json
import os
import re
import time
import uuid

import harness
from test_worker import WorkerCase, message

KEY = base64.b64encode(b"sealed-run-test-key-of-32-bytes!").decode()
OTHER_KEY = base64.b64encode(b"another-key-nobody-shares-32-by!").decode()


class SealedRunTest(WorkerCase):
    def key_file(self, key=KEY, name="secret.key"):
        path = os.path.join(self.tmp, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return path

    def produce(self, platform, key=KEY, page_size=10, topic=None, db=None):
        """`visionbatch-producer --once` onto ``topic`` (this test's) with the
        Redis database ``db`` (the worker's); returns the platform's list
        GETs so far."""
        redis_url = self.redis.url if db is None else "redis://127.0.0.1:%d/%d" % (
            self.redis_port, db)
        cfg = harness.processor_config(platform, None, redis_url=redis_url,
                                       kafka_brokers=self.kafka, topic=topic or self.topic,
                                       dlq_topic=self.dlq, log_file="", page_size=page_size)
        path = self.write_config(cfg, name="producer-%s.json" % uuid.uuid4().hex[:6])
        args = ["--once", "--config", path]
        if key:
            args += ["--secret-key-file", self.key_file(key, "producer.key")]
        res = harness.run_binary("visionbatch-producer", args, timeout=120)
        self.assertEqual(res.returncode, 0, res)
        self.assertNoSecrets(res.output, secrets=(key or "-",), msg="producer output")
        return len(platform.gets())

    def worker(self, platform, backend, name, key=KEY, page_size=2, extra=()):
        # A small page makes every lookup page deep into the queue.
        extra = ("--page-size", str(page_size)) + tuple(extra)
        if key:
            extra += ("--secret-key-file", self.key_file(key, name + ".key"))
        return self.start_worker(platform, backend, name, extra=extra)

    def sources(self, w):
        """visionbatch_run_sources_total of worker w, by source."""
        text = harness.http_request("GET", "http://127.0.0.1:%d/metrics" % w.port).text()
        return {k: int(float(v)) for k, v in re.findall(
            r'^visionbatch_run_sources_total\{source="(\w+)"\} (\S+)$', text, re.M)}

    def messages(self, topic=None):
        return harness.read_topic(topic or self.topic, self.kafka)

    def finish(self, platform, ids, w, gets_before, timeout=120):
        """Waits for every run; returns the worker's list GETs."""
        self.wait_uploaded(platform, ids, timeout=timeout, workers=(w,))
        self.assert_once(platform, ids)
        return len(platform.gets()) - gets_before

    # -- tests -----------------------------------------------------------------

    def test_platform_requests_per_run_do_not_grow_with_the_queue(self):
        """Two queues, 4 and 16 runs: the worker's lookups cost no list GET
        in either (the old lookup paged the list for every run, deeper the
        longer the queue)."""
        per_run = {}
        for n in (4, 16):
            scen, platform, backend = self.start_stubs(n)
            ids = [r["vision_analysis_id"] for r in scen["runs"]]
            before = self.produce(platform)
            w = self.worker(platform, backend, "q%d" % n)
            worker_gets = self.finish(platform, ids, w, before)
            per_run[n] = worker_gets / n
            self.assertNotIn("looking the run up on the platform", w.stderr())
            self.assertEqual(self.sources(w), {"sealed": n, "lookup": 0, "refetch": 0})
            w.stop()
        self.assertEqual(per_run, {4: 0.0, 16: 0.0}, "worker list GETs per run")

    def test_message_holds_the_sealed_run_and_no_readable_secret(self):
        scen, platform, backend = self.start_stubs(2)
        self.produce(platform)
        msgs = self.messages()
        self.assertEqual(len(msgs), 2)
        urls = [d["document_path"] for r in platform.runs() for d in r["documents"]]
        for m in msgs:
            self.assertNoSecrets(m["value"], secrets=("sig=", platform.api_key, KEY),
                                 msg="Kafka message value")
            for u in urls:  # neither a whole URL nor its query appears
                self.assertNotIn(u, m["value"])
                self.assertNotIn(u.partition("?")[2], m["value"])
            v = json.loads(m["value"])
            self.assertRegex(v["sealed"], r"^v1:[A-Za-z0-9+/]+=*$")
            for d in v["run"]["documents"]:
                self.assertNotIn("?", d["document_path"])
            raw = base64.b64decode(v["sealed"][3:])
            self.assertNotIn(b"sig=", raw)
            self.assertNotIn(b"http", raw)

    def test_expired_url_is_fetched_again_and_the_run_retried(self):
        scen, platform, backend = self.start_stubs(1, images=2)
        rid = scen["runs"][0]["vision_analysis_id"]
        name = scen["runs"][0]["documents"][0]["document_name"]
        before = self.produce(platform)
        # The blob store refuses the URL from the message once (its SAS
        # expired): even with allow_partial the run must not go on without
        # that image.
        platform.faults(files={name: [{"status": 403}]})
        w = self.worker(platform, backend, "e1", extra=("--allow-partial",))
        worker_gets = self.finish(platform, [rid], w, before, timeout=60)
        self.assertGreaterEqual(worker_gets, 1, "fresh URLs come from the platform")
        self.assertEqual(platform.pending_faults().get("files", {}).get(name, []), [])
        fetches = [f["status"] for f in platform.file_fetches() if f["name"] == name]
        self.assertEqual(fetches, [403, 200])
        self.assertIn("a document URL of the sealed run was refused (HTTP 403)", w.stderr())
        self.assertEqual(self.sources(w), {"sealed": 1, "lookup": 0, "refetch": 1})
        st = self.redis.run(rid)
        self.assertEqual((st.get("state"), st.get("attempts")), ("uploaded", "1"))
        self.assertEqual(len(backend.uploads()), 2, "both images reached the backend")
        self.assertNoSecrets(w.stderr(), secrets=(KEY,), msg="worker log")

    def test_sealed_run_that_does_not_open_falls_back_to_the_lookup(self):
        """Sealed under another key; altered; moved to another run's message;
        missing (an older producer): each run is looked up and processed."""
        scen, platform, backend = self.start_stubs(4)
        runs = scen["runs"]
        ids = [r["vision_analysis_id"] for r in runs]
        # Messages as producers publish them, on a scratch topic (with Redis
        # databases of their own, so the worker's runs start fresh): sealed
        # under a key this worker does not have, and under ours.
        scratch, = harness.private_topics(self, ("vb-sealed-scratch", 1), brokers=self.kafka)
        self.produce(platform, key=OTHER_KEY, topic=scratch, db=1)
        foreign = {m["key"]: json.loads(m["value"]) for m in self.messages(scratch)}
        self.assertEqual(sorted(foreign), sorted(ids))
        self.produce(platform, key=KEY, topic=scratch, db=2)
        ours = {}
        for m in self.messages(scratch)[len(ids):]:
            ours[m["key"]] = json.loads(m["value"])
        self.assertEqual(sorted(ours), sorted(ids))
        pairs = [(ids[0], json.dumps(foreign[ids[0]]))]  # another key
        v = ours[ids[1]]
        s = v["sealed"]
        i = len(s) // 2
        v["sealed"] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]  # altered
        pairs.append((ids[1], json.dumps(v)))
        v = ours[ids[2]]
        v["sealed"] = ours[ids[3]]["sealed"]  # another run's
        pairs.append((ids[2], json.dumps(v)))
        pairs.append((ids[3], message(runs[3])))  # none: an older producer's message
        self.publish(pairs)
        before = len(platform.gets())
        w = self.worker(platform, backend, "f1")
        worker_gets = self.finish(platform, ids, w, before)
        self.assertGreaterEqual(worker_gets, 4)
        log = w.stderr()
        reasons = re.findall(r"run=(\S+).*looking the run up on the platform: (.*)", log)
        by_run = {}
        for rid, why in reasons:
            by_run.setdefault(rid.upper(), why)
        self.assertEqual(sorted(by_run), sorted(i.upper() for i in ids), log[-3000:])
        self.assertIn("failed authentication", by_run[ids[0].upper()])
        self.assertIn("failed authentication", by_run[ids[1].upper()])
        self.assertIn("failed authentication", by_run[ids[2].upper()])
        self.assertIn("carries no sealed run", by_run[ids[3].upper()])
        self.assertNoSecrets(log, secrets=(KEY, OTHER_KEY), msg="worker log")
        self.assertEqual(self.sources(w), {"sealed": 0, "lookup": 4, "refetch": 0})

    def test_worker_without_the_key_looks_runs_up(self):
        scen, platform, backend = self.start_stubs(2)
        ids = [r["vision_analysis_id"] for r in scen["runs"]]
        before = self.produce(platform)
        w = self.worker(platform, backend, "n1", key=None)
        worker_gets = self.finish(platform, ids, w, before)
        self.assertGreaterEqual(worker_gets, 2)
        self.assertIn("this worker has no secret key to open the sealed run", w.stderr())
