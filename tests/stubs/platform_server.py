#!/usr/bin/env python3
"""Stand-in for the External Vision Analysis API (SPEC §2), for system tests.

Serves, on one port:

  GET  /api/v1/documents/vision_analysis?is_processed=false&page=P&page_size=S
       Bearer auth. Envelope exactly as the guide:
       {"code":200,"status":"success","data":{"page","page_size","total",
        "vision_analysis":[run...]}}. Pages start at 1; page_size is honoured
       (clamped to config max_page_size); without page/page_size everything
       is returned. is_processed=false -> unprocessed runs only, true ->
       processed only, absent -> all. page/page_size not integers >= 1 -> 422.
       No/invalid bearer -> 401 {"detail": ...}.
  POST /api/v1/documents/vision_analysis/upload
       Bearer auth; multipart/form-data with `file` (filename + content type),
       `organization_id`, `vision_analysis_id`. Missing parts -> 422, not
       multipart -> 422, unknown vision_analysis_id -> 404. Success: the run is
       marked processed (after config processed_delay seconds, unless
       mark_processed is false) and the answer is
       {"code":200,"status":"success","message":...,"data":{...}}.
  GET|HEAD /files/<name>   a document: an inline scenario file, else a file of
       the fixtures directory. Requires the fake SAS query (sig=...) when config
       require_sas is true (403 otherwise, like blob storage); 404 if unknown.
  GET|HEAD /gen/<name>?bytes=N&kind=jpeg|png   a generated valid image of
       exactly N bytes, streamed in 64 KiB pieces, never held in memory.

Every document URL handed out carries SAS_QUERY (`sv=...&sp=r&sig=SECRETSIG...`)
so tests can check the URL secret never leaks.

Scenario file (--scenario FILE), all keys optional:

  {"api_key": "...",
   "fixtures_dir": "dir relative to the scenario file",
   "config": {config key: value},
   "faults": {fault queues, as POST /_control/faults},
   "runs": [run objects, as in the guide's GET answer],
   "files": {"name": {"json": any} | {"text": str} | {"base64": str}
                   | {"path": "file relative to the scenario"}
                   | {"gen": {"bytes": N, "kind": "jpeg"|"png"}}}}

In run documents, `document_path` may use the placeholders `{base}`
(http://host:port of this server) and `{sas}` (the SAS query); without a
`document_path` the path becomes `{base}/files/<document_name>?{sas}`; a
document with `"_gen": {"bytes": N, "kind": "jpeg"}` gets
`{base}/gen/<document_name>?bytes=N&kind=jpeg&{sas}`. Keys starting with `_`
are never served. `is_processed` is served from the server's own state. A
string may hold lone surrogates "\\udc80".."\\udcff": each is served as the
raw byte it stands for (0x80-0xff), to serve text that is not valid UTF-8.

Control API (no auth; loopback tests only), JSON in and out:

  POST /_control/faults   append to fault queues; body
        {"get":    [entry...],   GET vision_analysis
         "upload": [entry...],   POST .../upload
         "files":  {"<name>": [entry...], "*": [entry...]}}  /files and /gen
        A body key that is a config key (e.g. "paging") sets that config value.
  GET  /_control/faults   what is left in the queues
  POST /_control/config   set config values; GET /_control/config reads them
  POST /_control/runs     {"runs": [run...], "files": {...}} add runs (a run with
                          an existing vision_analysis_id replaces it) and files
  GET  /_control/runs     the runs as served, with their processed state
  POST /_control/mark     {"vision_analysis_id": id, "processed": bool}
  POST /_control/release  let every held upload go on
  GET  /_control/records  everything received (see below)
  POST /_control/reset    clear records and faults, restore config, runs and
                          files to the startup scenario ({"keep_runs": true}
                          keeps the current runs and their state)

Fault entry (each is consumed once, in order, by the next matching request):
  {"delay": s}                 sleep s seconds, then answer normally (or as below)
  {"status": N}                answer N with {"detail": "injected fault (HTTP N)"}
  {"status": N, "retry_after": s}  ... with a Retry-After header
  {"body": obj|str, "status": N}   answer with that body (JSON if not a string)
  {"malformed": true}          200 with a truncated JSON body
  {"hang": s}                  accept, send nothing for s seconds, then close
  {"drop": true}               close the connection without an answer
  {"apply": true, "status": N} do the real work (e.g. mark the run processed),
                               then answer N anyway
  upload only: {"hold": s}     read the whole request, record it with "held": true,
                               then wait until POST /_control/release (or s seconds)
                               before handling it (as the rest of the entry says) —
                               a request on the wire that the server has not acted on
  {"headers": {...}}           extra response headers with a status/body answer
  files only: {"content_type": "text/plain"} serve the file with that type;
              {"truncate": true} announce the full length, send half, close.

Config keys (GET/POST /_control/config; defaults):
  api_key (DEFAULT_API_KEY or --api-key), paging "normal" | "ignore" (every page
  returns everything) | "repeat" (every page returns page 1) | "total_wrong"
  (total = half the real count, so 0 for one run) | "total_missing" (no total)
  | "zero_meta" (page and page_size reported as 0, as in the guide),
  max_page_size 100, default_page_size 10, processed_delay 0.0,
  mark_processed true, require_sas true, blob_outage_until 0 (unix time: until
  then every /files and /gen request answers 503, as a blob store outage).

Records (GET /_control/records):
  {"gets":    [{"seq","time","query","raw_query","headers","auth","status",
                "fault","count"}],
   "uploads": [{"seq","time","auth","headers","content_type","transfer_encoding",
                "body_size","body_sha256","body_path","fields","file","parts",
                "text","run_known","org_matches_run","status","fault"}],
   "files":   [{"seq","time","path","name","query","sig_ok","authorization_sent",
                "status","bytes","fault"}],
   "runs":    [{"vision_analysis_id","processed","processed_at","uploads"}]}
`auth` is "ok", "missing" or "wrong"; `headers` never include Authorization.
`file` is the `file` part: name, filename, content_type, headers, size, sha256,
head_hex, saved_as. `text` is the file part as text when at most 4 MiB.
With --record-dir the raw upload bodies are saved as upload_<seq>.body and
the file parts as upload_<seq>_<i>_<filename>.
"""

