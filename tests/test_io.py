"""tvad.io: atomic writes leave the old file or the new one, never a half; JSON of numpy values;
paths resolved against the repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tvad.io import (
    REPO_ROOT,
    atomic_path,
    atomic_replace_dir,
    atomic_write_json,
    atomic_write_text,
    json_default,
    resolve_model_path,
    resolve_path,
)


def test_atomic_path_keeps_the_suffix_and_replaces_on_success(tmp_path):
    dest = tmp_path / "sub" / "x.npz"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.suffix == ".npz" and tmp != dest
        np.savez_compressed(tmp, a=np.arange(3))  # a writer that picks its format by the suffix
        assert not dest.exists()
    assert dest.exists() and list(np.load(dest)["a"]) == [0, 1, 2]
    assert [p.name for p in dest.parent.iterdir()] == ["x.npz"]  # no temp file left
    assert dest.stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "r.json"
    atomic_write_json(dest, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(dest.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_json_of_numpy_values_and_paths(tmp_path):
    p = atomic_write_json(tmp_path / "a.json", {"f": np.float32(0.5), "i": np.int64(3), "a": np.arange(2),
                                                "p": Path("/x/y")})
    assert json.loads(p.read_text()) == {"f": 0.5, "i": 3, "a": [0, 1], "p": "/x/y"}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        json_default(object())
    assert atomic_write_text(tmp_path / "t.txt", "é\n").read_bytes() == "é\n".encode()


def test_atomic_replace_dir(tmp_path):
    dest, tmp = tmp_path / "ck", tmp_path / "ck.partial"
    dest.mkdir()
    (dest / "old").write_text("o")
    tmp.mkdir()
    (tmp / "new").write_text("n")
    atomic_replace_dir(tmp, dest)
    assert [p.name for p in dest.iterdir()] == ["new"] and not tmp.exists()
    assert not (tmp_path / "ck.old").exists()


def test_paths_resolve_against_the_repository(tmp_path):
    assert resolve_path("assets/tiny-qwen2.5-vl") == REPO_ROOT / "assets" / "tiny-qwen2.5-vl"
    assert resolve_path(tmp_path) == tmp_path
    assert resolve_model_path("assets/tiny-qwen2.5-vl") == REPO_ROOT / "assets" / "tiny-qwen2.5-vl"
    assert resolve_model_path("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"  # a hub id
    assert resolve_model_path(tmp_path) == tmp_path
