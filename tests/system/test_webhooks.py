"""System tests of cron-job webhooks (notify, notify_secret, pause_on_failure).

Two producers share one Redis; a receiver on loopback answers 500 to the
first two attempts of every delivery, then 204. Every request's signature is
checked, each event must be accepted exactly once, and the executions record
what happened to each notification.
"""

import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid

import harness
from test_cron_api import GUIDE_JOB, SECRET_KEY, CronApiTest

NOTIFY_SECRET = "whsec-" + uuid.uuid4().hex
FAILS_PER_DELIVERY = 2


class Receiver:
    """Loopback webhook receiver that fails the first attempts of each delivery."""

    def __init__(self, secret):
        self.secret = secret.encode()
        self.lock = threading.Lock()
        self.requests = []  # (delivery id, event, status answered, signature ok, body)
        self.seen = {}
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                did = self.headers.get("X-Visionbatch-Delivery", "")
                ok = rec.verify(self.headers.get("X-Visionbatch-Signature", ""), body)
                with rec.lock:
                    n = rec.seen.get(did, 0)
                    rec.seen[did] = n + 1
                    status = 500 if n < FAILS_PER_DELIVERY else 204
                    rec.requests.append((did, self.headers.get("X-Visionbatch-Event"), status,
                                         ok, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify(self, header, body):
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts:
            return False
        want = hmac.new(self.secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300

    def accepted(self):
        with self.lock:
            return [r for r in self.requests if r[2] == 204]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class WebhookTest(CronApiTest):
    def start_producer(self, *args, listen=None, env=None):
        e = {"VISIONBATCH_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
        e.update(env or {})
        return super().start_producer(*args, listen=listen, env=e)

    def test_webhooks_are_signed_retried_and_delivered_once_with_two_producers(self):
        rx = Receiver(NOTIFY_SECRET)
        self.addCleanup(rx.stop)
        platform = self.start_platform(scenario=harness.make_scenario(0, 1, seed="none"))
        p1, base1 = self.start_producer()
        p2, base2 = self.start_producer()
        common = dict(GUIDE_JOB, schedule="0 0 1 1 *", external_api_get_url=platform.get_url,
                      external_api_post_url=platform.post_url,
                      organization_id=harness.GUIDE_ORG_ID, enabled=True,
                      notify_secret=NOTIFY_SECRET)

        # A host off the allow-list is refused at the API.
        r = self.call("POST", base1 + "/cron-jobs", dict(
            common, external_api_key=platform.api_key,
            notify=[{"url": "http://169.254.169.254/x", "events": ["execution.failed"]}]))
        self.assertEqual(r.status, 400, r.text())
        self.assertIn("webhook_allowed_hosts", r.text())

        ok_job = self.call("POST", base1 + "/cron-jobs", dict(
            common, external_api_key=platform.api_key,
            notify=[{"url": rx.url, "events": ["execution.succeeded"]}])).json()["job_id"]
        # A wrong key: every firing fails (401) -> execution `error`.
        bad_job = self.call("POST", base1 + "/cron-jobs", dict(
            common, external_api_key="wrong-" + uuid.uuid4().hex, pause_on_failure=2,
            notify=[{"url": rx.url, "events": ["execution.failed", "job.paused"]}])).json()["job_id"]
        shown = self.call("GET", base2 + "/cron-jobs/" + bad_job).json()
        self.assertEqual(shown["notify_secret"], "***")
        self.assertEqual(shown["pause_on_failure"], 2)
        self.assertEqual(shown["notify"], [{"url": rx.url,
                                            "events": ["execution.failed", "job.paused"]}])

        def run_and_wait(base, jid):
            r = self.call("POST", base + "/cron-jobs/%s/run" % jid)
            self.assertEqual(r.status, 202, r.text())
            eid = r.json()["execution_id"]

            def done():
                for e in self.call("GET", base + "/cron-jobs/%s/executions" % jid).json()[
                        "executions"]:
                    if e["execution_id"] == eid and e["status"] != "running":
                        return e
                return None
            return harness.wait_until(done, timeout=30, message="execution ended")

        ok_exec = run_and_wait(base1, ok_job)
        self.assertEqual(ok_exec["status"], "success")
        bad1 = run_and_wait(base2, bad_job)
        bad2 = run_and_wait(base1, bad_job)
        self.assertEqual((bad1["status"], bad2["status"]), ("error", "error"))

        # pause_on_failure: the job deactivated itself and says why.
        job = self.call("GET", base1 + "/cron-jobs/" + bad_job).json()
        self.assertFalse(job["enabled"])
        self.assertIn("2 consecutive failed executions", job["paused_reason"])

        # Every notification ends delivered (the positive signal), after
        # FAILS_PER_DELIVERY failed attempts each.
        want = {ok_exec["execution_id"]: 1, bad1["execution_id"]: 1, bad2["execution_id"]: 2}

        def all_delivered():
            got = {}
            for jid in (ok_job, bad_job):
                for e in self.call("GET", base2 + "/cron-jobs/%s/executions" % jid).json()[
                        "executions"]:
                    got[e["execution_id"]] = e["notifications"]
            if all(len(got.get(k, [])) == n and all(x["status"] == "delivered" for x in got[k])
                   for k, n in want.items()):
                return got
            return None
        got = harness.wait_until(all_delivered, timeout=40, interval=0.5,
                                 message="every notification delivered")
        for notes in got.values():
            for n in notes:
                self.assertEqual((n["url"], n["attempts"], n["http_status"]),
                                 (rx.url, FAILS_PER_DELIVERY + 1, 204), notes)
        self.assertEqual(sorted(n["event"] for n in got[bad2["execution_id"]]),
                         ["execution.failed", "job.paused"])

        # Exactly one accepted delivery per event, none duplicated by the
        # second producer; every request (failed attempts too) was signed.
        acc = rx.accepted()
        self.assertEqual(sorted(a[1] for a in acc), ["execution.failed", "execution.failed",
                                                     "execution.succeeded", "job.paused"])
        self.assertEqual(len({a[0] for a in acc}), 4)
        with rx.lock:
            reqs = list(rx.requests)
        self.assertEqual(len(reqs), 4 * (FAILS_PER_DELIVERY + 1))
        self.assertTrue(all(r[3] for r in reqs), "a request had a bad signature")
        for r in acc:
            body = json.loads(r[4])
            self.assertEqual(body["event"], r[1])
            self.assertIn(body["job"]["id"], (ok_job, bad_job))
            self.assertIn("runs", body["execution"])
        paused = json.loads(next(a[4] for a in acc if a[1] == "job.paused"))
        self.assertEqual(paused["execution"]["id"], bad2["execution_id"])
        self.assertIn("consecutive failed", paused["paused_reason"])
        # Both producers' counters add up to what the receiver saw.
        totals = {}
        for base in (base1, base2):
            for line in harness.http_request("GET", base + "/metrics").text().splitlines():
                if line.startswith("visionbatch_webhook_deliveries_total{"):
                    res = line.split('result="', 1)[1].split('"', 1)[0]
                    totals[res] = totals.get(res, 0) + float(line.rsplit(" ", 1)[1])
        self.assertEqual(totals, {"delivered": 4, "retrying": 4 * FAILS_PER_DELIVERY}, totals)
        # The signing secret never left Redis in the clear.
        for text in [r[4].decode() for r in reqs] + [p1.stderr(), p2.stderr(),
                                                      self.redis_cli("--no-raw", "KEYS", "*")]:
            self.assertNotIn(NOTIFY_SECRET, text)
        stored = self.redis_cli("HGETALL", "visionbatch:job:" + ok_job)
        self.assertNotIn(NOTIFY_SECRET, stored)

    def test_a_dead_run_notifies_run_dead_once(self):
        """A cron-job run that ends dead (the backend fails its batch, one
        attempt allowed) is announced once as run.dead, signed, naming the run
        and the execution that published it."""
        rx = Receiver(NOTIFY_SECRET)
        self.addCleanup(rx.stop)
        topic = harness.private_topics(self, ("vb-cron-dead", 1))[0]
        scen = harness.make_scenario(1, 1, seed=uuid.uuid4().hex[:10])
        rid = scen["runs"][0]["vision_analysis_id"]
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1, outcome="failed")
        _, base = self.start_producer("--topic", topic)
        worker = self.start_cron_worker(topic, max_attempts=1)
        jid = self.call("POST", base + "/cron-jobs", dict(
            GUIDE_JOB, schedule="0 0 1 1 *", external_api_get_url=platform.get_url,
            external_api_post_url=platform.post_url, external_api_key=platform.api_key,
            backend_api_url=backend.url, organization_id=harness.GUIDE_ORG_ID, enabled=True,
            notify_secret=NOTIFY_SECRET,
            notify=[{"url": rx.url, "events": ["run.dead"]}])).json()["job_id"]
        r = self.call("POST", base + "/cron-jobs/%s/run" % jid)
        self.assertEqual(r.status, 202, r.text())
        eid = r.json()["execution_id"]

        def delivered():
            for e in self.call("GET", base + "/cron-jobs/%s/executions" % jid).json()[
                    "executions"]:
                if e["execution_id"] == eid and e["status"] != "running" and \
                        [n["status"] for n in e.get("notifications", [])] == ["delivered"]:
                    return e
            return None
        e = harness.wait_until(delivered, timeout=90, interval=0.5,
                               message="run.dead delivered")
        self.assertEqual(e["status"], "failed", e)
        self.assertEqual(e["notifications"][0]["event"], "run.dead")
        self.assertEqual(self.redis_cli("HGET", "visionbatch:run:" + rid, "state").strip(), "dead")
        acc = rx.accepted()
        self.assertEqual([a[1] for a in acc], ["run.dead"])
        body = json.loads(acc[0][4])
        self.assertEqual((body["event"], body["run"]["id"], body["execution"]["id"],
                          body["job"]["id"]), ("run.dead", rid, eid, jid))
        with rx.lock:
            reqs = list(rx.requests)
        self.assertEqual(len(reqs), FAILS_PER_DELIVERY + 1)
        self.assertTrue(all(q[3] for q in reqs), "a request had a bad signature")
        self.assertNotIn(platform.api_key, acc[0][4].decode())
        self.assertNoSecrets(worker.stderr(), secrets=(platform.api_key,))

# Only WebhookTest's own test is collected here.
for _name in [n for n in dir(CronApiTest) if n.startswith("test_")]:
    setattr(WebhookTest, _name, None)
del CronApiTest