import base64
import copy
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

GET_PATH = "/api/v1/documents/vision_analysis"
UPLOAD_PATH = "/api/v1/documents/vision_analysis/upload"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
PAGING_MODES = ("normal", "ignore", "repeat", "total_wrong", "total_missing", "zero_meta")


def normalize_files(spec, base_dir):
    """Turns a scenario 'files' object into {name: ('bytes', b) | ('gen', n, kind)}."""
    out = {}
    if not isinstance(spec, dict):
        raise ValueError("files must be an object")
    for name, f in spec.items():
        if not isinstance(f, dict):
            raise ValueError("file %r must be an object" % name)
        if "json" in f:
            out[name] = ("bytes", (common.json.dumps(f["json"], indent=2, ensure_ascii=False) + "\n").encode())
        elif "text" in f:
            out[name] = ("bytes", f["text"].encode())
        elif "base64" in f:
            out[name] = ("bytes", base64.b64decode(f["base64"]))
        elif "path" in f:
            with open(os.path.join(base_dir or ".", f["path"]), "rb") as fh:
                out[name] = ("bytes", fh.read())
        elif "gen" in f:
            g = f["gen"]
            out[name] = ("gen", int(g.get("bytes", 1024)), g.get("kind", "jpeg"))
        else:
            raise ValueError("file %r: need json, text, base64, path or gen" % name)
    return out


