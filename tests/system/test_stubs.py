"""System tests of the stand-in servers and the harness themselves.

The stand-ins replace the user's External Vision Analysis API and batch
backend in every other system test, so they must follow SPEC §2 and §3
exactly, including their failure modes. These tests drive them over HTTP with
urllib only; no visionbatch program is needed.
"""

import hashlib
import html
import http.client
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import time
import unittest
import urllib.error
import zlib

import harness
from harness import http_request

REPORT = "<html><body><h1>Report</h1><p>ok &amp; done</p></body></html>\n"


def upload_report(platform, run_id=harness.GUIDE_RUN_ID, org_id=harness.GUIDE_ORG_ID, api_key=None,
                  data=REPORT.encode(), filename="report_b1.html", fields=None):
    f = {"organization_id": org_id, "vision_analysis_id": run_id}
    if fields is not None:
        f = fields
    body, ctype = harness.build_multipart(f, [("file", filename, "text/html", data)])
    key = platform.api_key if api_key is None else api_key
    headers = {"Content-Type": ctype}
    if key:
        headers["Authorization"] = "Bearer " + key
    return http_request("POST", platform.post_url, body=body, headers=headers)


def upload_image(backend, name="a.jpg", ctype="image/jpeg", data=None, chat_id="cron_batch_job"):
    data = data if data is not None else harness.common.tiny_image("jpeg")
    body, hdr = harness.build_multipart({"chat_id": chat_id}, [("image", name, ctype, data)])
    return http_request("POST", backend.url + "/upload-image", body=body, headers={"Content-Type": hdr})


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class MultipartParserTest(unittest.TestCase):
    def test_parses_parts_fed_one_byte_at_a_time(self):
        data = b"\r\n--notaboundary\r\n" + bytes(range(256)) * 3
        body, ctype = harness.build_multipart({"organization_id": "ORG", "vision_analysis_id": "RUN"},
                                              [("file", "report.html", "text/html", data)])
        p = harness.common.MultipartParser.for_content_type(ctype)
        for i in range(len(body)):
            p.feed(body[i:i + 1])
        parts = p.close()
        self.assertEqual([x.name for x in parts], ["organization_id", "vision_analysis_id", "file"])
        self.assertEqual(parts[0].data, b"ORG")
        self.assertEqual(parts[2].data, data)
        self.assertEqual(parts[2].filename, "report.html")
        self.assertEqual(parts[2].content_type, "text/html")
        self.assertEqual(parts[2].sha256, hashlib.sha256(data).hexdigest())

    def test_rejects_truncated_body(self):
        body, ctype = harness.build_multipart({"a": "b"}, [])
        with self.assertRaises(harness.MultipartError):
            harness.parse_multipart(body[:-10], ctype)

    def test_rejects_non_multipart_content_type(self):
        with self.assertRaises(harness.MultipartError):
            harness.parse_multipart(b"{}", "application/json")

    def test_decodes_quoted_and_extended_filenames(self):
        _, params = harness.common.parse_header_params(
            'form-data; name="file"; filename="a \\"b\\";c.html"')
        self.assertEqual(params["filename"], 'a "b";c.html')
        _, params = harness.common.parse_header_params(
            "form-data; name=file; filename=x.html; filename*=UTF-8''r%C3%A9port.html")
        self.assertEqual(params["filename"], "r\u00e9port.html")

    def test_large_part_is_hashed_but_not_kept(self):
        data = os.urandom(300000)
        body, ctype = harness.build_multipart({}, [("image", "x.jpg", "image/jpeg", data)])
        parts = harness.parse_multipart(body, ctype, keep_bytes=1000)
        self.assertIsNone(parts[0].data)
        self.assertEqual(parts[0].size, len(data))
        self.assertEqual(parts[0].sha256, hashlib.sha256(data).hexdigest())


