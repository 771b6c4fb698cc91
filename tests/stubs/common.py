"""Shared pieces of the stand-in HTTP servers and the system-test harness.

The two stand-in servers (platform_server.py for the External Vision Analysis
API, backend_server.py for the batch analysis backend) and the system-test
harness share this module:

* a streaming multipart/form-data parser (``MultipartParser``) that never needs
  the whole body in memory, plus ``parse_multipart()`` for bytes already held;
* request-body iteration for Content-Length and chunked transfer encoding;
* a base request handler with JSON helpers, fault injection (the per-endpoint
  fault queues described in each server's docstring) and the ``/_control``
  plumbing common to both servers;
* generators of small *valid* images: a minimal baseline JPEG encoder, a PNG
  writer, and streaming padders that produce a valid JPEG/PNG of exactly N
  bytes without holding it in memory;
* the server command line (``--port 0`` prints ``PORT <n>`` first on stdout).

Standard library only. Thread safety: every server keeps its mutable state in
one object guarded by one lock (``StubState.lock``); handlers run one per thread
(ThreadingHTTPServer) and take the lock only around state changes, never while
sleeping or streaming.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The fake SAS signature carried by every document URL the platform stand-in
# hands out. Tests grep the program's logs, outputs and uploads for
# SECRET_MARKER to prove a URL secret never leaked.
SECRET_MARKER = "SECRETSIG"
SAS_SIG = SECRET_MARKER + "q7Zp0+aB9xYw="
SAS_QUERY = "sv=2024-11-04&sp=r&sig=" + urllib.parse.quote(SAS_SIG, safe="")
DEFAULT_API_KEY = "vb-test-key-SECRETKEY-4f1c2e9a"

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024 * 1024
KEEP_PART_BYTES = 4 * 1024 * 1024
CHUNK = 64 * 1024


# --------------------------------------------------------------------------
# Multipart parsing
# --------------------------------------------------------------------------


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


def parse_header_params(value):
    """Splits 'type; a=1; b="x;y"' into ('type', {'a': '1', 'b': 'x;y'}).

    Parameter names are lower-cased; quoted strings may contain backslash
    escapes. RFC 5987 ``name*=utf-8''...`` values are decoded and win over
    the plain form.
    """
    items = []
    cur = []
    quoted = False
    i = 0
    while i < len(value):
        c = value[i]
        if quoted:
            if c == "\\" and i + 1 < len(value):
                cur.append(c)
                cur.append(value[i + 1])
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ";":
            items.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    items.append("".join(cur))
    main = items[0].strip().lower()
    params = {}
    star = {}
    for item in items[1:]:
        if "=" not in item:
            continue
        k, v = item.split("=", 1)
        k = k.strip().lower()
        v = v.strip()
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            inner = v[1:-1]
            out = []
            j = 0
            while j < len(inner):
                if inner[j] == "\\" and j + 1 < len(inner):
                    out.append(inner[j + 1])
                    j += 2
                else:
                    out.append(inner[j])
                    j += 1
            v = "".join(out)
        if k.endswith("*"):
            parts = v.split("'", 2)
            if len(parts) == 3:
                charset = parts[0] or "utf-8"
                try:
                    star[k[:-1]] = urllib.parse.unquote(parts[2], encoding=charset)
                except LookupError:
                    star[k[:-1]] = urllib.parse.unquote(parts[2])
            continue
        params[k] = v
    params.update(star)
    return main, params


class Part:
    """One part of a multipart body.

    ``data`` holds the bytes when the part is at most ``keep_bytes`` long
    (otherwise None); ``size`` and ``sha256`` are always exact. ``path`` is
    where the part was saved, if a sink directory was given.
    """

    def __init__(self, headers):
        self.headers = headers
        disp, params = parse_header_params(headers.get("content-disposition", ""))
        self.disposition = disp
        self.name = params.get("name")
        self.filename = params.get("filename")
        ctype = headers.get("content-type")
        self.content_type = ctype.strip() if ctype is not None else None
        self.size = 0
        self._hash = hashlib.sha256()
        self.sha256 = None
        self.data = None
        self.path = None
        self.head = b""

    def text(self):
        """The part as UTF-8 text (replacement characters for bad bytes)."""
        return None if self.data is None else self.data.decode("utf-8", "replace")

    def to_record(self):
        rec = {
            "name": self.name,
            "filename": self.filename,
            "content_type": self.content_type,
            "headers": self.headers,
            "size": self.size,
            "sha256": self.sha256,
            "head_hex": self.head[:16].hex(),
        }
        if self.path:
            rec["saved_as"] = self.path
        return rec


class MultipartParser:
    """Incremental multipart/form-data parser.

    Feed body chunks with ``feed()``, then call ``close()``; ``parts`` lists the
    parts in order. Part payloads are hashed as they stream; a part's bytes are
    kept in memory only up to ``keep_bytes``, and file parts are written to
    ``save_dir`` (named ``save_prefix`` + index + filename) when given.
    Raises MultipartError on malformed input (missing boundary, oversized part
    headers, truncated body).
    """

    def __init__(self, boundary, keep_bytes=KEEP_PART_BYTES, save_dir=None, save_prefix="part"):
        if not boundary or len(boundary) > 200:
            raise MultipartError("missing or invalid boundary")
        if isinstance(boundary, str):
            boundary = boundary.encode("latin-1")
        self.delim = b"\r\n--" + boundary
        self.keep_bytes = keep_bytes
        self.save_dir = save_dir
        self.save_prefix = save_prefix
        self.parts = []
        self._buf = b"\r\n"  # so the first delimiter looks like every other one
        self._state = "preamble"
        self._cur = None
        self._keep = None
        self._file = None

    @classmethod
    def for_content_type(cls, content_type, **kw):
        main, params = parse_header_params(content_type or "")
        if main != "multipart/form-data":
            raise MultipartError("content type is not multipart/form-data: %r" % main)
        return cls(params.get("boundary", ""), **kw)

    def feed(self, data):
        self._buf += data
        while True:
            if self._state == "preamble":
                i = self._buf.find(self.delim)
                if i < 0:
                    self._buf = self._buf[-(len(self.delim) - 1):]
                    return
                self._buf = self._buf[i + len(self.delim):]
                self._state = "after_delim"
            elif self._state == "after_delim":
                if len(self._buf) < 2:
                    return
                if self._buf[:2] == b"--":
                    self._state = "end"
                    self._buf = b""
                    return
                j = self._buf.find(b"\r\n")
                if j < 0:
                    if len(self._buf) > 1024:
                        raise MultipartError("garbage after boundary")
                    return
                if self._buf[:j].strip(b" \t"):
                    raise MultipartError("garbage after boundary")
                self._buf = self._buf[j + 2:]
                self._state = "headers"
            elif self._state == "headers":
                j = self._buf.find(b"\r\n\r\n")
                if self._buf.startswith(b"\r\n"):
                    j = -2  # a part with no headers at all
                if j == -1:
                    if len(self._buf) > MAX_HEADER_BYTES:
                        raise MultipartError("part headers too large")
                    return
                raw = self._buf[:j] if j >= 0 else b""
                self._buf = self._buf[j + 4:] if j >= 0 else self._buf[2:]
                self._begin_part(raw)
                self._state = "data"
            elif self._state == "data":
                i = self._buf.find(self.delim)
                if i < 0:
                    keep = len(self.delim) - 1
                    if len(self._buf) > keep:
                        self._emit(self._buf[:-keep])
                        self._buf = self._buf[-keep:]
                    return
                self._emit(self._buf[:i])
                self._buf = self._buf[i + len(self.delim):]
                self._end_part()
                self._state = "after_delim"
            else:  # end: ignore the epilogue
                self._buf = b""
                return

    def close(self):
        if self._state != "end":
            if self._file:
                self._file.close()
            raise MultipartError("truncated multipart body (no closing boundary)")
        return self.parts

    def _begin_part(self, raw):
        headers = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            if ":" not in line:
                raise MultipartError("bad part header line")
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        part = Part(headers)
        self._cur = part
        self._keep = bytearray()
        if self.save_dir and part.filename is not None:
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in part.filename)[:100]
            part.path = os.path.join(
                self.save_dir, "%s_%d_%s" % (self.save_prefix, len(self.parts), safe or "file"))
            self._file = open(part.path, "wb")

    def _emit(self, data):
        if not data:
            return
        part = self._cur
        part.size += len(data)
        part._hash.update(data)
        if len(part.head) < 16:
            part.head += data[:16 - len(part.head)]
        if self._keep is not None:
            if len(self._keep) + len(data) <= self.keep_bytes:
                self._keep += data
            else:
                self._keep = None
        if self._file:
            self._file.write(data)

    def _end_part(self):
        part = self._cur
        part.sha256 = part._hash.hexdigest()
        part.data = bytes(self._keep) if self._keep is not None else None
        if self._file:
            self._file.close()
            self._file = None
        self.parts.append(part)
        self._cur = None
        self._keep = None


def parse_multipart(body, content_type, **kw):
    """Parses a whole multipart body held in memory; returns the list of Part."""
    p = MultipartParser.for_content_type(content_type, **kw)
    p.feed(body)
    return p.close()


def build_multipart(fields, files, boundary="----vbBoundary7MA4YWxkTrZu0gW"):
    """Builds a multipart/form-data body (for tests).

    fields: {name: str}; files: [(name, filename, content_type, bytes)].
    Returns (body, content_type_header).
    """
    out = []
    for k, v in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n" % (boundary, k)).encode())
        out.append(v.encode() if isinstance(v, str) else v)
        out.append(b"\r\n")
    for name, filename, ctype, data in files:
        head = "--%s\r\nContent-Disposition: form-data; name=\"%s\"" % (boundary, name)
        if filename is not None:
            head += "; filename=\"%s\"" % filename
        head += "\r\n"
        if ctype is not None:
            head += "Content-Type: %s\r\n" % ctype
        out.append((head + "\r\n").encode())
        out.append(data)
        out.append(b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=%s" % boundary


# --------------------------------------------------------------------------
# Small valid images
# --------------------------------------------------------------------------

_ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]
_QUANT = [  # ITU-T T.81 Annex K table K.1 (luminance), natural order
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
_DC_VALS = list(range(12))
_AC_BITS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]
_AC_VALS = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
    "535455565758595a636465666768696a737475767778797a838485868788898a"
    "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7"
    "c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa")


def _huff_codes(bits, vals):
    codes = {}
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


def encode_jpeg_gray(width, height, pixel):
    """Minimal baseline (SOF0) grayscale JPEG encoder.

    pixel(x, y) -> 0..255. Uses the standard Annex K luminance quantisation
    and Huffman tables. Small images only (naive DCT). Returns bytes.
    """
    import math

    dc_codes = _huff_codes(_DC_BITS, _DC_VALS)
    ac_codes = _huff_codes(_AC_BITS, list(_AC_VALS))
    cos = [[math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)] for u in range(8)]
    bitbuf = [0, 0]  # value, count
    out = bytearray()

    def put(code, length):
        for i in range(length - 1, -1, -1):
            bitbuf[0] = (bitbuf[0] << 1) | ((code >> i) & 1)
            bitbuf[1] += 1
            if bitbuf[1] == 8:
                out.append(bitbuf[0])
                if bitbuf[0] == 0xFF:
                    out.append(0)
                bitbuf[0] = 0
                bitbuf[1] = 0

    def magnitude(v):
        n = abs(v).bit_length()
        return n, (v if v >= 0 else v + (1 << n) - 1)

    prev_dc = 0
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            blk = [pixel(min(bx + x, width - 1), min(by + y, height - 1)) - 128
                   for y in range(8) for x in range(8)]
            coef = [0] * 64
            for v in range(8):
                for u in range(8):
                    s = 0.0
                    for y in range(8):
                        for x in range(8):
                            s += blk[y * 8 + x] * cos[u][x] * cos[v][y]
                    cu = 1 / math.sqrt(2) if u == 0 else 1
                    cv = 1 / math.sqrt(2) if v == 0 else 1
                    coef[v * 8 + u] = int(round(0.25 * cu * cv * s / _QUANT[v * 8 + u]))
            zz = [coef[_ZIGZAG[i]] for i in range(64)]
            diff = zz[0] - prev_dc
            prev_dc = zz[0]
            n, bits = magnitude(diff)
            put(*dc_codes[n])
            if n:
                put(bits, n)
            run = 0
            for i in range(1, 64):
                if zz[i] == 0:
                    run += 1
                    continue
                while run > 15:
                    put(*ac_codes[0xF0])
                    run -= 16
                n, bits = magnitude(zz[i])
                put(*ac_codes[(run << 4) | n])
                put(bits, n)
                run = 0
            if run:
                put(*ac_codes[0x00])
    if bitbuf[1]:
        put((1 << (8 - bitbuf[1])) - 1, 8 - bitbuf[1])

    def seg(marker, payload):
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    hdr = b"\xFF\xD8"
    hdr += seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    hdr += seg(0xDB, b"\x00" + bytes(_QUANT[_ZIGZAG[i]] for i in range(64)))
    hdr += seg(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    hdr += seg(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALS))
    hdr += seg(0xC4, b"\x10" + bytes(_AC_BITS) + _AC_VALS)
    hdr += seg(0xDA, b"\x01\x01\x00\x00\x3F\x00")
    return hdr + bytes(out) + b"\xFF\xD9"


def encode_png_rgb(width, height, pixel):
    """Minimal 8-bit RGB PNG. pixel(x, y) -> (r, g, b). Returns bytes."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            raw.extend(pixel(x, y))

    def chunk(ctype, data):
        return struct.pack(">I", len(data)) + ctype + data + struct.pack(
            ">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


_TINY = {}


def tiny_image(kind):
    """A small valid image of the given kind ('jpeg' or 'png'), cached."""
    if kind not in _TINY:
        if kind == "jpeg":
            _TINY[kind] = encode_jpeg_gray(8, 8, lambda x, y: 64 + 16 * x + 8 * y)
        elif kind == "png":
            _TINY[kind] = encode_png_rgb(2, 2, lambda x, y: (200 * x, 200 * y, 90))
        else:
            raise ValueError("unknown image kind %r" % kind)
    return _TINY[kind]


def padded_image_chunks(kind, total, chunk=CHUNK):
    """Yields exactly ``total`` bytes forming a valid image of ``kind``.

    JPEG: SOI and JFIF APP0, then COM segments of zero padding, then the rest of a tiny real
    JPEG. PNG: signature + IHDR, one ancillary 'vbPd' chunk of zero padding
    (CRC computed while streaming), then the rest of a tiny real PNG. When the
    requested size is below the tiny image (or the leftover is too small for a
    segment) the tail is padded after the end marker, which decoders ignore;
    below the tiny image's size the stream is just truncated to ``total``.
    Never holds more than ``chunk`` bytes of padding at once.
    """
    img = tiny_image(kind)
    if total <= len(img):
        yield img[:total]
        return
    fill = total - len(img)
    zeros = bytes(chunk)

    def zero_run(n):
        while n > 0:
            k = min(n, chunk)
            yield zeros[:k]
            n -= k

    if kind == "jpeg":
        yield img[:20]  # SOI + JFIF APP0, which must come first
        while fill >= 4:
            payload = min(65533, fill - 4)
            rest = fill - 4 - payload
            if 0 < rest < 4:
                payload -= 4
            yield b"\xFF\xFE" + struct.pack(">H", payload + 2)
            yield from zero_run(payload)
            fill -= payload + 4
        yield img[20:]
        yield from zero_run(fill)
    else:
        head = img[:33]  # signature (8) + IHDR chunk (25)
        yield head
        if fill >= 12:
            n = fill - 12
            crc = zlib.crc32(b"vbPd")
            yield struct.pack(">I", n) + b"vbPd"
            left = n
            while left > 0:
                k = min(left, chunk)
                crc = zlib.crc32(zeros[:k], crc)
                yield zeros[:k]
                left -= k
            yield struct.pack(">I", crc & 0xFFFFFFFF)
            fill = 0
        yield img[33:]
        yield from zero_run(fill)


def uuid_upper():
    """A random UUID in upper case, as the platform writes them."""
    return str(uuid.uuid4()).upper()


def content_type_for(name):
    ext = os.path.splitext(name)[1].lower()
    return {
        ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
        ".gif": "image/gif", ".webp": "image/webp", ".json": "application/json",
        ".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8",
    }.get(ext, "application/octet-stream")


# --------------------------------------------------------------------------
# Server plumbing
# --------------------------------------------------------------------------


class Abort(Exception):
    """Raised inside a handler to drop the connection without a response."""


class StubState:
    """Mutable state of one stand-in server: fault queues, config, records.

    ``fault_keys`` names the endpoint queues; each queue is a list of fault
    entries consumed in order. A queue may also be a dict (per file name, with
    '*' matching any name).
    """

    def __init__(self, fault_keys, config, record_dir=None):
        self.lock = threading.RLock()
        self.fault_keys = tuple(fault_keys)
        # POST /_control/faults routes config keys to the config: no overlap.
        assert not set(self.fault_keys) & set(config), "config key shadows a fault queue"
        self.initial_config = dict(config)
        self.config = dict(config)
        self.record_dir = record_dir
        self.faults = {}
        self.records = {}
        self.seq = 0
        self.released = threading.Event()
        self.reset_common()

    def reset_common(self):
        with self.lock:
            self.config = dict(self.initial_config)
            self.faults = {}
            self.records = {}
            self.seq = 0
            self.released.set()
            self.released = threading.Event()

    def hold(self, rec, seconds):
        """Keeps a request (recorded as held) until POST /_control/release or
        `seconds` pass; then handling goes on."""
        with self.lock:
            ev = self.released
            rec["held"] = True
        ev.wait(float(seconds))
        with self.lock:
            rec["held"] = False

    def next_seq(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def record(self, kind, rec):
        with self.lock:
            rec.setdefault("seq", self.seq + 1)
            self.seq = max(self.seq, rec["seq"])
            rec.setdefault("time", time.time())
            self.records.setdefault(kind, []).append(rec)
        return rec

    def add_faults(self, spec):
        """Appends fault entries; raises ValueError on an unknown key or shape."""
        if not isinstance(spec, dict):
            raise ValueError("faults must be a JSON object")
        with self.lock:
            for key, value in spec.items():
                if key not in self.fault_keys:
                    raise ValueError("unknown fault queue %r (known: %s)" % (key, ", ".join(self.fault_keys)))
                if isinstance(value, dict):
                    q = self.faults.setdefault(key, {})
                    if not isinstance(q, dict):
                        raise ValueError("queue %r already holds a list" % key)
                    for name, entries in value.items():
                        _check_entries(entries)
                        q.setdefault(name, []).extend(entries)
                else:
                    _check_entries(value)
                    q = self.faults.setdefault(key, [])
                    if not isinstance(q, list):
                        raise ValueError("queue %r already holds per-name entries" % key)
                    q.extend(value)

    def take_fault(self, key, name=None):
        """Pops the next fault for an endpoint (and file name), or None."""
        with self.lock:
            q = self.faults.get(key)
            if not q:
                return None
            if isinstance(q, dict):
                for k in (name, "*"):
                    if k is not None and q.get(k):
                        return q[k].pop(0)
                return None
            return q.pop(0)

    def set_config(self, values):
        if not isinstance(values, dict):
            raise ValueError("config must be a JSON object")
        with self.lock:
            for k, v in values.items():
                if k not in self.config:
                    raise ValueError("unknown config key %r (known: %s)" % (k, ", ".join(sorted(self.config))))
                self.config[k] = v

    def cfg(self, key):
        with self.lock:
            return self.config[key]


_FAULT_KEYS = {"status", "retry_after", "malformed", "delay", "hang", "drop", "body",
               "content_type", "truncate", "apply", "outcome", "headers", "hold"}


def _check_entries(entries):
    if not isinstance(entries, list):
        raise ValueError("a fault queue must be a JSON array of objects")
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("a fault entry must be a JSON object")
        bad = set(e) - _FAULT_KEYS
        if bad:
            raise ValueError("unknown fault entry keys: %s" % ", ".join(sorted(bad)))


class StubHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1 keep-alive, body reading, JSON replies, faults.

    Subclasses define ``routes``: a list of (method, path-or-prefix, func)
    where a path ending in '/' or containing '{' matches by prefix and the
    function receives the remaining path.
    """

    protocol_version = "HTTP/1.1"
    server_version = "vb-stub/1"
    # Headers and body go out in separate writes: without TCP_NODELAY every
    # reply on a kept-alive connection waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    state = None  # StubState, set by serve()

    # -- plumbing ----------------------------------------------------------

    def log_message(self, fmt, *args):
        msg = fmt % args
        msg = msg.replace(SAS_QUERY, "sv=...&sig=REDACTED")
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), msg))

    def _dispatch(self):
        self.body_consumed = False
        self.sent = False
        split = urllib.parse.urlsplit(self.path)
        self.url_path = split.path
        self.raw_query = split.query
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        try:
            if self.url_path.startswith("/_control/"):
                self.handle_control(self.url_path[len("/_control/"):])
            else:
                self.route()
        except Abort:
            self.close_connection = True
            return
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if not self.body_consumed and self.command in ("POST", "PUT", "PATCH"):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def headers_dict(self, drop_auth=True):
        out = {}
        for k, v in self.headers.items():
            if drop_auth and k.lower() == "authorization":
                continue
            out[k] = v
        return out

    def iter_body(self):
        """Yields the request body in chunks (Content-Length or chunked)."""
        self.body_consumed = True
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise Abort()
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise Abort()
                if n == 0:
                    while True:  # trailers
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            return
                total += n
                if total > MAX_BODY_BYTES:
                    raise Abort()
                while n > 0:
                    data = self.rfile.read(min(n, CHUNK))
                    if not data:
                        raise Abort()
                    n -= len(data)
                    yield data
                self.rfile.readline(8)
        else:
            cl = self.headers.get("Content-Length")
            if cl is None:
                return
            try:
                n = int(cl)
            except ValueError:
                raise Abort()
            if n < 0 or n > MAX_BODY_BYTES:
                raise Abort()
            while n > 0:
                data = self.rfile.read(min(n, CHUNK))
                if not data:
                    raise Abort()
                n -= len(data)
                yield data

    def read_body(self, limit=64 * 1024 * 1024):
        buf = bytearray()
        for c in self.iter_body():
            buf += c
            if len(buf) > limit:
                raise Abort()
        return bytes(buf)

    def discard_body(self):
        if not self.body_consumed:
            for _ in self.iter_body():
                pass

    def send_bytes(self, status, body, content_type="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.sent = True

    def send_json(self, status, obj, headers=None):
        """Sends obj as JSON. A lone surrogate U+DC80-U+DCFF in a string (JSON
        "\\udcff" in a scenario) is sent as the raw byte it stands for (Python's
        surrogateescape), so tests can serve text that is not valid UTF-8."""
        text = json.dumps(obj)
        if "\\udc" in text:
            body = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogateescape")
        else:
            body = text.encode()
        self.send_bytes(status, body, "application/json", headers)

    def send_detail(self, status, detail, headers=None):
        self.send_json(status, {"detail": detail}, headers)

    def json_body(self):
        """Reads and decodes a JSON request body; sends 422 and returns None on error."""
        raw = self.read_body()
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError) as e:
            self.send_detail(422, "invalid JSON body: %s" % e)
            return Abort

    # -- faults ------------------------------------------------------------

    def apply_fault(self, fault, consume_body=True):
        """Acts out the HTTP side of a fault entry.

        Returns True when the fault answered the request (the caller must
        stop), False when normal handling should continue (delay only, or a
        fault that only modifies the normal answer).
        """
        if not fault:
            return False
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("hang"):
            time.sleep(float(fault["hang"]))
            raise Abort()
        if fault.get("drop"):
            raise Abort()
        if fault.get("apply"):
            return False  # do the work, replace the answer afterwards
        return self.fault_answer(fault, consume_body)

    def fault_answer(self, fault, consume_body=True):
        if not any(k in fault for k in ("status", "malformed", "body")):
            return False
        if consume_body:
            self.discard_body()
        status = int(fault.get("status", 200))
        headers = dict(fault.get("headers") or {})
        if "retry_after" in fault:
            headers["Retry-After"] = fault["retry_after"]
        if fault.get("malformed"):
            body = b'{"code": 200, "status": "success", "data": {"page": 1, "vision_analysis": [{"vision_an'
            self.send_bytes(status, body, "application/json", headers)
        elif "body" in fault:
            b = fault["body"]
            if isinstance(b, str):
                self.send_bytes(status, b.encode(), fault.get("content_type") or "text/plain", headers)
            else:
                self.send_bytes(status, json.dumps(b).encode(), "application/json", headers)
        else:
            self.send_detail(status, "injected fault (HTTP %d)" % status, headers)
        return True

    # -- control API ---------------------------------------------------------

    def handle_control(self, what):
        st = self.state
        try:
            if self.command == "GET" and what == "records":
                with st.lock:
                    out = json.loads(json.dumps(self.control_records()))
                return self.send_json(200, out)
            if self.command == "GET" and what == "faults":
                with st.lock:
                    return self.send_json(200, json.loads(json.dumps(st.faults)))
            if self.command == "GET" and what == "config":
                with st.lock:
                    return self.send_json(200, dict(st.config))
            if self.command == "POST" and what == "release":
                self.discard_body()
                with st.lock:
                    st.released.set()
                    st.released = threading.Event()
                return self.send_json(200, {"ok": True})
            if self.command == "POST" and what in ("faults", "config", "reset"):
                body = self.json_body()
                if body is Abort:
                    return
                if what == "faults":
                    body = dict(body or {})
                    cfg = {k: body.pop(k) for k in list(body) if k in st.config}
                    st.add_faults(body)
                    st.set_config(cfg)
                elif what == "config":
                    st.set_config(body or {})
                else:
                    self.control_reset(body or {})
                return self.send_json(200, {"ok": True})
            if self.control_extra(what) is not False:
                return
        except ValueError as e:
            return self.send_detail(400, str(e))
        self.discard_body()
        self.send_detail(404, "unknown control endpoint %s %s" % (self.command, what))

    def control_records(self):
        return self.state.records

    def control_reset(self, body):
        self.state.reset_common()

    def control_extra(self, what):
        return False


def make_arg_parser(description, scenario_help):
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0,
                    help="port to bind; 0 picks a free one. The bound port is printed "
                         "first on stdout as 'PORT <n>'")
    ap.add_argument("--scenario", metavar="FILE", help=scenario_help)
    ap.add_argument("--record-dir", metavar="DIR", help="directory where received bodies are saved")
    return ap


def load_json_file(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def serve(handler_cls, state, host, port):
    """Binds, prints 'PORT <n>' on stdout, and serves until killed."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    handler_cls.state = state
    httpd = Server((host, port), handler_cls)
    bound = httpd.server_address[1]
    state.port = bound
    state.host = host
    sys.stdout.write("PORT %d\n" % bound)
    sys.stdout.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