class PlatformState(common.StubState):
    def __init__(self, config, runs, files, fixtures_dir, record_dir):
        self.initial_runs = runs
        self.initial_files = files
        self.fixtures_dir = fixtures_dir
        self.runs = []
        self.by_id = {}  # lower-case run id -> entry of self.runs
        self.files = {}
        super().__init__(("get", "upload", "files"), config, record_dir)
        self.reset_runs()

    def reset_runs(self):
        with self.lock:
            self.runs = [{"run": copy.deepcopy(r), "processed_at": None, "uploads": 0}
                         for r in self.initial_runs]
            for e in self.runs:
                if e["run"].get("is_processed"):
                    e["processed_at"] = 0.0
            self.reindex()
            self.files = dict(self.initial_files)

    def reindex(self):
        """Rebuilds by_id (the first run of an id wins, as find() always did)."""
        self.by_id = {}
        for e in self.runs:
            self.by_id.setdefault(str(e["run"].get("vision_analysis_id")).lower(), e)

    def add_runs(self, runs):
        with self.lock:
            for r in runs:
                if not isinstance(r, dict) or not isinstance(r.get("vision_analysis_id"), str):
                    raise ValueError("each run needs a string vision_analysis_id")
                e = {"run": copy.deepcopy(r), "processed_at": 0.0 if r.get("is_processed") else None,
                     "uploads": 0}
                for i, old in enumerate(self.runs):
                    if old["run"]["vision_analysis_id"] == r["vision_analysis_id"]:
                        self.runs[i] = e
                        break
                else:
                    self.runs.append(e)
            self.reindex()

    def find(self, run_id):
        """The run with this id (any case), or None; O(1), so big queues measure the
        client, not this stand-in."""
        return self.by_id.get(run_id.lower()) if isinstance(run_id, str) else None

    @staticmethod
    def processed(e, now=None):
        p = e["processed_at"]
        return p is not None and (now or time.time()) >= p

    def run_summaries(self):
        now = time.time()
        return [{"vision_analysis_id": e["run"]["vision_analysis_id"],
                 "processed": self.processed(e, now), "processed_at": e["processed_at"],
                 "uploads": e["uploads"]} for e in self.runs]


def render_run(e, base, now):
    run = {k: v for k, v in copy.deepcopy(e["run"]).items() if not k.startswith("_")}
    run["is_processed"] = PlatformState.processed(e, now)
    docs = []
    for d in run.get("documents") or []:
        if not isinstance(d, dict):
            docs.append(d)
            continue
        name = d.get("document_name", "")
        gen = d.get("_gen")
        path = d.get("document_path")
        if gen:
            path = "%s/gen/%s?bytes=%d&kind=%s&%s" % (
                base, common.urllib.parse.quote(name), int(gen.get("bytes", 1024)),
                gen.get("kind", "jpeg"), common.SAS_QUERY)
        elif path is None:
            path = "%s/files/%s?%s" % (base, common.urllib.parse.quote(name), common.SAS_QUERY)
        else:
            path = path.replace("{base}", base).replace("{sas}", common.SAS_QUERY)
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        d["document_path"] = path
        docs.append(d)
    if "documents" in run:
        run["documents"] = docs
    return run


