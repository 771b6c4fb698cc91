#!/usr/bin/env python3
"""Stand-in for the batch analysis backend (SPEC §3), for system tests.

Endpoints:

  POST /upload-image     multipart: `image` (file; filename and content type
        required), `chat_id` (form field). 200 {"image_id","filename",
        "content_type","chat_id","size"}. Missing image/filename/content type
        -> 422; content type not image/* (with config require_image_type) -> 400;
        not multipart -> 422.
  POST /batch-analyze    JSON {"image_ids","analysis_prompt","report_format",
        "organization","descriptions_map"}. 200 {"batch_id","status":"queued",
        "total_images","message"}. 400 {"detail"} when image_ids is missing,
        empty, longer than config max_images (20), not a list of strings, or
        names an unknown image id; 400 when descriptions_map is neither an
        object nor null; 422 on a body that is not a JSON object.
  GET  /batch-analyze/{id}/status   {"batch_id","status","processed_count",
        "total_images","created_at","error"?}. Poll k of a batch answers
        "queued" for k = 1, "processing" after, and "completed" once both
        k >= config polls_to_complete and config batch_delay seconds have passed
        since the batch was created. processed_count = total_images when
        completed, else a proportional count below it. A batch whose outcome is
        "failed" ends "failed" (with "error") instead; "never" stays
        "processing" forever. 404 for an unknown id.
  GET  /batch-analyze/{id}/report?format=html&include_images=true   text/html
        report: prompt, organization, and every image's file name and
        description (HTML-escaped); images of at most 64 KiB are embedded as
        data: URIs when include_images=true. 400 {"detail"} until completed
        (and for a failed batch), 404 for an unknown id. With config
        report_bytes > 0 the report is padded to exactly that many bytes (a
        <pre class="pad"> block before </body>), generated while it is sent:
        the stand-in never holds a big report in memory.
  GET  /available_models {"models": [...]}

Command line: --port 0 (prints "PORT <n>" first on stdout), --host, --scenario
FILE ({"config": {...}, "faults": {...}}), --record-dir DIR (uploaded images
saved there when config save_images is true), --batch-delay SECONDS,
--polls-to-complete N, --outcome completed|failed|never.

Control API (no auth; loopback tests only), JSON in and out:

  POST /_control/faults  append to fault queues:
        {"upload": [entry...],   POST /upload-image
         "batch":  [entry...],   POST /batch-analyze
         "status": [entry...],   GET .../status
         "report": [entry...],   GET .../report
         "models": [entry...]}   GET /available_models
        A body key that is a config key sets that config value.
  GET  /_control/faults, GET|POST /_control/config, GET /_control/records,
  POST /_control/reset (clears records, faults, images and batches; restores
        the startup config).

Fault entries are those of platform_server.py ({"delay"}, {"status",
"retry_after"}, {"body"}, {"malformed"}, {"hang"}, {"drop"}, {"apply"},
{"headers"}), consumed once each, in order. In the "batch" queue an entry may
also carry {"outcome": "completed"|"failed"|"never"}: the batch created by
that request gets this outcome (with no other key the request is otherwise
answered normally). With "apply": true the batch is created but the answer is
the fault's.

Config keys (defaults): polls_to_complete 3, batch_delay 0.0, outcome
"completed", max_images 20, require_image_type true, save_images false,
model_names ["gpt-4o", "gpt-4o-mini"], report_bytes 0 (natural size).

Records (GET /_control/records):
  {"uploads": [{"seq","time","headers","content_type","transfer_encoding",
                "fields","image","image_id","status","fault"}],
   "batches": [{"seq","time","headers","request" (the whole JSON),"batch_id",
                "status","fault","outcome"}],
   "statuses": [{"seq","time","batch_id","answer","status","fault"}],
   "reports": [{"seq","time","batch_id","query","status","size","fault"}],
   "models":  [{"seq","time","status","fault"}],
   "images":  {image_id: {"filename","content_type","chat_id","size","sha256",
                          "head_hex"}},
   "batch_state": {batch_id: {"polls","status","outcome","total_images",
                              "created_at"}}}
"""

import base64
import html
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

EMBED_LIMIT = 64 * 1024
PAD_OPEN = b'<pre class="pad">\n'
PAD_CLOSE = b"</pre>\n"
PAD_BLOCK = (b"padding of a big report, generated while it is sent.\n" * 1300)[:64 * 1024]
OUTCOMES = ("completed", "failed", "never")


