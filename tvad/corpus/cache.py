"""Append-only JSONL cache of frame answers, keyed by (video, frame, annotator, prompt hash, view).

Each `FrameRecord` is one line, written and flushed as soon as the answer arrives, so a run
killed at any point loses at most the line being written. Reopening reads every complete line
(a torn last line is counted and skipped, and the file is terminated so the next record starts on
a fresh line); the latest record of a key wins. `wants(key)` tells the caller whether to ask:
a key with an "ok" or "invalid_answer" record is never asked again (the model answered; a garbage
answer is a counted failure, not a reason to pay again), a key whose last attempt was a
"request_failed" (endpoint down, budget spent, timeout) is asked again unless `retry_failed=False`.

    with FrameCache(run.path("corpus", "cache", "frames.jsonl")) as cache:
        if cache.wants(key): cache.append(annotator.describe_frame(...))
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

from tvad.corpus.annotators import FrameRecord


class CacheError(RuntimeError):
    """The cache file is locked by another process, or unreadable."""


class FrameCache:
    def __init__(self, path: str | os.PathLike, *, retry_failed: bool = True, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retry_failed = retry_failed
        self.fsync = fsync
        self.records: dict[str, FrameRecord] = {}
        self.lines = 0  # complete records read or written
        self.torn_lines = 0  # unreadable lines skipped at load (a killed writer's last line)
        self.appended = 0  # records appended in this session
        self._fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise CacheError(f"{self.path}: in use by another process (one writer per cache file)") from None
        self._load()

    def _load(self) -> None:
        self._fh.seek(0)
        data = self._fh.read()
        for n, line in enumerate(data.split("\n"), 1):
            if not line.strip():
                continue
            try:
                rec = FrameRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                self.torn_lines += 1
                continue
            self.records[rec.key] = rec
            self.lines += 1
        if data and not data.endswith("\n"):
            self._fh.write("\n")  # terminate a torn line so the next record is readable
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
        self._fh.write(json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        self._fh.flush()
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
        out = {"keys": len(self.records), "lines": self.lines, "torn_lines": self.torn_lines,
               "appended": self.appended}
        for r in self.records.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out


def read_records(path: str | os.PathLike) -> list[FrameRecord]:
    """Every complete record in a cache file, in file order (duplicates included), read-only."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(FrameRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return out
