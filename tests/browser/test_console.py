"""The web console in a real browser: Debian's chromium driven by Playwright.

A producer (with an API token), a worker, the platform and backend stand-ins,
Kafka and a private Redis; the console at /ui/ is used as an operator would:
the token prompt, a bad expression showing the field's error, the live
next-runs preview with its daylight-saving marker, creating a job through the
form, its next runs in both zones, run now, the execution reaching success and
its runs reaching `uploaded`, retrying a dead run, deactivating and deleting
the job, the workers' view, the layout at 390 px, and the job list's pages
(next, previous, a page emptied elsewhere). No page error and no
Content-Security-Policy violation may occur. Screenshots go to
<build>/console-screenshots/.

Needs /usr/bin/chromium and Playwright in the checkout's .venv (both from
scripts/install-deps.sh; Playwright's own browser downloads are never used).
Registered for the normal build only (ctest label `browser`).
"""

import json
import os
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "system"))
import harness  # noqa: E402
from test_producer import BROKERS, kafka_ok  # noqa: E402

from playwright.sync_api import expect, sync_playwright  # noqa: E402

import base64  # noqa: E402

SECRET_KEY = base64.b64encode(b"k" * 32).decode()
TOKEN = "console-token-" + uuid.uuid4().hex[:8]
CHROMIUM = os.environ.get("VB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SHOTS = os.path.join(os.environ.get("VB_BIN_DIR", "/tmp"), "console-screenshots")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConsoleBrowserTest(harness.SystemTestCase):
    maxDiff = None

    def setUp(self):
        super().setUp()
        harness.require_binary("visionbatch-producer")
        if not kafka_ok():
            raise AssertionError("Kafka unavailable at %s: start deploy/local/services.sh" % BROKERS)
        os.makedirs(SHOTS, exist_ok=True)
        self.redis = harness.RedisServer()
        self.addCleanup(self.redis.stop)
        self.topic = "visionbatch.test.console-" + uuid.uuid4().hex[:10]
        self.dlq_topic = self.topic + ".dlq"
        self.group = "visionbatch-console-" + uuid.uuid4().hex[:8]
        services = os.path.join(harness.SOURCE_DIR, "deploy", "local", "services.sh")
        for topic, parts in ((self.topic, "2"), (self.dlq_topic, "1")):
            subprocess.run([services, "create-topic", topic, parts], check=True,
                           capture_output=True, timeout=120)
            self.addCleanup(subprocess.run, [services, "delete-topic", topic],
                            capture_output=True, timeout=120)

    def start_services(self):
        self.scen = harness.make_scenario(2, 1, seed=uuid.uuid4().hex[:10])
        self.platform = self.start_platform(scenario=self.scen)
        self.backend = self.start_backend(polls_to_complete=1)
        port = free_port()
        self.base = "http://127.0.0.1:%d" % port
        env = {"VISIONBATCH_SECRET_KEY": SECRET_KEY, "REDIS_URL": self.redis.url,
               "KAFKA_BROKERS": BROKERS, "VISIONBATCH_API_TOKEN": TOKEN,
               "VISIONBATCH_LOG_FILE": os.path.join(self.tmp, "p.log"),
               "VISIONBATCH_CONFIG": self.write_config({}, "empty.json")}
        self.producer = self.start_program("visionbatch-producer", "--listen", "127.0.0.1:%d" % port,
                                           "--topic", self.topic, "--dlq-topic", self.dlq_topic,
                                           "--group-id", self.group, env=env)
        harness.wait_until(lambda: self._up(), timeout=30, message="producer API up")
        wcfg = self.write_config({
            "redis_url": self.redis.url, "kafka_brokers": BROKERS, "topic": self.topic,
            "group_id": self.group, "log_file": "", "worker_id": "console-worker-1",
            "dlq_topic": self.dlq_topic,
            "temp_dir": os.path.join(self.tmp, "work"), "status_poll_min_ms": 50,
            "metrics_listen": "127.0.0.1:%d" % free_port(), "concurrency": 2,
        }, "worker.json")
        self.worker = self.start_program("visionbatch-worker", "--config", wcfg,
                                         env={"VISIONBATCH_SECRET_KEY": SECRET_KEY,
                                              "REDIS_URL": self.redis.url,
                                              "KAFKA_BROKERS": BROKERS})

    def _up(self):
        if not self.producer.alive():
            raise AssertionError("producer exited: %s" % self.producer.stderr()[-2000:])
        try:
            return harness.http_request("GET", self.base + "/healthz", timeout=2).status == 200
        except OSError:
            return False

    def shot(self, page, name):
        page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)

    def test_console_flows(self):
        self.start_services()
        problems = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                self.flows(browser, problems)
            finally:
                browser.close()
        self.assertEqual(problems, [])
        self.assertNoSecrets(self.producer.stderr(), secrets=(self.platform.api_key, TOKEN))

    def flows(self, browser, problems):
        if True:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                      timezone_id="America/New_York")
            page = ctx.new_page()
            page.set_default_timeout(15000)
            page.on("pageerror", lambda e: problems.append("page error: %s" % e))
            # The browser logs every refused call (401, 400) as a console error;
            # anything else (a script error, a CSP violation) is a problem.
            page.on("console", lambda m: m.type == "error" and not m.text.startswith(
                "Failed to load resource: the server responded with a status of 40") and
                problems.append(m.text))
            page.on("request", lambda r: r.url.startswith(self.base) or
                    problems.append("request elsewhere: " + r.url))

            # The page and its assets need no token; they carry the strict headers.
            resp = page.goto(self.base + "/ui/")
            self.assertEqual(resp.status, 200)
            csp = resp.headers["content-security-policy"]
            self.assertIn("script-src 'self'", csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertEqual(resp.headers["x-frame-options"], "DENY")
            self.assertEqual(resp.headers["x-content-type-options"], "nosniff")
            self.assertNotIn("set-cookie", resp.headers)

            # Token prompt: the first data call is refused, the console asks once.
            expect(page.locator("#token-panel")).to_be_visible()
            self.shot(page, "01-token")
            page.get_by_label("Token", exact=True).fill("wrong")
            page.get_by_role("button", name="Use token").click()
            expect(page.locator("#token-error")).to_contain_text("refused")
            page.get_by_label("Token", exact=True).fill(TOKEN)
            page.get_by_role("button", name="Use token").click()
            expect(page.locator("#jobs-empty")).to_be_visible()
            self.assertEqual(page.evaluate("sessionStorage.getItem('vb-token')"), TOKEN)
            self.assertEqual(ctx.cookies(), [])

            # Every control has a label (keyboard and screen-reader use).
            unlabelled = page.evaluate("""() => [...document.querySelectorAll('input,select')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.id)""")
            self.assertEqual(unlabelled, [])

            # The form, opened by keyboard; a bad expression shows the field's error.
            page.locator("#new-job").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#job-form-panel")).to_be_visible()
            page.get_by_label("Name", exact=True).fill("Console job")
            sched = page.locator("#f-schedule")
            sched.fill("61 * * * *")
            expect(page.locator("#f-schedule-error")).to_contain_text("minute: value 61 out of range")
            self.assertEqual(sched.get_attribute("aria-invalid"), "true")
            self.shot(page, "02-bad-expression")
            page.locator("#f-timezone").fill("Mars/Olympus")
            sched.fill("0 9 * * 1")
            expect(page.locator("#f-timezone-error")).to_contain_text("unknown time zone")
            # Live preview in the job's zone and the browser's, with the DST change
            # of the last Sunday of March (Sundays of March at 09:00, Berlin).
            page.locator("#f-timezone").fill("Europe/Berlin")
            sched.fill("0 9 * 3 0")
            expect(page.locator("#preview li")).to_have_count(8)
            expect(page.locator("#preview .dst").first).to_contain_text("+01:00 → +02:00")
            expect(page.locator("#preview li").first).to_contain_text("(yours)")
            sched.fill("0 9 * * 1")
            expect(page.locator("#f-schedule-words")).to_have_text("every Monday at 09:00, Europe/Berlin")
            expect(page.locator("#f-schedule-error")).to_have_text("")
            self.shot(page, "03-form")
            page.get_by_label("Platform GET URL", exact=True).fill(self.platform.get_url)
            page.get_by_label("Platform POST URL", exact=True).fill(self.platform.post_url)
            page.get_by_label("Platform API key", exact=True).fill(self.platform.api_key)
            page.get_by_label("Backend URL", exact=True).fill(self.backend.url)
            page.get_by_label("Organization id", exact=True).fill(harness.GUIDE_ORG_ID)
            page.get_by_role("button", name="Save").click()

            # The job's row: schedule in words, next run in both zones.
            row = page.locator("#jobs-table tbody tr", has_text="Console job")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("every Monday at 09:00, Europe/Berlin")
            expect(row.locator("td.next")).to_contain_text("09:00")
            expect(row.locator("td.next")).to_contain_text("(yours)")
            expect(row.locator("td.next")).to_contain_text("03:00")  # New York, 6 h behind
            jobs = self.api("GET", "/cron-jobs")["cron_jobs"]
            self.assertEqual([(j["name"], j["schedule"], j["timezone"]) for j in jobs],
                             [("Console job", "0 9 * * 1", "Europe/Berlin")])
            self.assertNotIn(self.platform.api_key, page.content())

            # Run now: the execution succeeds, its runs reach uploaded.
            row.get_by_role("button", name="Run now").click()
            erow = page.locator("#exec-table tbody tr").first
            expect(erow.locator("td.status")).to_have_text("success", timeout=90000)
            cells = erow.locator("td").all_inner_texts()
            self.assertEqual(cells[2:4], ["2", "2"])  # found, published
            self.assertEqual(cells[5:7], ["2", "0"])  # succeeded, failed
            self.assertNotEqual(cells[8], "–")        # batch ids
            self.shot(page, "04-executions")
            erow.get_by_role("button", name="Runs").click()
            expect(page.locator("#runs")).to_be_visible()
            runs = page.locator("#runs-table tbody tr")
            expect(runs).to_have_count(2)
            for i in range(2):
                expect(runs.nth(i).locator("td.state-cell")).to_have_text("uploaded")
            ids = sorted(r["vision_analysis_id"] for r in self.scen["runs"])
            self.assertEqual(sorted(runs.locator("td:first-child").all_inner_texts()), ids)
            self.shot(page, "05-runs")

            # A dead run (its error holds markup, shown as text) is retried.
            now = int(time.time() * 1000)
            dead = "DEAD-CONSOLE-" + uuid.uuid4().hex[:6].upper()
            self.redis.put_run(dead, now, state="dead", attempts="5", version="7", last_error=
                               "<img src=x onerror=alert(1)> backend said no")
            page.locator("#runs-exec").fill("")
            page.get_by_label("State", exact=True).select_option("dead")
            drow = page.locator("#runs-table tbody tr", has_text=dead)
            expect(drow).to_contain_text("<img src=x onerror=alert(1)> backend said no")
            expect(page.locator("#runs-total")).to_contain_text("dead 1")  # counts per state
            self.assertEqual(page.locator("#runs-table img").count(), 0)
            drow.get_by_role("button", name="Retry").click()
            expect(page.locator("#toast")).to_contain_text("failed with 0 attempts")
            expect(drow).to_have_count(0)
            self.assertEqual(self.redis.state(dead), "failed")
            self.assertEqual(self.redis.cli("HGET", "visionbatch:run:" + dead, "attempts"), "0")
            page.get_by_label("State", exact=True).select_option("failed")
            expect(page.locator("#runs-table tbody tr", has_text=dead)).to_have_count(1)

            # DLQ: a reaper's dead notice for a new run of the job is listed and
            # replayed; the worker then processes the run with the job's key.
            extra = harness.make_scenario(1, 1, seed=uuid.uuid4().hex[:10], start=7)
            self.platform.add_scenario(extra)
            rid = extra["runs"][0]["vision_analysis_id"].upper()
            jid = self.api("GET", "/cron-jobs")["cron_jobs"][0]["job_id"]
            self.redis.put_run(rid, now - 1000, state="dead", attempts="5", version="3",
                               cred_source="job", job_id=jid,
                               organization_id=harness.GUIDE_ORG_ID,
                               last_error="lease expired 5 times")
            subprocess.run(["kcat", "-b", BROKERS, "-t", self.dlq_topic, "-P", "-k", rid,
                            "-H", "vb-reason=lease expired 5 times"],
                           input=json.dumps({"schema": 1, "run_id": rid, "state": "dead"}).encode(),
                           check=True, capture_output=True, timeout=30)
            page.get_by_role("button", name="Load dead-letter messages").click()
            qrow = page.locator("#dlq-table tbody tr", has_text=rid)
            expect(qrow).to_contain_text("dead-notice")
            expect(qrow).to_contain_text("lease expired 5 times")
            self.shot(page, "06-dlq")
            qrow.get_by_role("button", name="Replay").click()
            expect(page.locator("#toast")).to_contain_text("replayed (was dead)")
            harness.wait_until(lambda: self.redis.state(rid) == "uploaded", timeout=60,
                               message="the replayed run uploaded")
            page.get_by_label("State", exact=True).select_option("uploaded")
            expect(page.locator("#runs-table tbody tr", has_text=rid)).to_contain_text("uploaded")

            # Workers: the group's member, its partitions and the lag.
            page.get_by_role("button", name="Workers").click()
            wrow = page.locator("#workers-table tbody tr", has_text="console-worker-1")
            expect(wrow).to_have_count(1, timeout=30000)
            expect(wrow.locator("td.heartbeat")).to_contain_text("live")  # its heartbeat
            expect(page.locator("#parts-table tbody tr")).to_have_count(2)
            expect(page.locator("#workers-summary")).to_contain_text("total lag 0")
            self.shot(page, "07-workers")

            # Deactivate, activate, delete with confirmation.
            page.get_by_role("button", name="Jobs").click()
            row.get_by_role("button", name="Deactivate").click()
            expect(row).to_contain_text("disabled")
            self.assertFalse(self.api("GET", "/cron-jobs")["cron_jobs"][0]["enabled"])
            row.get_by_role("button", name="Activate").click()
            expect(row).to_contain_text("enabled")
            self.shot(page, "08-jobs")

            self.layouts(page, row)

            page.once("dialog", lambda d: d.dismiss())
            row.get_by_role("button", name="Delete").click()
            expect(row).to_have_count(1)
            page.once("dialog", lambda d: d.accept())
            row.get_by_role("button", name="Delete").click()
            expect(row).to_have_count(0)
            self.assertEqual(self.api("GET", "/cron-jobs")["cron_jobs"], [])

            # The live view polls: a job created elsewhere appears without reload.
            self.api("POST", "/cron-jobs", {
                "name": "Created by curl", "schedule": "*/5 * * * *", "enabled": False,
                "external_api_get_url": self.platform.get_url,
                "external_api_post_url": self.platform.post_url,
                "external_api_key": "k", "organization_id": harness.GUIDE_ORG_ID})
            expect(page.locator("#jobs-table tbody tr", has_text="Created by curl")).to_contain_text(
                "every 5 minutes, UTC")
            self.paging(page)
            ctx.close()

    def layouts(self, page, row):
        """At 390 px the tables are labelled cards: nothing is wider than the
        screen, every control of a row is on it and works from the keyboard;
        at 1280 px they are tables again."""
        fits = """(w) => document.documentElement.scrollWidth <= w &&
            [...document.querySelectorAll('main button, main input, main select')]
              .filter((c) => c.offsetParent).every((c) => {
                const r = c.getBoundingClientRect(); return r.left >= 0 && r.right <= w; })"""
        label = """(sel) => { const td = document.querySelector(sel);
            return [getComputedStyle(td).display, getComputedStyle(td, '::before').content]; }"""
        page.set_viewport_size({"width": 390, "height": 844})
        for tab, cell in (("jobs", "#jobs-table tbody td:nth-child(2)"),
                          ("runs", "#runs-table tbody td:nth-child(2)"),
                          ("workers", "#workers-table tbody td:nth-child(6)")):
            page.locator(".tab[data-tab=%s]" % tab).click()
            expect(page.locator("#%s-table tbody tr" % tab).first).to_be_visible()
            self.assertTrue(page.evaluate(fits, 390), "%s is wider than 390 px" % tab)
            heading = page.locator("#%s-table thead th" % tab).nth(
                int(cell.split("(")[1].rstrip(")")) - 1).inner_text()
            self.assertEqual(page.evaluate(label, cell), ["block", '"%s"' % heading])
            self.shot(page, "09-narrow-" + tab)
        page.locator(".tab[data-tab=jobs]").click()
        row.get_by_role("button", name="Deactivate").focus()
        page.keyboard.press("Enter")
        expect(row).to_contain_text("disabled")
        row.get_by_role("button", name="Activate").focus()
        page.keyboard.press("Enter")
        expect(row).to_contain_text("enabled")
        page.set_viewport_size({"width": 1280, "height": 900})
        self.assertTrue(page.evaluate(fits, 1280))
        self.assertEqual(page.evaluate(label, "#jobs-table tbody td:nth-child(2)")[0],
                         "table-cell")

    def paging(self, page):
        """Pages of two jobs (?jobs_page=2): next and previous walk the job-id
        order of GET /cron-jobs pages, a page emptied elsewhere steps back."""
        for i in range(4):
            self.api("POST", "/cron-jobs", {
                "name": "Paged job %d" % i, "schedule": "0 %d * * *" % i, "enabled": False,
                "external_api_get_url": self.platform.get_url,
                "external_api_post_url": self.platform.post_url,
                "external_api_key": "k", "organization_id": harness.GUIDE_ORG_ID})
        jobs = sorted(self.api("GET", "/cron-jobs")["cron_jobs"], key=lambda j: j["job_id"])
        self.assertEqual(len(jobs), 5)
        pages = [jobs[0:2], jobs[2:4], jobs[4:5]]
        page.goto(self.base + "/ui/?jobs_page=2#jobs")  # the token stays in sessionStorage
        rows = page.locator("#jobs-table tbody tr")
        prev = page.get_by_role("button", name="Previous")
        nxt = page.get_by_role("button", name="Next")

        def shows(n):
            expect(page.locator("#jobs-page")).to_contain_text("Page %d" % (n + 1))
            expect(rows).to_have_count(len(pages[n]))
            for i, j in enumerate(pages[n]):
                expect(rows.nth(i)).to_have_attribute("data-job", j["job_id"])
            if n == 0:
                expect(prev).to_be_disabled()
            else:
                expect(prev).to_be_enabled()
            if n == len(pages) - 1:
                expect(nxt).to_be_disabled()
            else:
                expect(nxt).to_be_enabled()

        shows(0)
        nxt.click()
        shows(1)
        nxt.click()
        shows(2)
        self.shot(page, "10-jobs-paged")
        prev.click()
        shows(1)
        prev.click()
        shows(0)
        # The last page's only job is deleted by someone else while it is shown:
        # the next poll (2 s) finds it empty and shows the page before it.
        nxt.click()
        nxt.click()
        shows(2)
        self.api("DELETE", "/cron-jobs/" + pages[2][0]["job_id"])
        pages.pop()
        shows(1)

    def api(self, method, path, body=None):
        r = harness.http_request(method, self.base + path,
                                 body=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + TOKEN,
                                          "Content-Type": "application/json"})
        self.assertLess(r.status, 300, r.text())
        return r.json()


if __name__ == "__main__":
    unittest.main()
