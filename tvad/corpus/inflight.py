"""Frame requests kept in flight: `ask` runs an annotator over a stream of frame requests with at
most `workers` of them outstanding, and writes every answer to the frame cache as it arrives.

- Bounded: the request stream is consumed lazily, one request per freed slot, so at most `workers`
  requests (and the frames they carry) are alive at once, whatever the corpus size.
- One writer: only the calling thread appends to the cache, in the order answers arrive (each line
  whole and flushed, `FrameCache.append`); a kill loses only the requests in flight, which the next
  run asks again. The corpus does not depend on that order: records are read back by key
  (`extraction.collect`), so a build with N in flight writes the same corpus as one with N = 1.
- No duplicates: a request whose key is in flight, or already answered in the cache, is not sent.
- A failure inside a request (the annotator raising, not a counted failed request) stops new
  requests; those in flight are waited for and kept, then the first error is raised. An interrupt
  (KeyboardInterrupt) keeps what has arrived and abandons what is still in flight.
- workers = 1 is the plain sequential loop in the calling thread (the oracle and the local model,
  which have no use for threads, always run it).

    report = ask(requests, cache, workers=8)
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tvad.corpus.annotators import FrameRecord
from tvad.corpus.cache import FrameCache

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One frame to ask: its cache key and the call that asks it (run in a worker thread)."""

    key: str  # the record's cache key (video, frame, annotator, prompt hash, view)
    call: Callable[[], FrameRecord]  # asks the annotator; the record it returns is cached
    on_done: Callable[[FrameRecord], None] | None = None  # calling thread, after the record is cached


@dataclass
class AskReport:
    """What one `ask` pass did."""

    asked: int = 0  # records appended to the cache (answers and counted failures)
    skipped: int = 0  # requests not sent: their key was in flight or already answered
    failed: int = 0  # records with status "request_failed" (retries ran out, budget spent, ...)
    first_failure: FrameRecord | None = None  # the first of them (its error names the endpoint)
    statuses: dict = field(default_factory=dict)  # status -> count

    def add(self, rec: FrameRecord) -> None:
        self.asked += 1
        self.statuses[rec.status] = self.statuses.get(rec.status, 0) + 1
        if rec.status == "request_failed":
            self.failed += 1
            if self.first_failure is None:
                self.first_failure = rec


def workers_for(annotator: Any, override: int | None = None) -> int:
    """Requests to keep in flight: `override`, else the annotator's `max_concurrency` (http), else 1."""
    n = override if override is not None else getattr(annotator, "max_concurrency", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"max_concurrency must be a positive integer, got {n!r}")
    return n


def ask(requests: Iterable[Request], cache: FrameCache, *, workers: int = 1,
        report: AskReport | None = None) -> AskReport:
    """Ask every request whose key the cache still wants, `workers` at a time; each record is
    appended to `cache` (by this thread) as soon as it arrives. Returns the pass's `AskReport`."""
    rep = report if report is not None else AskReport()

    def keep(req: Request, rec: FrameRecord) -> None:
        cache.append(rec)
        rep.add(rec)
        if req.on_done is not None:
            req.on_done(rec)

    if workers <= 1:
        for req in requests:
            if not cache.wants(req.key):
                rep.skipped += 1
                continue
            keep(req, req.call())
        return rep

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tvad-annotate")
    inflight: dict[Future, Request] = {}
    keys: set[str] = set()
    error: BaseException | None = None

    def finish(done: Iterable[Future]) -> None:
        nonlocal error
        for fut in done:
            req = inflight.pop(fut)
            keys.discard(req.key)
            try:
                rec = fut.result()
            except Exception as e:  # a bug or a misconfiguration in the annotator: stop asking, keep the rest
                error = error or e
                continue
            keep(req, rec)

    try:
        for req in requests:
            if error is not None:
                break
            if req.key in keys or not cache.wants(req.key):
                rep.skipped += 1
                continue
            while len(inflight) >= workers:
                finish(wait(inflight, return_when=FIRST_COMPLETED)[0])
            if error is not None:
                break
            inflight[pool.submit(req.call)] = req
            keys.add(req.key)
        while inflight:
            finish(wait(inflight, return_when=FIRST_COMPLETED)[0])
    except Exception:  # the request stream failed (e.g. a clip reader): keep what is in flight, then raise
        try:
            while inflight:
                finish(wait(inflight, return_when=FIRST_COMPLETED)[0])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:  # an interrupt: keep what has arrived, abandon what is in flight
        finish([f for f in list(inflight) if f.done() and not f.cancelled()])
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error
    return rep


def report_failures(rep: AskReport, annotator_name: str) -> None:
    """One warning for the requests that failed in a pass, naming the first item and its error
    (which names the endpoint); the cache keeps everything received, the failures are asked again
    on the next run (`FrameCache(retry_failed=True)`)."""
    r = rep.first_failure
    if r is None:
        return
    first_line = (r.error or "unknown error").splitlines()[0]
    log.warning("%s: %d of %d frame requests failed; first: clip %s, frame %d (%s view): %s. Every answer "
                "received is in the cache; the failed frames are asked again on the next run.",
                annotator_name, rep.failed, rep.asked, r.video, r.frame, r.view, first_line)
