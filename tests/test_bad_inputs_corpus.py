"""Bad inputs for the corpus annotation (issue #20, items 2 and 5), against real local HTTP servers:
redirects (the key must not follow), non-http base URLs, replies that are not chat completions,
unusable Retry-After values, servers that drip bytes or cut the reply, and cache files with
unusable lines (each skipped, counted and reported; the run resumes). Every case checks the
outcome and the first line of the message."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tvad.corpus import AnnotatorError, FrameCache, HTTPAnnotator, OracleAnnotator, extract, read_records
from tvad.corpus.annotators.remote import retry_after_seconds
from tvad.data.record import VideoObject
from http_fixtures import send_json

IMG = np.zeros((32, 40, 3), np.uint8)
SECRET = "sk-bad-inputs-987654321"
GOOD = {"choices": [{"message": {"content": json.dumps({"instances": []})}}]}


def _first(msg) -> str:
    return str(msg).splitlines()[0]


# -- two real HTTP servers: the endpoint, and "elsewhere" (a redirect's target) -------------------

class _Elsewhere(BaseHTTPRequestHandler):
    seen: list = []  # (method, path, Authorization header) of every request that reached it

    def log_message(self, *a):
        pass

    def _any(self):
        _Elsewhere.seen.append((self.command, self.path, self.headers.get("Authorization")))
        data = json.dumps(GOOD).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _any


class _Endpoint(BaseHTTPRequestHandler):
    elsewhere = ""  # set by the fixture

    def log_message(self, *a):
        pass

    def do_POST(self):
        parts = self.path.split("/")
        mode, arg = parts[1], urllib.parse.unquote(parts[2])
        self.rfile.read(int(self.headers["Content-Length"]))
        try:
            if mode == "redirect":
                self.send_response(int(arg))
                self.send_header("Location", f"{_Endpoint.elsewhere}/steal/v1/chat/completions")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif mode == "ra":  # 429 with the Retry-After given in the path
                self._reply(429, b'{"error": "slow down"}', {"Retry-After": arg})
            elif mode == "body":  # a 200 whose body is the path argument
                self._reply(200, arg.encode())
            elif mode in ("drip_body", "drip_503"):  # headers at once, then one byte every 0.1 s for 20 s
                self.send_response(200 if mode == "drip_body" else 503)
                self.send_header("Content-Length", "200")
                self.end_headers()
                self.wfile.flush()
                for _ in range(200):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif mode == "drip_head":  # the status line and headers one byte every 0.1 s
                for b in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 200:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif mode == "cut":  # promises 500 bytes, sends 10, closes
                self.send_response(200)
                self.send_header("Content-Length", "500")
                self.end_headers()
                self.wfile.write(b'{"choices"')
                self.wfile.flush()
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, OSError):  # the client gave up: good
            pass

    def _reply(self, code, data, headers=None):
        send_json(self, code, data, headers)


def _serve(handler):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture(scope="module")
def server():
    srv2, elsewhere = _serve(_Elsewhere)
    _Endpoint.elsewhere = elsewhere
    srv, url = _serve(_Endpoint)
    yield url
    for s in (srv, srv2):
        s.shutdown()
        s.server_close()


def _ann(base, monkeypatch, **kw):
    monkeypatch.setenv("TVAD_BAD_KEY", SECRET)
    slept = []
    kw.setdefault("sleep", slept.append)
    kw.setdefault("timeout", 0.5)
    kw.setdefault("max_retries", 2)
    kw.setdefault("backoff", 0.01)
    return HTTPAnnotator(base, "m", api_key_env="TVAD_BAD_KEY", **kw), slept


# -- item 2: the key does not follow redirects; only http(s) ------------------------------------

@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_is_refused_and_the_key_stays(server, monkeypatch, code):
    _Elsewhere.seen.clear()
    a, slept = _ann(f"{server}/redirect/{code}/v1", monkeypatch)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert _Elsewhere.seen == []  # nothing reached the other origin: no key, no POST turned into a GET
    assert rec.status == "request_failed" and rec.attempts == 1 and not slept and not rec.instances
    assert _first(rec.error).startswith(
        f"redirect refused: HTTP {code} from {server}/redirect/{code}/v1/chat/completions to "
        f"{_Endpoint.elsewhere}/steal/v1/chat/completions (redirects are not followed")
    assert SECRET not in json.dumps(rec.to_dict())


@pytest.mark.parametrize("base", ["file:///etc/passwd", "ftp://127.0.0.1/v1", "127.0.0.1:8000/v1", "http:///v1",
                                  "javascript:alert(1)"])
def test_base_url_must_be_http(base, monkeypatch):
    monkeypatch.setenv("TVAD_BAD_KEY", SECRET)
    with pytest.raises(AnnotatorError) as e:
        HTTPAnnotator(base, "m", api_key_env="TVAD_BAD_KEY")
    assert _first(e.value) == (f"http annotator: base_url must be an http:// or https:// URL with a host, "
                               f"got {base!r}")
    assert len(str(e.value).splitlines()) == 1


def test_base_url_credentials_are_not_echoed(monkeypatch):
    with pytest.raises(AnnotatorError) as e:
        HTTPAnnotator("ftp://user:hunter2@host/v1", "m", api_key_env=None)
    assert "hunter2" not in str(e.value) and _first(e.value).endswith("got 'ftp://host/v1'")


@pytest.mark.parametrize("body, reason", [
    ('{"hello": "world"}', "no choices[0].message.content"),
    ('{"choices": []}', "no choices[0].message.content"),
    ('{"choices": [{"message": {"content": null}}]}', "no choices[0].message.content"),
    ('{"choices": [{"message": {"content": [{"type": "image"}]}}]}', "no choices[0].message.content"),
    ('[1, 2]', "no choices[0].message.content"),
    ("<html>moved</html>", "not JSON"),
])
def test_reply_that_is_not_a_chat_completion_is_never_ok(server, monkeypatch, body, reason):
    a, _ = _ann(f"{server}/body/{urllib.parse.quote(body, safe='')}/v1", monkeypatch)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "invalid_answer" and not rec.ok and rec.raw == body
    assert _first(rec.error) == f"response is not a chat completion ({reason})"


# -- item 5: Retry-After, whole-request timeout, cut replies ------------------------------------

@pytest.mark.parametrize("value", ["NaN", "-5", "soon", "inf", "", "1e400"])
def test_unusable_retry_after_falls_back_to_backoff(server, monkeypatch, value):
    a, slept = _ann(f"{server}/ra/{urllib.parse.quote(value, safe='') or '%20'}/v1", monkeypatch)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert rec.status == "request_failed" and rec.attempts == 3
    assert _first(rec.error).startswith(f"HTTP 429 from {server}/ra/")
    assert rec.error.endswith("(gave up after 3 attempts)")
    assert slept == [0.01, 0.02]  # the backoff, as if the server had said nothing


def test_retry_after_nan_with_the_real_sleep_does_not_stop_the_run(server, monkeypatch):
    a, _ = _ann(f"{server}/ra/NaN/v1", monkeypatch, sleep=time.sleep, max_retries=1)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)  # used to raise ValueError from time.sleep(nan)
    assert rec.status == "request_failed" and _first(rec.error).startswith("HTTP 429 from")


def test_retry_after_huge_and_http_dates(server, monkeypatch):
    a, slept = _ann(f"{server}/ra/1e9/v1", monkeypatch, max_retries=1, max_backoff=7.0)
    assert a.describe_frame(IMG, "p", video="v", frame=0).status == "request_failed"
    assert slept == [7.0]  # clamped to max_backoff
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=4), usegmt=True)
    a, slept = _ann(f"{server}/ra/{urllib.parse.quote(when, safe='')}/v1", monkeypatch, max_retries=1)
    assert a.describe_frame(IMG, "p", video="v", frame=0).status == "request_failed"
    assert len(slept) == 1 and 1.0 < slept[0] <= 4.0
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    a, slept = _ann(f"{server}/ra/{urllib.parse.quote(past, safe='')}/v1", monkeypatch, max_retries=1)
    assert a.describe_frame(IMG, "p", video="v", frame=0).status == "request_failed" and slept == [0.0]


def test_retry_after_parser():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:10 GMT", now) == 10.0
    for bad in (None, "", "NaN", "nan", "-5", "-inf", "soon", "Thu, 99 Foo 2026", "1e400"):
        assert retry_after_seconds(bad, now) is None, bad


@pytest.mark.parametrize("mode", ["drip_body", "drip_head"])
def test_timeout_bounds_the_whole_request(server, monkeypatch, mode):
    a, _ = _ann(f"{server}/{mode}/x/v1", monkeypatch, timeout=0.5, max_retries=0)
    t0 = time.perf_counter()
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    wall = time.perf_counter() - t0
    assert wall < 1.5, wall  # the drip would last 20 s; 3x the timeout at most
    assert rec.status == "request_failed" and a.stats["timeouts"] == 1
    assert _first(rec.error) == (f"timeout after 0.5s from {server}/{mode}/x/v1/chat/completions "
                                 f"(the limit covers the whole request) (gave up after 1 attempts)")


def test_error_reply_with_a_dripping_body_is_bounded_too(server, monkeypatch):
    a, slept = _ann(f"{server}/drip_503/x/v1", monkeypatch, timeout=0.5, max_retries=1)
    t0 = time.perf_counter()
    rec = a.describe_frame(IMG, "p", video="v", frame=0)
    assert time.perf_counter() - t0 < 3.0  # two attempts of 0.5 s; the drips would last 40 s
    assert rec.status == "request_failed" and rec.attempts == 2 and slept == [0.01]
    assert _first(rec.error) == f"HTTP 503 from {server}/drip_503/x/v1/chat/completions (gave up after 2 attempts)"


def test_timeout_must_be_positive(monkeypatch):
    for t in (0, -1, float("nan")):
        with pytest.raises(AnnotatorError) as e:
            HTTPAnnotator("http://127.0.0.1:1/v1", "m", api_key_env=None, timeout=t)
        assert _first(e.value) == f"http annotator: timeout must be a positive number of seconds, got {t!r}"


def test_reply_cut_short_is_a_counted_retry(server, monkeypatch):
    a, slept = _ann(f"{server}/cut/x/v1", monkeypatch, max_retries=1)
    rec = a.describe_frame(IMG, "p", video="v", frame=0)  # IncompleteRead used to escape describe_frame
    assert rec.status == "request_failed" and rec.attempts == 2 and len(slept) == 1
    assert _first(rec.error).startswith(f"connection error with {server}/cut/x/v1/chat/completions (IncompleteRead")


# -- item 5: cache lines that cannot be used --------------------------------------------------------

class Clip:  # a bare clip: one person walking right, 10 frames
    name, num_frames, size = "clip0", 10, (100, 200)
    boxes = np.array([[t, 10, t + 10, 40] for t in range(10)], np.int64)
    objects = [VideoObject(id=1, category="person", boxes=boxes)]


class CountingOracle(OracleAnnotator):
    def __init__(self):
        super().__init__()
        self.asked = []

    def describe_frame(self, image, prompt, *, frame=None, **kw):
        self.asked.append(frame)
        return super().describe_frame(image, prompt, frame=frame, **kw)


def _good_cache(path):
    with FrameCache(path) as c:
        extract(Clip(), OracleAnnotator(), c)
    return path.read_bytes().split(b"\n")[:-1]  # ten lines, one per frame


def _frame_line(lines, k):
    return json.loads(lines[k])


BAD_LINES = {
    "wrong-typed frame": lambda d: json.dumps({**d, "frame": "abc"}).encode(),
    "wrong-typed instances": lambda d: json.dumps({**d, "instances": "none"}).encode(),
    "boolean attempts": lambda d: json.dumps({**d, "attempts": True}).encode(),
    "unknown status": lambda d: json.dumps({**d, "status": "great"}).encode(),
    "invalid UTF-8": lambda d: json.dumps(d, ensure_ascii=False).encode()[:-20] + b"\xff\xfe" + b'"}',
    "not an object": lambda d: b"[1, 2, 3]",
    "empty line": lambda d: b"",
    "bad instance box": lambda d: json.dumps({**d, "instances": [{"category": "p", "box": ["a", 1, 2, 3]}]}).encode(),
}
REASONS = {
    "wrong-typed frame": "field 'frame' is str \"abc\", expected int",
    "wrong-typed instances": "field 'instances' is str \"none\", expected list",
    "boolean attempts": "field 'attempts' is bool true, expected int",
    "unknown status": "field 'status' is \"great\", expected one of ok, invalid_answer, request_failed",
    "invalid UTF-8": "invalid UTF-8 at byte",
    "not an object": "not a JSON object (list)",
    "empty line": "empty line",
    "bad instance box": "bad instance (ValueError:",
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_bad_cache_line_is_skipped_counted_reported_and_the_run_resumes(tmp_path, caplog, kind):
    path = tmp_path / "frames.jsonl"
    lines = _good_cache(path)
    lines[3] = BAD_LINES[kind](_frame_line(lines, 3))  # line 4 (frame 3) spoiled; frames 4-9 after it
    path.write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING, logger="tvad.corpus.cache"):
        with FrameCache(path) as c:
            assert c.bad_lines == 1 and c.first_bad_line == 4 and c.stats()["bad_lines"] == 1
            assert len(c) == 9  # the good lines, before and after the bad one
            ann = CountingOracle()
            recs = extract(Clip(), ann, c)
    assert ann.asked == [3]  # only the spoiled frame is asked again
    assert [r.frame for r in recs] == list(range(10)) and all(r.ok for r in recs)
    msgs = [r.getMessage() for r in caplog.records if r.name == "tvad.corpus.cache"]
    assert len(msgs) == 1
    assert _first(msgs[0]).startswith(f"{path}: skipped 1 unusable line (first: line 4: {REASONS[kind]}")
    assert msgs[0].endswith("their frames are asked again")
    assert len(read_records(path)) == 10  # the re-asked frame appended


def test_truncated_last_line_with_a_cut_multibyte_character(tmp_path, caplog):
    path = tmp_path / "frames.jsonl"
    lines = _good_cache(path)
    last = json.dumps({**_frame_line(lines, 9), "raw": "café ünïcode"}, ensure_ascii=False).encode()
    cut = last[:last.index("é".encode()) + 1]  # a writer killed inside the two bytes of "é"
    path.write_bytes(b"\n".join(lines[:9]) + b"\n" + cut)
    with caplog.at_level(logging.WARNING, logger="tvad.corpus.cache"):
        with FrameCache(path) as c:
            assert c.bad_lines == 1 and c.first_bad_line == 10 and len(c) == 9
            ann = CountingOracle()
            extract(Clip(), ann, c)
    assert ann.asked == [9]
    assert _first(caplog.records[0].getMessage()).startswith(
        f"{path}: skipped 1 unusable line (first: line 10: invalid UTF-8 at byte")
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 11  # the torn line terminated, the new record after it
    with FrameCache(path) as c:  # reopening: the torn line is still the only bad one
        assert c.bad_lines == 1 and len(c) == 10


def test_several_bad_lines_report_the_count_and_the_first(tmp_path, caplog):
    path = tmp_path / "frames.jsonl"
    lines = _good_cache(path)
    lines[2], lines[5], lines[6] = b"", b'{"video": "clip0", "frame": 5, "annot', b"\xc3"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING, logger="tvad.corpus.cache"):
        assert len(read_records(path)) == 7
    assert _first(caplog.records[0].getMessage()) == (f"{path}: skipped 3 unusable lines (first: line 3: empty line);"
                                                      f" their frames are asked again")


def test_lone_surrogate_from_a_model_is_written_readable(tmp_path):
    from tvad.corpus import FrameRecord

    path = tmp_path / "frames.jsonl"
    rec = FrameRecord("v", 0, "http:m", "h", raw="bad \ud800 text")
    with FrameCache(path) as c:
        c.append(rec)  # used to raise UnicodeEncodeError in the middle of a run
    with FrameCache(path) as c:
        assert c.bad_lines == 0 and c.get(rec.key).raw == "bad \ud800 text"
