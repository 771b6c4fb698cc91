"""System tests of `visionbatch run-once` against the stand-in platform and backend.

Each test starts the two stand-ins, runs the real binary, and asserts on what
the platform and the backend received: one report per run, the right form
fields, every image and description, nothing leaked, temp files gone.
"""

import base64
import html
import json
import os
import re
import signal
import time
import unittest

import harness
from harness import GUIDE_DESCRIPTIONS, GUIDE_ORG_ID, GUIDE_ORG_NAME, GUIDE_QUERY, GUIDE_RUN_ID

FAST = {"status_poll_min_ms": 20, "status_poll_max_ms": 100, "retry_base_ms": 20,
        "retry_max_ms": 200}


class RunOnceTest(harness.SystemTestCase):
    def settings(self, platform, backend, **extra):
        values = harness.processor_config(platform, backend)
        values.update(FAST)
        values["log_file"] = os.path.join(self.tmp, "batch_processor.log")
        values["temp_dir"] = os.path.join(self.tmp, "work")
        values.update(extra)
        return values

    def run_once(self, platform, backend, *args, timeout=120, **extra):
        cfg = self.write_config(self.settings(platform, backend, **extra))
        return self.run_cli("run-once", "--config", cfg, *args, timeout=timeout)

    def log_text(self):
        path = os.path.join(self.tmp, "batch_processor.log")
        with open(path, errors="replace") as f:
            return f.read()

    def assertTempClean(self):
        work = os.path.join(self.tmp, "work")
        left = os.listdir(work) if os.path.isdir(work) else []
        self.assertEqual(left, [], "temp files left behind")

    def uploads_by_run(self, platform):
        out = {}
        for u in platform.uploads():
            if u["status"] == 200:
                out.setdefault(u["fields"].get("vision_analysis_id"), []).append(u)
        return out

    # ---- the guide's example, three ways to configure ----

    def check_guide_upload(self, platform, backend, res):
        self.assertEqual(res.returncode, 0, res)
        ups = platform.uploads()
        self.assertEqual(len(ups), 1, ups)
        up = ups[0]
        self.assertEqual(up["auth"], "ok")
        self.assertEqual(up["fields"], {"organization_id": GUIDE_ORG_ID,
                                        "vision_analysis_id": GUIDE_RUN_ID})
        batches = backend.batches()
        self.assertEqual(len(batches), 1)
        batch_id = batches[0]["batch_id"]
        self.assertEqual(up["file"]["filename"], "report_%s.html" % batch_id)
        self.assertEqual(up["file"]["content_type"], "text/html")
        req = batches[0]["request"]
        self.assertEqual(req["analysis_prompt"], GUIDE_QUERY)
        self.assertEqual(req["organization"], GUIDE_ORG_NAME)
        self.assertEqual(req["report_format"], "html")
        self.assertEqual(req["descriptions_map"], GUIDE_DESCRIPTIONS)
        self.assertEqual(len(req["image_ids"]), 2)
        images = backend.records()["images"].values()
        self.assertEqual(sorted(i["filename"] for i in images), ["oceanix_01.jpg", "oceanix_02.jpg"])
        self.assertTrue(all(i["chat_id"] == "cron_batch_job" for i in images))
        self.assertEqual({i["content_type"] for i in images}, {"image/jpeg"})
        report = up["text"]
        for name, desc in GUIDE_DESCRIPTIONS.items():
            self.assertIn(name, report)
            self.assertIn(html.escape(desc), report)
        gets = platform.gets()
        self.assertEqual(gets[0]["query"]["is_processed"], "false")
        self.assertEqual(gets[0]["query"]["page"], "1")
        self.assertEqual(gets[0]["auth"], "ok")
        self.assertEqual(gets[0]["headers"].get("Content-Type"), "application/json")
        self.assertEqual(platform.unprocessed_ids(), [])
        self.assertNoSecrets(res.output)

    def test_guide_example_with_config_file(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend()
        res = self.run_once(platform, backend)
        self.check_guide_upload(platform, backend, res)
        log = self.log_text()
        self.assertIn("summary: found=1 succeeded=1 failed=0 skipped=0", log)
        self.assertIn("run=" + GUIDE_RUN_ID, log)
        self.assertNoSecrets(log)
        self.assertTempClean()

    def test_guide_example_with_the_five_flags(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend()
        res = self.run_cli(
            "run-once",
            "--external-api-get-url", platform.get_url,
            "--external-api-post-url", platform.post_url,
            "--external-api-key", platform.api_key,
            "--backend-api-url", backend.url,
            "--organization-id", GUIDE_ORG_ID,
            "--log-file", os.path.join(self.tmp, "batch_processor.log"),
            "--temp-dir", os.path.join(self.tmp, "work"),
            "--status-poll-min-ms", "20", "--config", self.write_config({}, "empty.json"))
        self.check_guide_upload(platform, backend, res)
        self.assertNoSecrets(self.log_text())
        self.assertTempClean()

    def test_guide_example_with_environment(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend()
        env = {
            "EXTERNAL_API_GET_URL": platform.get_url,
            "EXTERNAL_API_POST_URL": platform.post_url,
            "EXTERNAL_API_KEY": platform.api_key,
            "BACKEND_API_URL": backend.url,
            "ORGANIZATION_ID": GUIDE_ORG_ID.lower(),  # ids compare case-insensitively
            "VISIONBATCH_LOG_FILE": os.path.join(self.tmp, "batch_processor.log"),
            "VISIONBATCH_TEMP_DIR": os.path.join(self.tmp, "work"),
            "VISIONBATCH_STATUS_POLL_MIN_MS": "20",
            "VISIONBATCH_CONFIG": self.write_config({}, "empty.json"),
        }
        res = self.run_cli("run-once", env=env)
        self.check_guide_upload(platform, backend, res)

    # ---- configuration errors ----

    def test_missing_settings_exit_2_naming_each(self):
        res = self.run_cli("run-once", "--config", self.write_config({}, "empty.json"),
                           env={"EXTERNAL_API_KEY": "", "EXTERNAL_API_GET_URL": ""})
        self.assertEqual(res.returncode, 2, res)
        for name in ("external_api_get_url", "external_api_post_url", "external_api_key",
                     "organization_id"):
            self.assertIn(name, res.stderr)

    def test_help_lists_settings(self):
        res = self.run_cli("run-once", "--help")
        self.assertEqual(res.returncode, 0)
        self.assertIn("--external-api-get-url", res.stdout)
        self.assertIn("EXTERNAL_API_KEY", res.stdout)

    # ---- queue shapes ----

    def test_empty_queue_is_success(self):
        platform = self.start_platform(scenario={"runs": []})
        backend = self.start_backend()
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        self.assertIn("summary: found=0 succeeded=0 failed=0", self.log_text())
        self.assertEqual(platform.uploads(), [])

    def test_every_page_is_fetched_and_each_run_uploaded_once(self):
        for paging in ("normal", "ignore", "repeat", "total_wrong", "total_missing", "zero_meta"):
            with self.subTest(paging=paging):
                scen = harness.make_scenario(7, 1, seed="pg" + paging.replace("_", ""))
                platform = self.start_platform(scenario=scen)
                platform.config(paging=paging)
                backend = self.start_backend(polls_to_complete=1)
                res = self.run_once(platform, backend, page_size=2)
                self.assertEqual(res.returncode, 0, res)
                by_run = self.uploads_by_run(platform)
                expected = {r["vision_analysis_id"] for r in scen["runs"]}
                if paging == "repeat":
                    # A server that repeats page 1 can only ever show us 2 runs per poll.
                    self.assertEqual(len(by_run), 2)
                else:
                    self.assertEqual(set(by_run), expected)
                self.assertTrue(all(len(v) == 1 for v in by_run.values()), by_run)
                platform.stop()
                backend.stop()

    def test_a_page_of_only_invalid_runs_served_again_ends_paging(self):
        # Runs without user_query are invalid, so the page holds no valid id to compare.
        invalid = [{"vision_analysis_id": "BAD-%d" % i, "organization_id": GUIDE_ORG_ID,
                    "documents": []} for i in range(3)]
        page = {"code": 200, "status": "success",
                "data": {"page": 1, "page_size": 3, "total": 3, "vision_analysis": invalid}}
        for how in ("paging ignored", "fault queue"):
            with self.subTest(how=how):
                if how == "paging ignored":  # echoes the page number: the bodies differ
                    platform = self.start_platform(scenario={"runs": invalid})
                    platform.config(paging="ignore")
                else:
                    platform = self.start_platform(scenario={"runs": []})
                    platform.faults(get=[{"body": page}] * 50)
                backend = self.start_backend()
                res = self.run_once(platform, backend, page_size=3)
                self.assertEqual(res.returncode, 0, res)
                self.assertEqual(len(platform.gets()), 2, "page 1, then page 2 repeating it")
                self.assertIn("summary: found=0", self.log_text())
                platform.stop()
                backend.stop()

    def test_other_organization_is_skipped_and_counted(self):
        mine = harness.make_scenario(2, 1, seed="mine")
        other = harness.make_scenario(3, 1, seed="other", organization_id="0000-OTHER-ORG")
        scen = {"runs": mine["runs"] + other["runs"], "files": {**mine["files"], **other["files"]}}
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        self.assertEqual(set(self.uploads_by_run(platform)),
                         {r["vision_analysis_id"] for r in mine["runs"]})
        self.assertIn("other_organization=3", self.log_text())

    def test_more_than_20_images_make_one_combined_report(self):
        scen = harness.make_scenario(1, 25, seed="big", user_query="<script>alert(1)</script> & defects")
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        batches = backend.batches()
        self.assertEqual(sorted(len(b["request"]["image_ids"]) for b in batches), [5, 20])
        for b in batches:
            # each batch carries the descriptions of its own images only
            self.assertEqual(len(b["request"]["descriptions_map"]), len(b["request"]["image_ids"]))
        ups = platform.uploads()
        self.assertEqual(len(ups), 1)
        report = ups[0]["text"]
        self.assertNotIn("<script>alert(1)</script>", report)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt; &amp; defects", report)
        first, second = batches[0]["batch_id"], batches[1]["batch_id"]
        self.assertLess(report.index(first), report.index(second))
        self.assertEqual(ups[0]["file"]["filename"], "report_%s.html" % first)
        for i in range(1, 26):
            self.assertIn("img_big_001_%03d.jpg" % i, report)

    def test_invalid_utf8_reaches_the_backend_as_valid_json(self):
        scen = harness.guide_scenario()
        # "\udcff" is served as the raw byte 0xff (see platform_server.py)
        scen["runs"][0]["user_query"] = "Analyze \udcff\udcfe defects caf\u00e9"
        desc = b'{"oceanix_01.jpg": "Port \xff side", "oceanix_02.jpg": "deck \xe2\x82"}'
        scen["files"] = {"descriptions_VISION_RUN_001.json":
                         {"base64": base64.b64encode(desc).decode()}}
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        batches = backend.batches()
        self.assertEqual([b["status"] for b in batches], [200])
        req = batches[0]["request"]
        self.assertEqual(req["analysis_prompt"], "Analyze \ufffd\ufffd defects caf\u00e9")
        self.assertEqual(req["descriptions_map"], {"oceanix_01.jpg": "Port \ufffd side",
                                                   "oceanix_02.jpg": "deck \ufffd\ufffd"})
        self.assertEqual(len(platform.uploads()), 1)
        log = self.log_text()
        self.assertIn("user_query is not valid UTF-8: 2 byte(s) replaced by U+FFFD", log)
        self.assertIn("oceanix_01.jpg is not valid UTF-8: 1 byte(s) replaced", log)

    # ---- failures ----

    def test_unavailable_image_fails_the_run_with_reason(self):
        scen = harness.make_scenario(1, 3, seed="miss")
        bad = scen["runs"][0]["documents"][1]["document_name"]
        platform = self.start_platform(scenario=scen)
        platform.faults(files={bad: [{"status": 404}]})
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 1, res)
        self.assertEqual(platform.uploads(), [])
        self.assertEqual(backend.batches(), [])
        log = self.log_text()
        self.assertIn(bad, log)
        self.assertIn("could not be had", log)
        self.assertNoSecrets(log)
        self.assertTempClean()

    def test_allow_partial_processes_the_rest(self):
        scen = harness.make_scenario(1, 3, seed="part")
        bad = scen["runs"][0]["documents"][0]["document_name"]
        platform = self.start_platform(scenario=scen)
        platform.faults(files={bad: [{"status": 404}]})
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend, "--allow-partial")
        self.assertEqual(res.returncode, 0, res)
        self.assertEqual(len(platform.uploads()), 1)
        self.assertEqual(len(backend.batches()[0]["request"]["image_ids"]), 2)

    def test_image_that_is_not_an_image_fails_whatever_its_content_type(self):
        scen = harness.make_scenario(1, 1, seed="html")
        name = scen["runs"][0]["documents"][0]["document_name"]
        scen["runs"][0]["documents"][0].pop("_gen")
        scen["files"][name] = {"text": "<html>login page</html>"}
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend()
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("not an image", self.log_text())
        self.assertEqual(backend.uploads(), [])

    def test_transient_download_errors_are_retried(self):
        scen = harness.make_scenario(1, 2, seed="flaky")
        name = scen["runs"][0]["documents"][0]["document_name"]
        platform = self.start_platform(scenario=scen)
        platform.faults(files={name: [{"status": 503}, {"status": 429, "retry_after": 0},
                                      {"truncate": True}]})
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        self.assertEqual(len(platform.uploads()), 1)

    def test_backend_redirect_to_another_origin_fails_the_run(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(polls_to_complete=1)
        # Another host's JSON must not become the run's report.
        elsewhere = platform.base_url + "/_control/runs"
        backend.faults(report=[{"status": 302, "headers": {"Location": elsewhere}}])
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 1, res)
        self.assertEqual(platform.uploads(), [])
        self.assertEqual(len(backend.records()["reports"]), 1)
        log = self.log_text()
        self.assertIn("backend report", log)
        self.assertIn("HTTP 302 redirect to another origin (http://127.0.0.1:%d) refused"
                      % platform.port, log)

    def test_platform_error_is_logged_with_api_returned(self):
        for fault in ({"status": 500}, {"body": {"code": 401, "status": "error",
                                                 "message": "token expired"}}):
            with self.subTest(fault=fault):
                platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
                platform.faults(get=[fault] * 5)
                backend = self.start_backend()
                res = self.run_once(platform, backend, retries=1)
                self.assertEqual(res.returncode, 1, res)
                log = self.log_text()
                self.assertRegex(log, r"API returned")
                self.assertNoSecrets(log)
                self.assertEqual(platform.uploads(), [])
                platform.stop()

    def test_malformed_platform_answer_fails_cleanly(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        platform.faults(get=[{"malformed": True}])
        backend = self.start_backend()
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 1, res)
        self.assertFalse(res.timed_out)
        self.assertRegex(self.log_text(), r"(?i)malformed|json")

    def test_upload_5xx_is_retried_and_uploaded_once(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        platform.faults(upload=[{"status": 503}, {"drop": True}])
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        ok = [u for u in platform.uploads() if u["status"] == 200]
        self.assertEqual(len(ok), 1)

    def test_failed_batch_fails_the_run(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(outcome="failed", polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 1, res)
        self.assertEqual(platform.uploads(), [])
        self.assertIn("failed", self.log_text())
        self.assertTempClean()

    def test_batch_timeout(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(outcome="never")
        res = self.run_once(platform, backend, batch_timeout_s=2)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("did not complete within 2 s", self.log_text())
        self.assertEqual(platform.uploads(), [])

    def test_hostile_document_names_are_sanitised(self):
        scen = harness.make_scenario(1, 2, seed="evil", descriptions=False)
        docs = scen["runs"][0]["documents"]
        docs[0]["document_name"] = "../../../etc/evil.jpg"
        docs[1]["document_name"] = "evil.jpg"
        for d in docs:
            d.pop("_gen")
            d["document_path"] = "{base}/gen/x.jpg?bytes=900&kind=jpeg&{sas}"
        platform = self.start_platform(scenario=scen)
        backend = self.start_backend(polls_to_complete=1)
        res = self.run_once(platform, backend)
        self.assertEqual(res.returncode, 0, res)
        names = sorted(i["filename"] for i in backend.records()["images"].values())
        self.assertEqual(names, ["evil-2.jpg", "evil.jpg"])
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "etc")))

    def test_sigterm_mid_run_cleans_temp_files(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(outcome="never")
        cfg = self.write_config(self.settings(platform, backend))
        proc = self.start_program("visionbatch", "run-once", "--config", cfg)
        harness.wait_until(lambda: backend.batches(), timeout=20, message="batch started")
        work = os.path.join(self.tmp, "work")
        self.assertTrue(os.listdir(work))
        proc.signal(signal.SIGTERM)
        self.assertEqual(proc.wait(15), 128 + signal.SIGTERM)
        self.assertTempClean()
        self.assertEqual(platform.uploads(), [])

    # ---- big reports, temp directory safety, what killed processes leave ----

    def test_big_report_is_streamed_whole_and_the_cap_holds(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(polls_to_complete=1)
        backend.config(report_bytes=6_000_000)
        res = self.run_once(platform, backend, max_report_bytes=5_000_000)
        self.assertEqual(res.returncode, 1, res)
        # Announced too big (Content-Length) or found so while streaming.
        self.assertRegex(self.log_text(), r"report failed: .*(Maximum file size exceeded|"
                                          r"exceeds 5000000 bytes)")
        self.assertEqual([u for u in platform.uploads() if u["status"] == 200], [])
        self.assertTempClean()
        res = self.run_once(platform, backend, max_report_bytes=6_000_000)
        self.assertEqual(res.returncode, 0, res)
        ups = [u for u in platform.uploads() if u["status"] == 200]
        self.assertEqual(len(ups), 1)
        self.assertEqual(ups[0]["file"]["size"], 6_000_000)
        self.assertTempClean()

    def test_temp_dir_writable_by_others_is_refused(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(polls_to_complete=1)
        shared = os.path.join(self.tmp, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        res = self.run_once(platform, backend, temp_dir=shared)
        self.assertEqual(res.returncode, 2, res)
        self.assertIn("writable by group or others without the sticky bit", self.log_text())
        self.assertEqual(os.listdir(shared), [])
        self.assertEqual(platform.uploads(), [])
        # The same directory with the sticky bit (like /tmp) is used through a
        # private subdirectory of ours.
        os.chmod(shared, 0o1777)
        res = self.run_once(platform, backend, temp_dir=shared)
        self.assertEqual(res.returncode, 0, res)
        sub = os.path.join(shared, "visionbatch-%d" % os.geteuid())
        self.assertEqual(os.listdir(shared), [os.path.basename(sub)])
        self.assertEqual(os.stat(sub).st_mode & 0o777, 0o700)
        self.assertEqual(os.listdir(sub), [])

    def test_run_dir_swapped_for_a_symlink_mid_run_writes_nothing_outside(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(batch_delay=3, polls_to_complete=1)
        cfg = self.write_config(self.settings(platform, backend))
        work = os.path.join(self.tmp, "work")
        target = os.path.join(self.tmp, "target")  # where an attacker wants the files
        os.mkdir(target)
        proc = self.start_program("visionbatch", "run-once", "--config", cfg)
        harness.wait_until(lambda: backend.batches(), timeout=20, message="batch started")
        (name,) = os.listdir(work)
        run_dir = os.path.join(work, name)
        moved = os.path.join(self.tmp, "moved")
        os.rename(run_dir, moved)
        os.symlink(target, run_dir)
        self.assertEqual(proc.wait(60), 0, proc.stderr()[-3000:])
        self.assertEqual(os.listdir(target), [], "files written through the link")
        ups = [u for u in platform.uploads() if u["status"] == 200]
        self.assertEqual(len(ups), 1)
        self.assertIn("oceanix_01.jpg", ups[0]["text"])  # the real report went up
        self.assertTrue(os.path.islink(run_dir))  # the link itself is not ours to remove

    def test_run_dir_of_a_killed_process_is_swept_and_a_live_one_kept(self):
        platform = self.start_platform(scenario=harness.GUIDE_SCENARIO)
        backend = self.start_backend(outcome="never")
        cfg = self.write_config(self.settings(platform, backend))
        work = os.path.join(self.tmp, "work")
        killed = self.start_program("visionbatch", "run-once", "--config", cfg)
        harness.wait_until(lambda: backend.batches(), timeout=20, message="first batch started")
        left = os.listdir(work)
        self.assertEqual(len(left), 1, left)
        killed.signal(signal.SIGKILL)
        self.assertEqual(killed.wait(15), -signal.SIGKILL)
        self.assertEqual(os.listdir(work), left, "kill -9 leaves the run dir behind")

        # The next run-once sweeps it at start, then works in a run dir of its own.
        live = self.start_program("visionbatch", "run-once", "--config", cfg)
        harness.wait_until(lambda: len(backend.batches()) == 2, timeout=20,
                           message="second batch started")
        now = os.listdir(work)
        self.assertEqual(len(now), 1, now)
        self.assertNotIn(left[0], now)
        self.assertIn("temp sweep: removed", live.stderr() + self.log_text())

        # A third process (nothing to do) sweeps too, and keeps the live run's dir.
        empty = self.start_platform(scenario={"runs": []})
        res = self.run_once(empty, backend)
        self.assertEqual(res.returncode, 0, res)
        self.assertEqual(os.listdir(work), now)
        self.assertTrue(live.alive())
        live.signal(signal.SIGTERM)
        self.assertEqual(live.wait(15), 128 + signal.SIGTERM)
        self.assertTempClean()


if __name__ == "__main__":
    unittest.main()
