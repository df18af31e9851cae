"""Concurrent annotation (tvad.corpus.inflight, extract_all, corpus.max_concurrency) against a real
loopback chat-completions server (tests/http_fixtures.LoopbackLVLM): the same corpus as one request
at a time, Retry-After honoured per request, dropped connections retried, failures that leave every
answer received in the cache, a SIGKILL mid-run resumed exactly, and the pool's own bounds."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from http_fixtures import LoopbackLVLM
from test_corpus_corpora import clips
from tvad.config import preset
from tvad.corpus import (AnnotatorError, FrameCache, FrameRecord, HTTPAnnotator, annotator_from_config,
                         build_corpora, extract, extract_all, read_records)
from tvad.corpus.inflight import Request, ask

REPO = Path(__file__).resolve().parents[1]


class Clip:
    """A bare clip whose frames all differ (so the server tells them apart): a green bar at x = frame."""

    def __init__(self, name: str, num_frames: int, shade: int = 40) -> None:
        self.name, self.num_frames, self.size, self.shade = name, num_frames, (48, 64), shade

    def read_frames(self, idx):
        f = np.full((len(idx), 48, 64, 3), 120, np.uint8)
        for j, t in enumerate(idx):
            f[j, 10:20, t:t + 8] = (self.shade, 200, 90)
        return f


def _ann(srv: LoopbackLVLM, n: int, **kw) -> HTTPAnnotator:
    kw.setdefault("timeout", 10.0)
    return HTTPAnnotator(srv.base_url, "m", api_key_env=None, image_format="png", max_concurrency=n, **kw)


def _content(rec: FrameRecord) -> dict:
    d = rec.to_dict()
    for k in ("time", "elapsed_s"):
        d.pop(k)
    return d


def test_concurrent_build_is_the_sequential_build(tmp_path):
    """N = 8 in flight over a server with jittered latency (answers arrive out of order) writes the
    same corpus files and the same records as N = 1; the server saw more than one and at most 8 at once."""
    data = {s: clips()[s] for s in ("train", "validation")}
    out, maxes = {}, {}
    for n in (1, 8):
        with LoopbackLVLM(latency=0.005, jitter=0.03, seed=n) as srv:
            card = build_corpora(data, tmp_path / f"n{n}", annotator="http", annotator_kw=dict(
                base_url=srv.base_url, model="m", api_key_env=None, image_format="png", max_concurrency=n))
            maxes[n] = srv.in_flight_max
            assert srv.requests == card.extraction["full"]["asked"] + card.extraction["focus"]["asked"]
        out[n] = card
    assert maxes[1] == 1 and 2 <= maxes[8] <= 8, maxes
    assert out[1].extraction == out[8].extraction and out[8].extraction["full"]["ok"] == 5 * 12
    assert out[8].extraction["full"]["instances"] > 0 and out[8].extraction["focus"]["asked"] > 0
    for name in ("phase_a.train.jsonl", "phase_a.val.jsonl", "phase_b.train.jsonl", "phase_b.val.jsonl",
                 "timelines.jsonl"):
        assert (tmp_path / "n1" / name).read_bytes() == (tmp_path / "n8" / name).read_bytes(), name
    recs = {n: {r.key: _content(r) for r in read_records(tmp_path / f"n{n}" / "cache" / "frames.jsonl")}
            for n in (1, 8)}
    assert recs[1] == recs[8] and len(recs[8]) == out[8].extraction["full"]["asked"] + out[8].extraction["focus"]["asked"]


def test_retry_after_is_honoured_per_request(tmp_path):
    """Every frame's first request gets 429 + Retry-After: 1: each frame is asked again no sooner than
    1 s after its own 429, and the waits of the requests in flight overlap (not one after another)."""
    with LoopbackLVLM(retry_after=1.0) as srv, FrameCache(tmp_path / "c.jsonl") as cache:
        ann = _ann(srv, 4, max_retries=2, backoff=0.0)
        recs = extract(Clip("c0", 8), ann, cache)
        log = list(srv.log)
    assert len(recs) == 8 and all(r.ok and r.attempts == 2 for r in recs)
    by_item: dict[str, list[dict]] = {}
    for e in sorted(log, key=lambda e: e["start"]):
        by_item.setdefault(e["item"], []).append(e)
    assert len(by_item) == 8 and ann.stats["retries"] == 8
    for item, (first, second, *rest) in by_item.items():
        assert not rest and (first["outcome"], second["outcome"]) == ("429", "ok"), item
        assert second["start"] - first["sent"] >= 1.0, (item, second["start"] - first["sent"])
    firsts = sorted(by_item.values(), key=lambda es: es[0]["start"])[:4]
    assert max(es[0]["sent"] for es in firsts) < min(es[1]["start"] for es in firsts)  # waits overlapped


def test_connections_dropped_under_load_are_retried(tmp_path):
    """A server that closes connections beyond 3 at once, asked 8 at a time: every frame answered in
    the end, each drop seen by the client as a connection error and retried, nothing twice."""
    with LoopbackLVLM(latency=0.05, capacity=3) as srv, FrameCache(tmp_path / "c.jsonl") as cache:
        ann = _ann(srv, 8, max_retries=12, backoff=0.02, max_backoff=0.2)
        rep = extract_all([Clip("c0", 12), Clip("c1", 12, shade=80)], ann, cache)
        dropped = sum(e["outcome"] == "dropped" for e in srv.log)
    assert rep.asked == 24 and rep.statuses == {"ok": 24} and rep.skipped == 0
    assert dropped > 0 and ann.stats["connection_errors"] == dropped
    lines = read_records(tmp_path / "c.jsonl")
    assert len(lines) == 24 and len({r.key for r in lines}) == 24


def test_retries_run_out_clear_errors_nothing_lost(tmp_path, caplog):
    """A server that goes away after 5 answers: those 5 stay cached, the other frames are counted
    failures whose errors name the endpoint, one warning names the first item; a rerun against a
    working server asks exactly the failed ones."""
    path = tmp_path / "c.jsonl"
    with LoopbackLVLM(latency=0.02, answer_limit=5) as srv, FrameCache(path) as cache:
        url = srv.base_url
        with caplog.at_level(logging.WARNING, logger="tvad.corpus.inflight"):
            rep = extract_all([Clip("c0", 12)], _ann(srv, 4, max_retries=1, backoff=0.0), cache)
    assert rep.statuses == {"ok": 5, "request_failed": 7}
    failed = [r for r in read_records(path) if r.status == "request_failed"]
    assert len(failed) == 7
    for r in failed:
        assert r.error.startswith(f"connection error with {url}/chat/completions (") and \
            r.error.endswith("(gave up after 2 attempts)"), r.error
    warn = [m for m in caplog.messages if "frame requests failed" in m]
    assert len(warn) == 1 and "7 of 12 frame requests failed" in warn[0] and "clip c0, frame" in warn[0]
    assert url in warn[0] and "asked again on the next run" in warn[0]
    with LoopbackLVLM() as srv, FrameCache(path) as cache:
        assert len(cache) == 12 and sum(cache.wants(r.key) for r in failed) == 7
        recs = extract(Clip("c0", 12), _ann(srv, 4), cache)
        assert srv.requests == 7 and len(recs) == 12 and all(r.ok for r in recs)


SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[3])
    from test_corpus_inflight import Clip
    from tvad.corpus import FrameCache, HTTPAnnotator, extract_all

    clips = [Clip(f"c{c}", 16, shade=40 + 40 * c) for c in range(3)]
    ann = HTTPAnnotator(sys.argv[2], "m", api_key_env=None, image_format="png", max_concurrency=8)
    with FrameCache(sys.argv[1]) as cache:
        rep = extract_all(clips, ann, cache)
    print("ASKED", rep.asked, "REQUESTS", ann.stats["requests"], flush=True)
''')


def _client(cache: Path, url: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), url, str(REPO / "tests")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _settle(srv: LoopbackLVLM) -> int:
    """The server's request count once nothing is in flight (a killed client's requests finish)."""
    for _ in range(500):
        with srv._lock:
            if srv.in_flight == 0:
                return len(srv.log)
        time.sleep(0.01)
    raise AssertionError("the server never went idle")


def test_kill_mid_run_then_resume_exactly(tmp_path):
    """A client with 8 in flight is SIGKILLed after 12 answers; its cache then gets a torn last line.
    The resumed run drops and reports the torn line, sends exactly one request per missing frame and
    leaves every frame once in the cache; a third run sends nothing."""
    cache, total = tmp_path / "frames.jsonl", 48
    with LoopbackLVLM(latency=0.1) as srv:
        p = _client(cache, srv.base_url)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 12:
                break
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        assert p.returncode == -signal.SIGKILL, p.communicate()
        before = read_records(cache)
        assert 12 <= len(before) < total, len(before)
        with open(cache, "ab") as f:
            f.write(b'{"video": "c2", "frame": 15, "annot')  # as if killed mid-line
        sent = _settle(srv)
        p2 = _client(cache, srv.base_url)
        out, err = p2.communicate(timeout=120)
        assert p2.returncode == 0, err
        missing = total - len({r.key for r in before})
        assert srv.requests - sent == missing
        assert f"ASKED {missing} REQUESTS {missing}" in out, out
        assert "ends inside a line" in err and "skipped 1 unusable line" in err
        after = read_records(cache)
        per_key = Counter(r.key for r in after)
        assert len(per_key) == total and max(per_key.values()) == 1 and all(r.ok for r in after)
        assert {(r.video, r.frame) for r in after} == {(f"c{c}", t) for c in range(3) for t in range(16)}
        sent = _settle(srv)
        p3 = _client(cache, srv.base_url)
        out, err = p3.communicate(timeout=60)
        assert p3.returncode == 0, err
        assert "ASKED 0 REQUESTS 0" in out and srv.requests == sent


# -- the pool itself ------------------------------------------------------------------------------

def _rec(key_frame: int) -> FrameRecord:
    return FrameRecord("v", key_frame, "a", "h")


def test_ask_keeps_at_most_n_in_flight_and_pulls_lazily(tmp_path):
    """Blocked calls: with 3 workers the stream is pulled 3 times, no further; duplicates of a key in
    flight or cached are not asked; the records come back whole."""
    gate, pulled, started = threading.Event(), [], []

    def call(f):
        def run():
            started.append(f)
            gate.wait(30)
            return _rec(f)
        return run

    def stream():
        for f in (0, 1, 1, 2, 3, 4, 0):
            pulled.append(f)
            yield Request(_rec(f).key, call(f))

    with FrameCache(tmp_path / "c.jsonl") as cache:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("rep", ask(stream(), cache, workers=3)))
        t.start()
        for _ in range(3000):
            if len(started) == 3 and len(pulled) >= 5:
                break
            time.sleep(0.001)
        assert sorted(started) == [0, 1, 2] and pulled == [0, 1, 1, 2, 3]  # the 4th new frame waits for a slot
        gate.set()
        t.join(30)
        rep = result["rep"]
        assert rep.asked == 5 and rep.skipped == 2 and sorted(started) == [0, 1, 2, 3, 4]
        assert sorted(r.frame for r in read_records(tmp_path / "c.jsonl")) == [0, 1, 2, 3, 4]


def test_ask_error_in_a_request_keeps_what_arrived(tmp_path):
    """An annotator that raises (a bug, not a counted failure): no new requests, the ones that
    returned are all cached, then the error is raised."""
    returned = []

    def call(f):
        def run():
            if f == 3:
                raise RuntimeError("annotator bug")
            returned.append(f)
            return _rec(f)
        return run

    with FrameCache(tmp_path / "c.jsonl") as cache:
        with pytest.raises(RuntimeError, match="annotator bug"):
            ask((Request(_rec(f).key, call(f)) for f in range(40)), cache, workers=4)
    got = sorted(r.frame for r in read_records(tmp_path / "c.jsonl"))
    assert got == sorted(returned) and 3 not in got and len(got) < 39


def test_max_concurrency_from_the_config(monkeypatch):
    cfg = preset("cpu", {"corpus.annotator": "http", "corpus.endpoint": "http://127.0.0.1:9/v1",
                         "corpus.model": "m", "corpus.api_key_env": "null", "corpus.max_concurrency": "16"})
    name, kw = annotator_from_config(cfg.corpus)
    assert name == "http" and kw["max_concurrency"] == 16
    assert preset("paper").corpus.max_concurrency == 8
    with pytest.raises(Exception, match="corpus.max_concurrency': expected an integer > 0"):
        preset("cpu", {"corpus.max_concurrency": "0"})
    for bad in (0, 257, 2.5, True):
        with pytest.raises(AnnotatorError, match="max_concurrency must be an integer in 1..256"):
            HTTPAnnotator("http://127.0.0.1:9/v1", "m", api_key_env=None, max_concurrency=bad)


def test_benchmark_runs_tiny(tmp_path):
    """benchmarks/annotation.py in its smallest mode (a forked loopback server, N = 1 and 4): the
    record has every N with a positive rate; the numbers are not checked (the machine is shared)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_annotation", REPO / "benchmarks" / "annotation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rec = mod.main(["--tiny", "--out", str(tmp_path / "a.json")])
    assert set(rec["per_n"]) == {"1", "4"} and rec["frames"] == 8
    assert all(r["frames_per_s"]["median"] > 0 and r["speedup"] > 0 for r in rec["per_n"].values())
    assert rec["server"]["requests"] == 2 * 8 and 1 <= rec["server"]["in_flight_max"] <= 4


def test_ask_interrupted_keeps_what_arrived_and_does_not_wait(tmp_path):
    """An interrupt (KeyboardInterrupt from the request stream): the records that arrived are cached,
    the request still running is abandoned (ask returns before it ends), the interrupt propagates."""
    gate, ended = threading.Event(), threading.Event()

    def quick(f):
        return lambda: _rec(f)

    def blocked():
        gate.wait(30)
        ended.set()
        return _rec(9)

    def stream():
        yield Request(_rec(9).key, blocked)
        for f in range(3):
            yield Request(_rec(f).key, quick(f))
        raise KeyboardInterrupt

    with FrameCache(tmp_path / "c.jsonl") as cache:
        with pytest.raises(KeyboardInterrupt):
            ask(stream(), cache, workers=2)
        assert not ended.is_set() and cache.wants(_rec(9).key)
    gate.set()
    got = {r.frame for r in read_records(tmp_path / "c.jsonl")}
    assert 9 not in got and got <= {0, 1, 2} and len(got) >= 1