class PlatformHandler(common.StubHandler):
    server_version = "vb-platform-stub/1"

    held_body = None  # the body of a held upload, read before the hold

    def iter_body(self):
        if self.held_body is not None:
            body, self.held_body = self.held_body, None
            self.body_consumed = True
            if body:
                yield body
            return
        yield from super().iter_body()

    def base_url(self):
        host = self.headers.get("Host")
        return "http://" + (host if host else "%s:%d" % (self.state.host, self.state.port))

    def auth_status(self):
        h = self.headers.get("Authorization")
        if h is None:
            return "missing"
        return "ok" if h == "Bearer " + self.state.cfg("api_key") else "wrong"

    def auth_reject(self, auth):
        self.discard_body()
        if auth == "missing":
            self.send_detail(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})
        else:
            self.send_detail(401, "Could not validate credentials", {"WWW-Authenticate": "Bearer"})

    def route(self):
        p = self.url_path
        if p in (GET_PATH, GET_PATH + "/"):
            if self.command != "GET":
                return self.not_allowed()
            return self.do_list()
        if p == UPLOAD_PATH:
            if self.command != "POST":
                return self.not_allowed()
            return self.do_upload()
        if p.startswith("/files/") or p.startswith("/gen/"):
            if self.command not in ("GET", "HEAD"):
                return self.not_allowed()
            return self.do_file()
        self.discard_body()
        self.send_detail(404, "Not Found")

    def not_allowed(self):
        self.discard_body()
        self.send_detail(405, "Method Not Allowed")

    # -- GET vision_analysis ---------------------------------------------------

    def do_list(self):
        st = self.state
        rec = st.record("gets", {"query": dict(self.query), "raw_query": self.raw_query,
                                 "headers": self.headers_dict(), "auth": self.auth_status(),
                                 "status": None, "fault": None, "count": None})
        fault = st.take_fault("get")
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        if rec["auth"] != "ok":
            rec["status"] = 401
            return self.auth_reject(rec["auth"])
        cfg = dict(st.config)
        paged = "page" in self.query or "page_size" in self.query
        try:
            page = int(self.query.get("page", "1"))
            size = int(self.query.get("page_size", str(cfg["default_page_size"])))
            if page < 1 or size < 1:
                raise ValueError
        except ValueError:
            rec["status"] = 422
            return self.send_detail(422, "page and page_size must be integers >= 1")
        size = min(size, int(cfg["max_page_size"]))
        want = self.query.get("is_processed")
        now = time.time()
        mode = cfg["paging"]
        with st.lock:
            if want is None:
                sel = list(st.runs)
            else:
                flag = want.lower() in ("true", "1")
                sel = [e for e in st.runs if PlatformState.processed(e, now) == flag]
            total = len(sel)
            if not paged or mode == "ignore":
                pick = sel
            elif mode == "repeat":
                pick = sel[:size]
            else:
                pick = sel[(page - 1) * size: page * size]
            # Only the page is rendered: the cost of a page grows with the queue only by
            # the filter above, as a platform's indexed query would.
            items = [render_run(e, self.base_url(), now) for e in pick]
        data = {"page": page if paged else 1, "page_size": size if paged else total, "total": total,
                "vision_analysis": items}
        if mode == "zero_meta":
            data["page"] = 0
            data["page_size"] = 0
        elif mode == "total_wrong":
            data["total"] = total // 2
        elif mode == "total_missing":
            del data["total"]
        rec["status"] = 200
        rec["count"] = len(items)
        if fault and fault.get("apply"):
            self.fault_answer(fault)
            rec["status"] = fault.get("status", 200)
            return
        self.send_json(200, {"code": 200, "status": "success", "data": data})

    # -- POST upload -----------------------------------------------------------

    def do_upload(self):
        st = self.state
        seq = st.next_seq()
        rec = {"seq": seq, "auth": self.auth_status(), "headers": self.headers_dict(),
               "content_type": self.headers.get("Content-Type"),
               "transfer_encoding": self.headers.get("Transfer-Encoding"),
               "body_size": 0, "body_sha256": None, "body_path": None, "fields": {},
               "file": None, "parts": [], "text": None, "run_known": None,
               "org_matches_run": None, "status": None, "fault": None}
        st.record("uploads", rec)
        fault = st.take_fault("upload")
        rec["fault"] = fault
        if fault and fault.get("hold"):
            self.held_body = self.read_body()
            st.hold(rec, fault["hold"])
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        if rec["auth"] != "ok":
            rec["status"] = 401
            return self.auth_reject(rec["auth"])
        try:
            parser = common.MultipartParser.for_content_type(
                self.headers.get("Content-Type"), save_dir=st.record_dir,
                save_prefix="upload_%d" % seq)
        except common.MultipartError as e:
            self.discard_body()
            rec["status"] = 422
            return self.send_detail(422, str(e))
        raw = None
        if st.record_dir:
            rec["body_path"] = os.path.join(st.record_dir, "upload_%d.body" % seq)
            raw = open(rec["body_path"], "wb")
        h = hashlib.sha256()
        try:
            for chunk in self.iter_body():
                rec["body_size"] += len(chunk)
                h.update(chunk)
                if raw:
                    raw.write(chunk)
                parser.feed(chunk)
            parts = parser.close()
        except common.MultipartError as e:
            self.discard_body()
            rec["status"] = 422
            return self.send_detail(422, "malformed multipart body: %s" % e)
        finally:
            if raw:
                raw.close()
        rec["body_sha256"] = h.hexdigest()
        rec["parts"] = [p.to_record() for p in parts]
        files = [p for p in parts if p.name == "file"]
        for p in parts:
            if p.filename is None and p.name is not None:
                rec["fields"][p.name] = p.text() if p.data is not None else None
        if files:
            rec["file"] = files[0].to_record()
            rec["text"] = files[0].text()
        missing = [n for n in ("organization_id", "vision_analysis_id") if not rec["fields"].get(n)]
        if not files or files[0].filename is None:
            missing.insert(0, "file")
        if missing:
            rec["status"] = 422
            return self.send_detail(422, "missing form fields: %s" % ", ".join(missing))
        run_id = rec["fields"]["vision_analysis_id"]
        with st.lock:
            e = st.find(run_id)
            rec["run_known"] = e is not None
            if e is not None:
                rec["org_matches_run"] = (e["run"].get("organization_id", "").lower()
                                          == rec["fields"]["organization_id"].lower())
                e["uploads"] += 1
                if e["processed_at"] is None and st.config["mark_processed"]:
                    e["processed_at"] = time.time() + float(st.config["processed_delay"])
        if e is None:
            rec["status"] = 404
            return self.send_detail(404, "Vision analysis %s not found" % run_id)
        rec["status"] = 200
        if fault and fault.get("apply"):
            self.fault_answer(fault, consume_body=False)
            rec["status"] = fault.get("status", 200)
            return
        doc_id = common.uuid_upper()
        self.send_json(200, {"code": 200, "status": "success", "message": "File uploaded successfully",
                             "data": {"vision_analysis_id": run_id,
                                      "organization_id": rec["fields"]["organization_id"],
                                      "document_id": doc_id,
                                      "document_name": files[0].filename}})

    # -- documents ---------------------------------------------------------------

    def do_file(self):
        st = self.state
        gen = self.url_path.startswith("/gen/")
        name = common.urllib.parse.unquote(self.url_path.split("/", 2)[2])
        sig = self.query.get("sig")
        rec = st.record("files", {"path": self.url_path, "name": name,
                                  "query": {k: ("<sig>" if k == "sig" else v) for k, v in self.query.items()},
                                  "sig_ok": sig == common.SAS_SIG,
                                  "authorization_sent": self.headers.get("Authorization") is not None,
                                  "status": None, "bytes": 0, "fault": None})
        fault = st.take_fault("files", name)
        if fault is None and time.time() < float(st.cfg("blob_outage_until") or 0):
            fault = {"status": 503}
        rec["fault"] = fault
        if self.apply_fault(fault):
            rec["status"] = fault.get("status", 200)
            return
        if st.cfg("require_sas") and not rec["sig_ok"]:
            rec["status"] = 403
            body = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
                    b'<Message>Server failed to authenticate the request.</Message></Error>')
            return self.send_bytes(403, body, "application/xml")
        if "/" in name or name in ("", ".", ".."):
            rec["status"] = 404
            return self.send_detail(404, "BlobNotFound")
        src = None
        if gen:
            try:
                n = int(self.query.get("bytes", "1024"))
                kind = self.query.get("kind") or ("png" if name.lower().endswith(".png") else "jpeg")
                if n < 0 or n > (1 << 40) or kind not in ("jpeg", "png"):
                    raise ValueError
            except ValueError:
                rec["status"] = 400
                return self.send_detail(400, "bad bytes or kind")
            src = ("gen", n, kind)
        else:
            with st.lock:
                src = st.files.get(name)
            if src is None:
                path = os.path.join(st.fixtures_dir or DEFAULT_FIXTURES, name)
                if os.path.isfile(path):
                    with open(path, "rb") as fh:
                        src = ("bytes", fh.read())
        if src is None:
            rec["status"] = 404
            body = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                    b'<Message>The specified blob does not exist.</Message></Error>')
            return self.send_bytes(404, body, "application/xml")
        if src[0] == "bytes":
            length = len(src[1])
            chunks = (src[1][i:i + common.CHUNK] for i in range(0, max(length, 1), common.CHUNK))
        else:
            length = src[1]
            chunks = common.padded_image_chunks(src[2], src[1])
        ctype = (fault or {}).get("content_type") or common.content_type_for(
            name if src[0] == "bytes" else ("x.png" if src[2] == "png" else "x.jpg"))
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        rec["status"] = 200
        if self.command == "HEAD":
            return
        limit = length // 2 if (fault or {}).get("truncate") else length
        sent = 0
        for c in chunks:
            if sent + len(c) > limit:
                c = c[:limit - sent]
            if c:
                self.wfile.write(c)
                sent += len(c)
                rec["bytes"] = sent
            if sent >= limit:
                break
        if limit < length:
            self.wfile.flush()
            raise common.Abort()

    # -- control -------------------------------------------------------------------

    def control_records(self):
        st = self.state
        out = {"gets": [], "uploads": [], "files": []}
        out.update(st.records)
        out["runs"] = st.run_summaries()
        return out

    def control_reset(self, body):
        st = self.state
        st.reset_common()
        if not body.get("keep_runs"):
            st.reset_runs()

    def control_extra(self, what):
        st = self.state
        if what == "runs" and self.command == "GET":
            now = time.time()
            with st.lock:
                runs = [render_run(e, self.base_url(), now) for e in st.runs]
            self.send_json(200, {"runs": runs})
            return True
        if what == "runs" and self.command == "POST":
            body = self.json_body()
            if body is common.Abort:
                return True
            body = body or {}
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
            files = normalize_files(body.get("files") or {}, None)
            st.add_runs(body.get("runs") or [])
            with st.lock:
                st.files.update(files)
            self.send_json(200, {"ok": True, "runs": len(st.runs)})
            return True
        if what == "mark" and self.command == "POST":
            body = self.json_body()
            if body is common.Abort:
                return True
            with st.lock:
                e = st.find((body or {}).get("vision_analysis_id"))
                if e is None:
                    self.send_detail(404, "unknown run")
                    return True
                e["processed_at"] = time.time() if body.get("processed", True) else None
            self.send_json(200, {"ok": True})
            return True
        return False