class ImageTest(unittest.TestCase):
    def test_fixture_images_are_real_jpegs(self):
        for name in ("oceanix_01.jpg", "oceanix_02.jpg"):
            with open(os.path.join(harness.FIXTURES_DIR, name), "rb") as f:
                data = f.read()
            self.assertEqual(data[:4], b"\xff\xd8\xff\xe0")
            self.assertEqual(data[-2:], b"\xff\xd9")
            djpeg = shutil.which("djpeg")
            if djpeg:
                r = subprocess.run([djpeg, "-pnm"], input=data, capture_output=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(r.stdout.startswith(b"P5\n48 32\n"), r.stdout[:20])
                self.assertEqual(r.stderr, b"")

    def test_padded_png_has_exact_size_and_valid_chunks(self):
        data = b"".join(harness.common.padded_image_chunks("png", 300001, chunk=4096))
        self.assertEqual(len(data), 300001)
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        pos, types = 8, []
        while pos < len(data):
            n, = struct.unpack(">I", data[pos:pos + 4])
            ctype = data[pos + 4:pos + 8]
            crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
            self.assertEqual(zlib.crc32(data[pos + 4:pos + 8 + n]) & 0xFFFFFFFF, crc, ctype)
            types.append(ctype)
            pos += 12 + n
        self.assertEqual(types, [b"IHDR", b"vbPd", b"IDAT", b"IEND"])

    def test_padded_jpeg_decodes_at_awkward_sizes(self):
        base = len(harness.common.tiny_image("jpeg"))
        for size in (base, base + 1, base + 3, base + 4, base + 65537, base + 200000):
            data = b"".join(harness.common.padded_image_chunks("jpeg", size))
            self.assertEqual(len(data), size)
            self.assertEqual(data[:2], b"\xff\xd8")
            djpeg = shutil.which("djpeg")
            if djpeg:
                r = subprocess.run([djpeg, "-pnm"], input=data, capture_output=True)
                self.assertEqual(r.returncode, 0, (size, r.stderr))


class PlatformTest(harness.SystemTestCase):
    def setUp(self):
        super().setUp()
        self.p = self.start_platform(scenario=harness.guide_scenario(), record=True)

    def add_runs(self, n, **kw):
        scen = harness.make_scenario(n, 1, **kw)
        self.p.add_scenario(scen)
        return [r["vision_analysis_id"] for r in scen["runs"]]

    def test_guide_envelope_and_documents(self):
        r = self.p.list_runs(page=1, page_size=1)
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(set(body), {"code", "status", "data"})
        self.assertEqual((body["code"], body["status"]), (200, "success"))
        self.assertEqual(set(body["data"]), {"page", "page_size", "total", "vision_analysis"})
        self.assertEqual(body["data"]["total"], 1)
        run = body["data"]["vision_analysis"][0]
        self.assertEqual(run["vision_analysis_id"], harness.GUIDE_RUN_ID)
        self.assertEqual(run["organization_id"], harness.GUIDE_ORG_ID)
        self.assertEqual(run["organization_name"], "LexCorp")
        self.assertEqual(run["vision_analysis_run_code"], "VISION_RUN_001")
        self.assertIs(run["is_processed"], False)
        self.assertEqual([d["document_type"] for d in run["documents"]], ["image", "image", "json"])
        for d in run["documents"]:
            self.assertIn("sig=" + harness.SECRET_MARKER, d["document_path"])
            got = http_request("GET", d["document_path"])
            self.assertEqual(got.status, 200)
            with open(os.path.join(harness.FIXTURES_DIR, d["document_name"]), "rb") as f:
                self.assertEqual(got.body, f.read())
        desc = http_request("GET", run["documents"][2]["document_path"])
        self.assertEqual(desc.json(), harness.GUIDE_DESCRIPTIONS)
        self.assertTrue(desc.headers["content-type"].startswith("application/json"))
        self.assertEqual(http_request("GET", run["documents"][0]["document_path"]).headers["content-type"],
                         "image/jpeg")

    def test_rejects_missing_and_wrong_bearer(self):
        r = self.p.list_runs(api_key="")
        self.assertEqual(r.status, 401)
        self.assertIn("detail", r.json())
        r = self.p.list_runs(api_key="not-the-key")
        self.assertEqual(r.status, 401)
        gets = self.p.gets()
        self.assertEqual([g["auth"] for g in gets], ["missing", "wrong"])
        for g in gets:
            self.assertNotIn("authorization", {k.lower() for k in g["headers"]})
        self.assertEqual(upload_report(self.p, api_key="bad").status, 401)
        self.assertEqual(self.p.unprocessed_ids(), [harness.GUIDE_RUN_ID])

    def test_pages_start_at_one_and_honour_page_size(self):
        ids = [harness.GUIDE_RUN_ID] + self.add_runs(4)
        seen = []
        pages = [self.p.list_runs(page=n, page_size=2).json()["data"] for n in (1, 2, 3, 4)]
        self.assertEqual([len(d["vision_analysis"]) for d in pages], [2, 2, 1, 0])
        for d in pages:
            self.assertEqual(d["total"], 5)
            seen += [r["vision_analysis_id"] for r in d["vision_analysis"]]
        self.assertEqual(pages[1]["page"], 2)
        self.assertEqual(pages[1]["page_size"], 2)
        self.assertEqual(seen, ids)
        self.assertEqual(len(self.p.list_runs(page=None, page_size=None).json()["data"]["vision_analysis"]), 5)
        self.assertEqual(self.p.list_runs(page=0, page_size=2).status, 422)
        self.assertEqual(self.p.list_runs(page=1, page_size="x").status, 422)

    def test_paging_quirks(self):
        self.add_runs(2)

        def page(n, mode):
            self.p.config(paging=mode)
            return self.p.list_runs(page=n, page_size=1).json()["data"]

        self.assertEqual(len(page(2, "ignore")["vision_analysis"]), 3)
        first = page(1, "repeat")["vision_analysis"]
        self.assertEqual(page(3, "repeat")["vision_analysis"], first)
        d = page(2, "total_wrong")
        self.assertEqual((d["total"], len(d["vision_analysis"])), (1, 1))
        self.assertNotIn("total", page(1, "total_missing"))
        d = page(2, "zero_meta")
        self.assertEqual((d["page"], d["page_size"], d["total"], len(d["vision_analysis"])), (0, 0, 3, 1))
        self.p.faults({"paging": "normal"})
        self.assertEqual(self.p.config()["paging"], "normal")

    def test_upload_is_recorded_and_marks_run_processed(self):
        r = upload_report(self.p)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json()["code"], r.json()["status"]), (200, "success"))
        self.assertEqual(self.p.unprocessed_ids(), [])
        self.assertEqual(self.p.list_runs().json()["data"]["vision_analysis"], [])
        done = self.p.list_runs(is_processed="true").json()["data"]["vision_analysis"]
        self.assertEqual([x["vision_analysis_id"] for x in done], [harness.GUIDE_RUN_ID])
        up = self.p.uploads()[0]
        self.assertEqual(up["auth"], "ok")
        self.assertNotIn("authorization", {k.lower() for k in up["headers"]})
        self.assertEqual(up["fields"], {"organization_id": harness.GUIDE_ORG_ID,
                                        "vision_analysis_id": harness.GUIDE_RUN_ID})
        self.assertEqual(up["file"]["filename"], "report_b1.html")
        self.assertEqual(up["file"]["content_type"], "text/html")
        self.assertEqual(up["file"]["size"], len(REPORT))
        self.assertEqual(up["file"]["sha256"], hashlib.sha256(REPORT.encode()).hexdigest())
        self.assertEqual(up["text"], REPORT)
        self.assertTrue(up["run_known"])
        self.assertTrue(up["org_matches_run"])
        with open(up["body_path"], "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), up["body_sha256"])
        with open(up["file"]["saved_as"], "rb") as f:
            self.assertEqual(f.read(), REPORT.encode())
        self.assertEqual(self.p.records()["runs"][0]["uploads"], 1)

    def test_upload_validation(self):
        self.assertEqual(upload_report(self.p, fields={"organization_id": harness.GUIDE_ORG_ID}).status, 422)
        self.assertEqual(upload_report(self.p, run_id="00000000-0000-0000-0000-000000000000").status, 404)
        r = http_request("POST", self.p.post_url, body=b"{}", headers={
            "Authorization": "Bearer " + self.p.api_key, "Content-Type": "application/json"})
        self.assertEqual(r.status, 422)
        self.assertEqual(self.p.unprocessed_ids(), [harness.GUIDE_RUN_ID])

    def test_chunked_upload_is_accepted(self):
        body, ctype = harness.build_multipart(
            {"organization_id": harness.GUIDE_ORG_ID, "vision_analysis_id": harness.GUIDE_RUN_ID},
            [("file", "report_c.html", "text/html", REPORT.encode())])
        conn = http.client.HTTPConnection("127.0.0.1", self.p.port, timeout=10)
        conn.request("POST", "/api/v1/documents/vision_analysis/upload", body=iter([body[:50], body[50:]]),
                     headers={"Content-Type": ctype, "Authorization": "Bearer " + self.p.api_key,
                              "Transfer-Encoding": "chunked"}, encode_chunked=True)
        r = conn.getresponse()
        self.assertEqual(r.status, 200, r.read())
        conn.close()
        self.assertEqual(self.p.uploads()[0]["transfer_encoding"], "chunked")
        self.assertEqual(self.p.uploads()[0]["text"], REPORT)

    def test_processed_only_after_configured_delay(self):
        self.p.config(processed_delay=1.0)
        self.assertEqual(upload_report(self.p).status, 200)
        self.assertEqual(self.p.unprocessed_ids(), [harness.GUIDE_RUN_ID])
        harness.wait_until(lambda: not self.p.unprocessed_ids(), timeout=5, message="run processed")

    def test_mark_processed_false_keeps_run_listed(self):
        self.p.config(mark_processed=False)
        self.assertEqual(upload_report(self.p).status, 200)
        self.assertEqual(upload_report(self.p).status, 200)
        self.assertEqual(self.p.unprocessed_ids(), [harness.GUIDE_RUN_ID])
        self.assertEqual(self.p.records()["runs"][0]["uploads"], 2)

    def test_get_faults_are_consumed_in_order(self):
        self.p.faults(get=[{"status": 500}, {"status": 429, "retry_after": 1}, {"malformed": True},
                           {"body": {"code": 500, "status": "error", "data": None}}])
        r = self.p.list_runs()
        self.assertEqual((r.status, set(r.json())), (500, {"detail"}))
        r = self.p.list_runs()
        self.assertEqual((r.status, r.headers.get("retry-after")), (429, "1"))
        r = self.p.list_runs()
        self.assertEqual(r.status, 200)
        with self.assertRaises(ValueError):
            r.json()
        self.assertEqual(self.p.list_runs().json()["status"], "error")
        self.assertEqual(self.p.pending_faults(), {"get": []})
        self.assertEqual(self.p.list_runs().json()["data"]["total"], 1)
        self.assertEqual([g["status"] for g in self.p.gets()], [500, 429, 200, 200, 200])

    def test_delay_and_hang_faults(self):
        self.p.faults(get=[{"delay": 0.6}, {"hang": 1.5}, {"drop": True}])
        t0 = time.monotonic()
        self.assertEqual(self.p.list_runs().status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.55)
        with self.assertRaises((socket.timeout, TimeoutError, urllib.error.URLError)):
            http_request("GET", self.p.get_url, headers={"Authorization": "Bearer " + self.p.api_key},
                         timeout=0.5)
        with self.assertRaises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
            self.p.list_runs()
        self.assertEqual(self.p.list_runs().status, 200)

    def test_upload_faults(self):
        self.p.faults(upload=[{"status": 503}, {"status": 500, "apply": True}])
        self.assertEqual(upload_report(self.p).status, 503)
        self.assertEqual(self.p.unprocessed_ids(), [harness.GUIDE_RUN_ID])
        self.assertEqual(upload_report(self.p).status, 500)
        self.assertEqual(self.p.unprocessed_ids(), [])  # the platform did the work anyway
        self.assertEqual([u["status"] for u in self.p.uploads()], [503, 500])

    def test_file_faults_per_name(self):
        docs = self.p.runs()[0]["documents"]
        url1, url2 = docs[0]["document_path"], docs[1]["document_path"]
        self.p.faults(files={"oceanix_02.jpg": [{"status": 500}, {"content_type": "text/plain"},
                                                {"truncate": True}]})
        self.assertEqual(http_request("GET", url1).status, 200)
        self.assertEqual(http_request("GET", url2).status, 500)
        self.assertEqual(http_request("GET", url2).headers["content-type"], "text/plain")
        with self.assertRaises(http.client.IncompleteRead):
            http_request("GET", url2)
        self.assertEqual(http_request("GET", url2).status, 200)
        self.assertEqual(http_request("GET", url2.split("?")[0]).status, 403)
        fetches = self.p.file_fetches()
        self.assertEqual([f["status"] for f in fetches], [200, 500, 200, 200, 200, 403])
        self.assertFalse(any(f["authorization_sent"] for f in fetches))
        self.assertNotIn(harness.SECRET_MARKER, json.dumps(fetches))

    def test_unknown_file_is_404(self):
        r = http_request("GET", "%s/files/nope.jpg?%s" % (self.p.base_url, harness.SAS_QUERY))
        self.assertEqual(r.status, 404)

    def test_gen_streams_exact_size_without_buffering(self):
        size = 96 * 1024 * 1024
        before = rss_kib(self.p.proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", self.p.port, timeout=30)
        conn.request("GET", "/gen/big.jpg?bytes=%d&kind=jpeg&%s" % (size, harness.SAS_QUERY))
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Type"), "image/jpeg")
        self.assertEqual(int(r.getheader("Content-Length")), size)
        total, head, peak = 0, b"", 0
        while True:
            c = r.read(1 << 20)
            if not c:
                break
            if not head:
                head = c[:4]
            total += len(c)
            peak = max(peak, rss_kib(self.p.proc.pid))
        conn.close()
        self.assertEqual(total, size)
        self.assertEqual(head, b"\xff\xd8\xff\xe0")
        self.assertLess(peak - before, 32 * 1024, "server RSS grew by %d KiB" % (peak - before))
        r = http_request("GET", "%s/gen/x.png?bytes=5000&kind=png&%s" % (self.p.base_url, harness.SAS_QUERY))
        self.assertEqual((len(r.body), r.body[:4], r.headers["content-type"]), (5000, b"\x89PNG", "image/png"))

    def test_control_runs_mark_and_reset(self):
        ids = self.add_runs(2, seed="c")
        self.assertEqual(len(self.p.unprocessed_ids()), 3)
        self.p.mark(ids[0])
        self.assertEqual(len(self.p.unprocessed_ids()), 2)
        self.p.faults(get=[{"status": 500}])
        self.p.list_runs()
        self.p.reset()
        self.assertEqual(self.p.unprocessed_ids(), [harness.GUIDE_RUN_ID])
        self.assertEqual(self.p.pending_faults(), {})
        self.assertEqual(self.p.records()["gets"], [])
        with self.assertRaises(RuntimeError):
            self.p.faults(nonsense=[{"status": 500}])
        with self.assertRaises(RuntimeError):
            self.p.faults(get=[{"sttaus": 500}])

    def test_generated_scenario_descriptions_are_served(self):
        scen = harness.make_scenario(2, 3, image_bytes=4000, seed="g",
                                     description=lambda r, i, n: "<b>%d&%d</b>" % (r, i))
        self.p.add_scenario(scen)
        run = [r for r in self.p.runs() if r["vision_analysis_id"] == scen["runs"][1]["vision_analysis_id"]][0]
        self.assertEqual(len(run["documents"]), 4)
        imgs = [d for d in run["documents"] if d["document_type"] == "image"]
        got = http_request("GET", imgs[0]["document_path"])
        self.assertEqual((got.status, len(got.body), got.body[:2]), (200, 4000, b"\xff\xd8"))
        desc = http_request("GET", run["documents"][3]["document_path"]).json()
        self.assertEqual(desc[imgs[2]["document_name"]], "<b>2&3</b>")


class BackendTest(harness.SystemTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.start_backend(polls_to_complete=3)

    def batch(self, ids, **extra):
        body = {"image_ids": ids, "analysis_prompt": "Find <defects> & rust", "report_format": "html",
                "organization": "LexCorp", "descriptions_map": None}
        body.update(extra)
        return http_request("POST", self.b.url + "/batch-analyze", body=body)

    def status(self, bid):
        return http_request("GET", "%s/batch-analyze/%s/status" % (self.b.url, bid))

    def report(self, bid):
        return http_request("GET", "%s/batch-analyze/%s/report?format=html&include_images=true" % (self.b.url, bid))

    def test_upload_image_answers_and_records(self):
        data = harness.common.tiny_image("jpeg")
        r = upload_image(self.b, "oceanix_01.jpg", data=data)
        self.assertEqual(r.status, 200, r.body)
        ans = r.json()
        self.assertEqual(set(ans) >= {"image_id", "filename", "content_type", "chat_id"}, True)
        self.assertEqual((ans["filename"], ans["content_type"], ans["chat_id"]),
                         ("oceanix_01.jpg", "image/jpeg", "cron_batch_job"))
        rec = self.b.uploads()[0]
        self.assertEqual(rec["image"]["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(rec["fields"], {"chat_id": "cron_batch_job"})
        self.assertEqual(self.b.records()["images"][ans["image_id"]]["filename"], "oceanix_01.jpg")

    def test_upload_image_validation(self):
        self.assertEqual(upload_image(self.b, ctype=None).status, 422)
        self.assertEqual(upload_image(self.b, ctype="text/plain").status, 400)
        body, hdr = harness.build_multipart({"chat_id": "x"}, [])
        self.assertEqual(http_request("POST", self.b.url + "/upload-image", body=body,
                                      headers={"Content-Type": hdr}).status, 422)

    def test_batch_limits(self):
        ids = [upload_image(self.b, "i%02d.jpg" % i).json()["image_id"] for i in range(21)]
        r = self.batch(ids)
        self.assertEqual(r.status, 400)
        self.assertIn("20", r.json()["detail"])
        self.assertEqual(self.batch([]).status, 400)
        self.assertEqual(self.batch(ids[:1] + ["nope"]).status, 400)
        self.assertEqual(self.batch(ids[:2], descriptions_map=["x"]).status, 400)
        self.assertEqual(http_request("POST", self.b.url + "/batch-analyze", body=b"not json",
                                      headers={"Content-Type": "application/json"}).status, 422)
        r = self.batch(ids[:20])
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json()["status"], r.json()["total_images"]), ("queued", 20))
        self.assertEqual(self.b.batches()[-1]["request"]["image_ids"], ids[:20])

    def test_status_progression_and_report(self):
        a = upload_image(self.b, "oceanix_01.jpg").json()["image_id"]
        b = upload_image(self.b, "oceanix_02.jpg").json()["image_id"]
        descs = {"oceanix_01.jpg": "Port side <hull> & \"waterline\"", "oceanix_02.jpg": "Starboard deck"}
        bid = self.batch([a, b], descriptions_map=descs).json()["batch_id"]
        self.assertEqual(self.report(bid).status, 400)
        seen = []
        for _ in range(4):
            s = self.status(bid).json()
            seen.append((s["status"], s["processed_count"], s["total_images"]))
        self.assertEqual(seen, [("queued", 0, 2), ("processing", 1, 2), ("completed", 2, 2), ("completed", 2, 2)])
        r = self.report(bid)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        text = r.text()
        for s in ("oceanix_01.jpg", "oceanix_02.jpg", "LexCorp", html.escape("Find <defects> & rust"),
                  html.escape(descs["oceanix_01.jpg"]), "Starboard deck", "data:image/jpeg;base64,"):
            self.assertIn(s, text)
        self.assertNotIn("<hull>", text)
        rep = self.b.records()["reports"]
        self.assertEqual([x["status"] for x in rep], [400, 200])
        self.assertEqual(rep[1]["query"], {"format": "html", "include_images": "true"})
        self.assertEqual(self.status("unknown").status, 404)
        self.assertEqual(self.report("unknown").status, 404)

    def test_failed_and_never_completing_batches(self):
        img = upload_image(self.b).json()["image_id"]
        self.b.faults(batch=[{"outcome": "failed"}, {"outcome": "never"}])
        failed = self.batch([img]).json()["batch_id"]
        never = self.batch([img]).json()["batch_id"]
        states = [self.status(failed).json()["status"] for _ in range(3)]
        self.assertEqual(states, ["queued", "processing", "failed"])
        self.assertIn("error", self.status(failed).json())
        self.assertEqual(self.report(failed).status, 400)
        states = [self.status(never).json()["status"] for _ in range(6)]
        self.assertEqual(states, ["queued"] + ["processing"] * 5)
        self.b.config(outcome="failed")
        third = self.batch([img]).json()["batch_id"]
        self.assertEqual([self.status(third).json()["status"] for _ in range(3)][-1], "failed")

    def test_batch_delay_holds_completion(self):
        self.b.config(polls_to_complete=1, batch_delay=0.8)
        img = upload_image(self.b).json()["image_id"]
        bid = self.batch([img]).json()["batch_id"]
        t0 = time.monotonic()
        self.assertNotEqual(self.status(bid).json()["status"], "completed")
        harness.wait_until(lambda: self.status(bid).json()["status"] == "completed", timeout=5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.7)

    def test_backend_faults(self):
        self.b.faults(upload=[{"status": 500}], batch=[{"status": 503}], status=[{"status": 502}],
                      report=[{"status": 500}], models=[{"status": 500}])
        self.assertEqual(upload_image(self.b).status, 500)
        img = upload_image(self.b).json()["image_id"]
        self.assertEqual(self.batch([img]).status, 503)
        bid = self.batch([img]).json()["batch_id"]
        self.assertEqual(self.status(bid).status, 502)
        for _ in range(3):
            self.status(bid)
        self.assertEqual(self.report(bid).status, 500)
        self.assertEqual(self.report(bid).status, 200)
        self.assertEqual(http_request("GET", self.b.url + "/available_models").status, 500)
        models = http_request("GET", self.b.url + "/available_models")
        self.assertTrue(models.json()["models"])
        self.assertEqual(self.b.pending_faults(),
                         {"upload": [], "batch": [], "status": [], "report": [], "models": []})


class HarnessTest(harness.SystemTestCase):
    def test_config_file_is_private(self):
        path = self.write_config({"external_api_key": "k"})
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(json.load(f), {"external_api_key": "k"})

    def test_run_binary_times_out_and_kills(self):
        r = harness.run_binary("/bin/sh", ["-c", "echo hi; sleep 30"], timeout=0.5)
        self.assertTrue(r.timed_out)
        self.assertIsNone(r.returncode)
        self.assertIn("hi", r.stdout)
        r = harness.run_binary("/bin/sh", ["-c", "echo err >&2; exit 3"], timeout=5)
        self.assertEqual((r.returncode, r.stderr, r.timed_out), (3, "err\n", False))

    def test_stub_stop_kills_the_server(self):
        p = harness.PlatformStub().start()
        pid = p.proc.pid
        p.stop()
        self.assertIsNotNone(p.proc.returncode)
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_processor_config_points_at_stubs(self):
        p = self.start_platform()
        b = self.start_backend()
        cfg = harness.processor_config(p, b)
        self.assertEqual(cfg["external_api_get_url"], p.base_url + "/api/v1/documents/vision_analysis")
        self.assertEqual(cfg["backend_api_url"], b.base_url)
        self.assertEqual(cfg["external_api_key"], harness.DEFAULT_API_KEY)

    def test_assert_no_secrets_catches_sas(self):
        with self.assertRaises(AssertionError):
            self.assertNoSecrets("GET http://x/a.jpg?" + harness.SAS_QUERY)
        self.assertNoSecrets("GET http://x/a.jpg?sv=...&sig=REDACTED")

    def test_cli_help_and_port_line(self):
        for script in ("platform_server.py", "backend_server.py"):
            r = harness.run_binary(harness.sys.executable, [os.path.join(harness.STUBS_DIR, script), "--help"],
                                   timeout=10)
            self.assertEqual(r.returncode, 0)
            self.assertIn("--record-dir", r.stdout)
            self.assertIn("/_control/faults", r.stdout)


if __name__ == "__main__":
    unittest.main()
