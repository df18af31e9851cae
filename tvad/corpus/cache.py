"""Append-only JSONL cache of frame answers, keyed by (video, frame, annotator, prompt hash, view).

Each `FrameRecord` is one line, written and flushed as soon as the answer arrives, so a run
killed at any point loses at most the line being written. Reopening reads every complete line;
a line that cannot be used (torn by a kill, invalid UTF-8, not JSON, a field of the wrong type,
an empty line) is skipped, counted (`bad_lines`, `first_bad_line`) and reported in one warning
naming the file, and its frame is asked again; the lines after it are still used. A torn last
line is terminated so the next record starts on a fresh line. The latest record of a key wins.
`wants(key)` tells the caller whether to ask: a key with an "ok" or "invalid_answer" record is
never asked again (the model answered; a garbage answer is a counted failure, not a reason to pay
again), a key whose last attempt was a "request_failed" (endpoint down, budget spent, timeout) is
asked again unless `retry_failed=False`.

    with FrameCache(run.path("corpus", "cache", "frames.jsonl")) as cache:
        if cache.wants(key): cache.append(annotator.describe_frame(...))
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from tvad.corpus.annotators import STATUSES, FrameRecord

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """The cache file is locked by another process, or unreadable."""


_TYPES: dict[str, tuple[type, ...]] = {
    "video": (str,), "frame": (int,), "annotator": (str,), "prompt_hash": (str,), "view": (str,),
    "status": (str,), "instances": (list,), "error": (str, type(None)), "warnings": (list,),
    "raw": (str, type(None)), "attempts": (int,), "elapsed_s": (int, float), "time": (str,),
}


def parse_line(line: bytes | str) -> FrameRecord:
    """One cache line -> a `FrameRecord`; ValueError with the reason when the line cannot be used."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"invalid UTF-8 at byte {e.start}") from None
    if not line.strip():
        raise ValueError("empty line")
    try:
        d: Any = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(d, dict):
        raise ValueError(f"not a JSON object ({type(d).__name__})")
    for k in ("video", "frame", "annotator", "prompt_hash"):
        if k not in d:
            raise ValueError(f"no {k!r} field")
    for k, types in _TYPES.items():
        if k in d and (not isinstance(d[k], types) or isinstance(d[k], bool)):
            raise ValueError(f"field {k!r} is {type(d[k]).__name__} {_short(d[k])}, expected "
                             f"{' or '.join('null' if t is type(None) else t.__name__ for t in types)}")
    if d.get("status", "ok") not in STATUSES:
        raise ValueError(f"field 'status' is {_short(d['status'])}, expected one of {', '.join(STATUSES)}")
    if d.get("view", "full") not in ("full", "focus"):
        raise ValueError(f"field 'view' is {_short(d['view'])}, expected full or focus")
    if not all(isinstance(i, dict) for i in d.get("instances") or []):
        raise ValueError("field 'instances' holds a non-object")
    try:
        return FrameRecord.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"bad instance ({type(e).__name__}: {e})") from None


def _short(v: Any, n: int = 40) -> str:
    r = json.dumps(v, default=str)
    return r if len(r) <= n else r[:n] + "..."


def _split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) for every line of a JSONL file's bytes (the empty tail after a
    final newline is not a line)."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return enumerate(parts, 1)


def _report(path: Path, bad: int, first: int, reason: str) -> None:
    if bad:
        log.warning("%s: skipped %d unusable line%s (first: line %d: %s); their frames are asked again",
                    path, bad, "" if bad == 1 else "s", first, reason)


class FrameCache:
    def __init__(self, path: str | os.PathLike, *, retry_failed: bool = True, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retry_failed = retry_failed
        self.fsync = fsync
        self.records: dict[str, FrameRecord] = {}
        self.lines = 0  # complete records read or written
        self.bad_lines = 0  # unusable lines skipped at load (torn by a kill, bad UTF-8 or JSON, wrong types)
        self.first_bad_line = 0  # the first one's 1-based line number (0: none)
        self.first_bad_reason = ""
        self.torn_tail = False  # the file ended inside a line (a writer killed mid-line): terminated on open
        self.appended = 0  # records appended in this session
        self._write_lock = threading.Lock()  # one line at a time, whole, whichever thread appends
        self._fh = open(self.path, "a+b")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise CacheError(f"{self.path}: in use by another process (one writer per cache file)") from None
        self._load()

    @property
    def torn_lines(self) -> int:  # the former name of bad_lines
        return self.bad_lines

    def _load(self) -> None:
        self._fh.seek(0)
        data = self._fh.read()
        for n, line in _split_lines(data):
            try:
                rec = parse_line(line)
            except ValueError as e:
                self.bad_lines += 1
                if not self.first_bad_line:
                    self.first_bad_line, self.first_bad_reason = n, str(e)
                continue
            self.records[rec.key] = rec
            self.lines += 1
        _report(self.path, self.bad_lines, self.first_bad_line, self.first_bad_reason)
        if data and not data.endswith(b"\n"):
            self.torn_tail = True
            log.warning("%s: the file ends inside a line (a writer killed mid-line); the line is terminated "
                        "(and skipped above if incomplete, its frame asked again)", self.path)
            self._fh.write(b"\n")  # terminate a torn line so the next record is readable
            self._fh.flush()

    def __enter__(self) -> "FrameCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()

    def get(self, key: str) -> FrameRecord | None:
        return self.records.get(key)

    def wants(self, key: str) -> bool:
        """Whether this key must be asked (never answered, or only a failed request so far)."""
        rec = self.records.get(key)
        return rec is None or (rec.status == "request_failed" and self.retry_failed)

    def append(self, rec: FrameRecord) -> None:
        line = json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
        # a lone surrogate (a model's "\\ud800") can only sit inside a JSON string: written back as its escape
        data = line.encode("utf-8", errors="backslashreplace")
        with self._write_lock:
            self._fh.write(data)
            self._fh.flush()  # in the kernel now: a kill after this loses nothing (one mid-write tears the
            #                   last line, which the next open drops, reports and asks again)
            if self.fsync:
                os.fsync(self._fh.fileno())
            self.records[rec.key] = rec
            self.lines += 1
            self.appended += 1

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[FrameRecord]:
        return iter(self.records.values())

    def stats(self) -> dict[str, int]:
        out = {"keys": len(self.records), "lines": self.lines, "bad_lines": self.bad_lines,
               "torn_lines": self.bad_lines, "torn_tail": int(self.torn_tail), "appended": self.appended}
        for r in self.records.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out


def read_records(path: str | os.PathLike) -> list[FrameRecord]:
    """Every usable record in a cache file, in file order (duplicates included), read-only; unusable
    lines are skipped and reported in one warning, as `FrameCache` does."""
    out, bad, first, reason = [], 0, 0, ""
    for n, line in _split_lines(Path(path).read_bytes()):
        try:
            out.append(parse_line(line))
        except ValueError as e:
            bad += 1
            first, reason = (first, reason) if first else (n, str(e))
    _report(Path(path), bad, first, reason)
    return out