def main(argv=None):
    ap = common.make_arg_parser(
        "Stand-in External Vision Analysis API for visionbatch system tests.",
        "scenario JSON: runs, files, fixtures_dir, api_key, config, faults (see module docstring)")
    ap.add_argument("--api-key", help="bearer token to accept (default: scenario api_key or %s)"
                    % common.DEFAULT_API_KEY)
    ap.add_argument("--fixtures-dir", help="directory served under /files/ (default: the scenario's "
                    "fixtures_dir, else tests/fixtures)")
    ap.add_argument("--processed-delay", type=float, help="seconds between an upload and the run "
                    "being reported processed (default 0)")
    ap.add_argument("--paging", choices=PAGING_MODES, help="paging behaviour (default normal)")
    ap.epilog = __doc__
    args = ap.parse_args(argv)

    scen = {}
    scen_dir = None
    if args.scenario:
        scen = common.load_json_file(args.scenario)
        scen_dir = os.path.dirname(os.path.abspath(args.scenario))
    config = {"api_key": scen.get("api_key", common.DEFAULT_API_KEY), "paging": "normal",
              "max_page_size": 100, "default_page_size": 10, "processed_delay": 0.0,
              "mark_processed": True, "require_sas": True, "blob_outage_until": 0}
    for k, v in (scen.get("config") or {}).items():
        if k not in config:
            ap.error("scenario: unknown config key %r" % k)
        config[k] = v
    if args.api_key:
        config["api_key"] = args.api_key
    if args.processed_delay is not None:
        config["processed_delay"] = args.processed_delay
    if args.paging:
        config["paging"] = args.paging
    fixtures = args.fixtures_dir
    if not fixtures and scen.get("fixtures_dir"):
        fixtures = os.path.join(scen_dir, scen["fixtures_dir"])
    if args.record_dir:
        os.makedirs(args.record_dir, exist_ok=True)
    state = PlatformState(config, scen.get("runs") or [], normalize_files(scen.get("files") or {}, scen_dir),
                          fixtures or DEFAULT_FIXTURES, args.record_dir)
    state.add_faults(scen.get("faults") or {})
    common.serve(PlatformHandler, state, args.host, args.port)


if __name__ == "__main__":
    main()
