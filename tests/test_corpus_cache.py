"""The append-only frame cache: resume after a SIGKILL without re-asking, duplicates or losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from tvad.corpus import FrameCache, FrameRecord, read_records
from tvad.corpus.cache import CacheError

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import sys, time
    import numpy as np
    from tvad.corpus import FrameCache, OracleAnnotator, extract
    from tvad.data.record import VideoObject

    class V:  # a bare clip: one person walking right, 60 frames
        name, num_frames, size = "clip0", 60, (100, 200)
        boxes = np.array([[t, 10, t + 10, 40] for t in range(60)], np.int64)
        objects = [VideoObject(id=1, category="person", boxes=boxes)]

    class Slow(OracleAnnotator):
        asked = 0
        def describe_frame(self, *a, **k):
            Slow.asked += 1
            time.sleep(float(sys.argv[2]))
            return super().describe_frame(*a, **k)

    with FrameCache(sys.argv[1]) as cache:
        recs = extract(V(), Slow(), cache)
    print("ASKED", Slow.asked, "RECORDS", len(recs), flush=True)
''')


def _run(cache: Path, delay: float, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), str(delay)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_kill_mid_run_then_resume(tmp_path):
    cache = tmp_path / "frames.jsonl"
    p = _run(cache, 0.05)
    deadline = time.time() + 30
    while time.time() < deadline:
        if cache.exists() and cache.read_text().count("\n") >= 12:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL
    before = read_records(cache)
    assert 12 <= len(before) < 60, len(before)
    done = {r.frame for r in before}
    # resume: only the missing frames are asked
    p2 = _run(cache, 0.0)
    out, err = p2.communicate(timeout=60)
    assert p2.returncode == 0, err
    assert f"ASKED {60 - len(done)} RECORDS 60" in out, out
    after = read_records(cache)
    per_key = Counter(r.key for r in after)
    assert len(per_key) == 60 and max(per_key.values()) == 1  # no duplicates, no losses
    assert {r.frame for r in after} == set(range(60))
    assert all(r.ok and r.instances[0].box[0] == r.frame for r in after)
    # a third run asks nothing
    p3 = _run(cache, 0.0)
    out, _ = p3.communicate(timeout=60)
    assert "ASKED 0 RECORDS 60" in out


def _rec(frame: int, status: str = "ok") -> FrameRecord:
    return FrameRecord("v", frame, "oracle", "h", status=status, error=None if status == "ok" else "boom")


def test_torn_line_failed_requests_and_lock(tmp_path):
    path = tmp_path / "c.jsonl"
    with FrameCache(path) as c:
        c.append(_rec(0))
        c.append(_rec(1, "request_failed"))
        c.append(_rec(2, "invalid_answer"))
    with open(path, "a") as f:
        f.write('{"video": "v", "frame": 3, "annot')  # a writer killed mid-line
    with FrameCache(path) as c:
        assert c.torn_lines == 1 and len(c) == 3
        assert not c.wants(_rec(0).key) and not c.wants(_rec(2).key)  # answered (even if garbage)
        assert c.wants(_rec(1).key) and c.wants(_rec(3).key)  # failed request / never asked
        c.append(_rec(3))
        with pytest.raises(CacheError, match="in use by another process"):
            FrameCache(path)
    with FrameCache(path, retry_failed=False) as c:
        assert not c.wants(_rec(1).key) and c.get(_rec(3).key).ok and c.torn_lines == 1
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["frame"] == 3  # the new record starts on its own line