class BackendState(common.StubState):
    def __init__(self, config, record_dir):
        self.images = {}
        self.batches = {}
        super().__init__(("upload", "batch", "status", "report", "models"), config, record_dir)

    def reset_common(self):
        with self.lock:
            super().reset_common()
            self.images = {}
            self.batches = {}


def batch_status(b, cfg, now, count_poll):
    """Advances and returns (status, processed_count) for a batch dict."""
    if count_poll:
        b["polls"] += 1
    total = b["total_images"]
    done = b["polls"] >= int(cfg["polls_to_complete"]) and now - b["created_at"] >= float(cfg["batch_delay"])
    if b["status"] in ("completed", "failed"):
        pass
    elif b["polls"] <= 1 and not done:
        b["status"] = "queued"
    elif done and b["outcome"] == "completed":
        b["status"] = "completed"
    elif done and b["outcome"] == "failed":
        b["status"] = "failed"
    else:
        b["status"] = "processing"
    if b["status"] == "completed":
        count = total
    elif b["status"] == "queued":
        count = 0
    else:
        need = max(int(cfg["polls_to_complete"]), 1)
        frac = min(b["polls"] / need, 1.0)
        delay = float(cfg["batch_delay"])
        if delay > 0:
            frac = min(frac, (now - b["created_at"]) / delay)
        count = min(total - 1, int(total * frac)) if total else 0
        count = max(count, 0)
    return b["status"], count


