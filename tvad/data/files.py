"""Dataset files: JSON sidecars, grey object-id pngs, video headers, each failure a `DataError`
that names the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tvad.data.record import DataError
from tvad.data.video import VideoError, probe
from tvad.io import atomic_write_text


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    """`obj` as JSON (keys in insertion order, non-ASCII kept, no final newline), atomically: the
    datasets' sidecar and meta format (`tvad.io.atomic_write_json` sorts keys: another format)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False))


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None


def read_id_png(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """A grey object-id png -> uint8/uint16 (H, W). Raises `DataError` naming the file when it is
    missing, unreadable, or not of `size` (H, W)."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("L", "P", "I", "I;16", "1"):
                a = np.asarray(im)
            else:  # an RGB(A) id map: ids are grey, so any channel holds them
                a = np.asarray(im.convert("RGB"))[..., 0]
    except FileNotFoundError:
        raise DataError(f"{p}: missing annotation png") from None
    except Exception as e:
        raise DataError(f"{p}: unreadable png ({type(e).__name__}: {e})") from None
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if size is not None and a.shape[:2] != tuple(size):
        raise DataError(f"{p}: mask size {a.shape[0]}x{a.shape[1]} does not match the video's "
                        f"{size[0]}x{size[1]}")
    return a


def png_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) from a png's header only. Raises `DataError` naming an unreadable file."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataError(f"{p}: missing annotation png") from None
    except Exception as e:
        raise DataError(f"{p}: unreadable png ({type(e).__name__}: {e})") from None
    return h, w


def video_info(path: str | os.PathLike):
    """`VideoInfo` of a video file, as a `DataError` naming the file when it cannot be read."""
    try:
        return probe(path)
    except VideoError as e:
        raise DataError(str(e)) from None
