"""Files: atomic writes, JSON of numpy values, and paths relative to the repository.

The bottom layer (beside `config` and `prompts`): standard library and numpy only, imported by
every other package. Every file the project writes for a later step goes through `atomic_path`
(or its wrappers), so a killed run leaves either the old file or the new one, never half of one.

    with atomic_path(run_dir / "predictions" / "x.npz") as tmp:   # tmp keeps the suffix (".npz")
        np.savez_compressed(tmp, **arrays)
    atomic_write_json(run_dir / "run.json", info)
    resolve_path("assets/tiny-qwen2.5-vl")                         # -> <repo>/assets/tiny-qwen2.5-vl
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: notebooks/, assets/, data/, runs/


def resolve_path(path: str | os.PathLike) -> Path:
    """A configured path: absolute as given, else relative to the repository root (so that a run
    resolves the same files whether started from notebooks/, the root or elsewhere)."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def resolve_model_path(path: str | os.PathLike) -> str | Path:
    """A model location that may be a local folder or a hub id ("Qwen/Qwen2.5-VL-7B-Instruct"):
    a folder that exists (a relative one under the repository root first, as `resolve_path`, then as
    given) as a Path, anything else as given."""
    p = Path(path)
    if not p.is_absolute() and (REPO_ROOT / p).is_dir():
        return REPO_ROOT / p
    if p.is_dir():
        return p
    return str(path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; moved onto `path` when the block ends cleanly,
    removed when it raises. The temporary name keeps `path`'s suffix (writers such as
    `np.savez_compressed` or a video muxer choose their format by it)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented, key-sorted JSON, written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def json_lines(text: str, on_error: Callable[[int, json.JSONDecodeError], Exception]) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON-lines text; a line that is not JSON
    raises `on_error(line number, error)` (the caller's error, naming its file)."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise on_error(n, e) from None
        yield n, value


def atomic_replace_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move a fully written folder `tmp` into place at `dest`, replacing any old one.

    The old folder is renamed aside first and removed last, so a kill at any point leaves either
    the old or the new folder complete at `dest` (or the old one at `dest.old`), never a mix.
    """
    tmp, dest = Path(tmp), Path(dest)
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