class BackendHandler(common.StubHandler):
    server_version = "vb-backend-stub/1"

    def route(self):
        p = self.url_path.rstrip("/") or "/"
        if p == "/upload-image":
            return self.do_upload() if self.command == "POST" else self.not_allowed()
        if p == "/batch-analyze":
            return self.do_batch() if self.command == "POST" else self.not_allowed()
        if p == "/available_models":
            return self.do_models() if self.command == "GET" else self.not_allowed()
        parts = p.split("/")
        if len(parts) == 4 and parts[1] == "batch-analyze" and parts[3] in ("status", "report"):
            if self.command != "GET":
                return self.not_allowed()
            return self.do_status(parts[2]) if parts[3] == "status" else self.do_report(parts[2])
        self.discard_body()
        self.send_detail(404, "Not Found")

    def not_allowed(self):
        self.discard_body()
        self.send_detail(405, "Method Not Allowed")

    # -- upload-image ------------------------------------------------------------

    def do_upload(self):
        st = self.state
        seq = st.next_seq()
        rec = st.record("uploads", {"seq": seq, "headers": self.headers_dict(),
                                    "content_type": self.headers.get("Content-Type"),
                                    "transfer_encoding": self.headers.get("Transfer-Encoding"),
                                    "fields": {}, "image": None, "image_id": None,
                                    "status": None, "fault": None})
        fault = st.take_fault("upload")
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        save = st.record_dir if st.cfg("save_images") else None
        try:
            parser = common.MultipartParser.for_content_type(
                self.headers.get("Content-Type"), keep_bytes=EMBED_LIMIT, save_dir=save,
                save_prefix="image_%d" % seq)
            for chunk in self.iter_body():
                parser.feed(chunk)
            parts = parser.close()
        except common.MultipartError as e:
            self.discard_body()
            rec["status"] = 422
            return self.send_detail(422, str(e))
        images = [p for p in parts if p.name == "image"]
        for p in parts:
            if p.filename is None and p.name is not None:
                rec["fields"][p.name] = p.text()
        if not images:
            rec["status"] = 422
            return self.send_detail(422, "field required: image")
        img = images[0]
        rec["image"] = img.to_record()
        if not img.filename:
            rec["status"] = 422
            return self.send_detail(422, "image needs a filename")
        if not img.content_type:
            rec["status"] = 422
            return self.send_detail(422, "image needs a content type")
        if st.cfg("require_image_type") and not img.content_type.lower().startswith("image/"):
            rec["status"] = 400
            return self.send_detail(400, "File must be an image (got %s)" % img.content_type)
        image_id = common.uuid.uuid4().hex
        chat_id = rec["fields"].get("chat_id")
        with st.lock:
            st.images[image_id] = {"filename": img.filename, "content_type": img.content_type,
                                   "chat_id": chat_id, "size": img.size, "sha256": img.sha256,
                                   "head_hex": img.head.hex(), "data": img.data}
        rec["image_id"] = image_id
        rec["status"] = 200
        if fault and fault.get("apply"):
            self.fault_answer(fault, consume_body=False)
            rec["status"] = fault.get("status", 200)
            return
        self.send_json(200, {"image_id": image_id, "filename": img.filename,
                             "content_type": img.content_type, "chat_id": chat_id, "size": img.size})

    # -- batch-analyze -----------------------------------------------------------

    def do_batch(self):
        st = self.state
        rec = st.record("batches", {"headers": self.headers_dict(), "request": None, "batch_id": None,
                                    "status": None, "fault": None, "outcome": None})
        fault = st.take_fault("batch")
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        body = self.json_body()
        if body is common.Abort:
            rec["status"] = 422
            return
        rec["request"] = body

        def bad(status, detail):
            rec["status"] = status
            self.send_detail(status, detail)

        if not isinstance(body, dict):
            return bad(422, "body must be a JSON object")
        ids = body.get("image_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return bad(400, "image_ids must be a list of strings")
        if not ids:
            return bad(400, "No images provided")
        limit = int(st.cfg("max_images"))
        if len(ids) > limit:
            return bad(400, "Maximum %d images allowed per batch" % limit)
        dm = body.get("descriptions_map")
        if dm is not None and not isinstance(dm, dict):
            return bad(400, "descriptions_map must be an object or null")
        with st.lock:
            unknown = [i for i in ids if i not in st.images]
        if unknown:
            return bad(400, "Unknown image ids: %s" % ", ".join(unknown[:5]))
        outcome = (fault or {}).get("outcome") or st.cfg("outcome")
        if outcome not in OUTCOMES:
            outcome = "completed"
        batch_id = common.uuid.uuid4().hex
        with st.lock:
            st.batches[batch_id] = {"request": body, "polls": 0, "status": "queued", "outcome": outcome,
                                    "total_images": len(ids), "created_at": time.time()}
        rec.update(batch_id=batch_id, status=200, outcome=outcome)
        if fault and fault.get("apply"):
            self.fault_answer(fault, consume_body=False)
            rec["status"] = fault.get("status", 200)
            return
        self.send_json(200, {"batch_id": batch_id, "status": "queued", "total_images": len(ids),
                             "message": "Batch analysis started"})

    def do_status(self, batch_id):
        st = self.state
        rec = st.record("statuses", {"batch_id": batch_id, "answer": None, "status": None, "fault": None})
        fault = st.take_fault("status")
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        with st.lock:
            b = st.batches.get(batch_id)
            if b is not None:
                status, count = batch_status(b, st.config, time.time(), True)
                ans = {"batch_id": batch_id, "status": status, "processed_count": count,
                       "total_images": b["total_images"],
                       "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b["created_at"]))}
                if status == "failed":
                    ans["error"] = "analysis failed (simulated)"
        if b is None:
            rec["status"] = 404
            return self.send_detail(404, "Batch %s not found" % batch_id)
        rec["answer"] = ans
        rec["status"] = 200
        if fault and fault.get("apply"):
            self.fault_answer(fault)
            rec["status"] = fault.get("status", 200)
            return
        self.send_json(200, ans)

    def do_report(self, batch_id):
        st = self.state
        rec = st.record("reports", {"batch_id": batch_id, "query": dict(self.query), "status": None,
                                    "size": None, "fault": None})
        fault = st.take_fault("report")
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        with st.lock:
            b = st.batches.get(batch_id)
            if b is not None:
                status, _ = batch_status(b, st.config, time.time(), False)
                images = [dict(st.images.get(i, {}), image_id=i) for i in b["request"]["image_ids"]]
        if b is None:
            rec["status"] = 404
            return self.send_detail(404, "Batch %s not found" % batch_id)
        if status != "completed":
            rec["status"] = 400
            return self.send_detail(400, "Batch %s is not completed (status: %s)" % (batch_id, status))
        body = render_report(batch_id, b["request"], images,
                             self.query.get("include_images", "").lower() == "true").encode("utf-8")
        rec["status"] = 200
        pad_to = int(st.cfg("report_bytes") or 0)
        if pad_to <= len(body) + len(PAD_OPEN) + len(PAD_CLOSE):
            rec["size"] = len(body)
            return self.send_bytes(200, body, "text/html; charset=utf-8")
        rec["size"] = pad_to
        self.send_padded(body, pad_to)

    def send_padded(self, body, size):
        """Sends `body` grown to exactly `size` bytes by filler before </body>,
        produced chunk by chunk while it is written."""
        cut = body.rfind(b"</body>")
        head, tail = (body[:cut], body[cut:]) if cut >= 0 else (body, b"")
        fill = size - len(head) - len(tail) - len(PAD_OPEN) - len(PAD_CLOSE)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.sent = True
        self.wfile.write(head + PAD_OPEN)
        while fill > 0:
            n = min(fill, len(PAD_BLOCK))
            self.wfile.write(PAD_BLOCK[:n])
            fill -= n
        self.wfile.write(PAD_CLOSE + tail)

    def do_models(self):
        st = self.state
        rec = st.record("models", {"status": None, "fault": None})
        fault = st.take_fault("models")
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        rec["status"] = 200
        self.send_json(200, {"models": list(st.cfg("model_names"))})

    def control_records(self):
        st = self.state
        out = {"uploads": [], "batches": [], "statuses": [], "reports": [], "models": []}
        out.update(st.records)
        out["images"] = {k: {kk: vv for kk, vv in v.items() if kk != "data"} for k, v in st.images.items()}
        out["batch_state"] = {k: {kk: v[kk] for kk in ("polls", "status", "outcome", "total_images",
                                                       "created_at")} for k, v in st.batches.items()}
        return out


def render_report(batch_id, req, images, include_images):
    esc = html.escape
    dm = req.get("descriptions_map") or {}
    rows = []
    for n, img in enumerate(images, 1):
        name = img.get("filename") or img["image_id"]
        desc = dm.get(name) if isinstance(dm, dict) else None
        pic = ""
        if include_images and img.get("data") is not None:
            pic = '<img alt="%s" src="data:%s;base64,%s">' % (
                esc(name), esc(img.get("content_type") or "application/octet-stream"),
                base64.b64encode(img["data"]).decode())
        rows.append('<section class="image"><h2>Image %d: <span class="filename">%s</span></h2>\n'
                    '<p class="description">%s</p>\n<p class="finding">No anomalies detected (simulated).'
                    '</p>%s</section>' % (n, esc(name), esc(desc) if isinstance(desc, str) else
                                         "<em>no description</em>", pic))
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Batch report %s</title></head>\n'
            '<body><h1>Batch analysis report</h1>\n<p class="batch">Batch: %s</p>\n'
            '<p class="organization">Organization: %s</p>\n<p class="prompt">Prompt: %s</p>\n'
            '<p class="count">Images: %d</p>\n%s\n</body></html>\n' % (
                esc(batch_id), esc(batch_id), esc(str(req.get("organization"))),
                esc(str(req.get("analysis_prompt"))), len(images), "\n".join(rows)))


def main(argv=None):
    ap = common.make_arg_parser("Stand-in batch analysis backend for visionbatch system tests.",
                                "scenario JSON: {\"config\": {...}, \"faults\": {...}}")
    ap.add_argument("--batch-delay", type=float, help="seconds each batch takes before it can complete")
    ap.add_argument("--polls-to-complete", type=int, help="status polls before a batch completes (default 3)")
    ap.add_argument("--outcome", choices=OUTCOMES, help="how batches end (default completed)")
    ap.epilog = __doc__
    args = ap.parse_args(argv)
    config = {"polls_to_complete": 3, "batch_delay": 0.0, "outcome": "completed", "max_images": 20,
              "require_image_type": True, "save_images": False, "model_names": ["gpt-4o", "gpt-4o-mini"],
              "report_bytes": 0}
    scen = common.load_json_file(args.scenario) if args.scenario else {}
    for k, v in (scen.get("config") or {}).items():
        if k not in config:
            ap.error("scenario: unknown config key %r" % k)
        config[k] = v
    if args.batch_delay is not None:
        config["batch_delay"] = args.batch_delay
    if args.polls_to_complete is not None:
        config["polls_to_complete"] = args.polls_to_complete
    if args.outcome:
        config["outcome"] = args.outcome
    if args.record_dir:
        os.makedirs(args.record_dir, exist_ok=True)
    state = BackendState(config, args.record_dir)
    state.add_faults(scen.get("faults") or {})
    common.serve(BackendHandler, state, args.host, args.port)


if __name__ == "__main__":
    main()
