"""tvad.data.files: sidecar JSON, id pngs and video headers, each failure a DataError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tvad.data import DataError
from tvad.data.files import png_size, read_id_png, read_json, video_info, write_json


def test_json_round_trip_and_format(tmp_path):
    p = write_json(tmp_path / "a" / "x.json", {"b": 1, "a": "é"})
    assert p.read_text(encoding="utf-8") == '{"b": 1, "a": "é"}'  # insertion order, no ASCII escapes
    assert read_json(p) == {"b": 1, "a": "é"}
    write_json(p, [1], indent=1)
    assert p.read_text() == "[\n 1\n]" and not list(p.parent.glob(".*tmp*"))
    with pytest.raises(DataError, match="no such file"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_id_pngs(tmp_path):
    ids = np.zeros((6, 8), np.uint8)
    ids[1:3, 2:5] = 7
    Image.fromarray(ids, mode="L").save(tmp_path / "g.png")
    assert (read_id_png(tmp_path / "g.png", (6, 8)) == ids).all() and png_size(tmp_path / "g.png") == (6, 8)
    Image.fromarray(np.stack([ids] * 3, -1)).save(tmp_path / "rgb.png")
    assert (read_id_png(tmp_path / "rgb.png") == ids).all()
    with pytest.raises(DataError, match="does not match"):
        read_id_png(tmp_path / "g.png", (8, 6))
    with pytest.raises(DataError, match="missing annotation png"):
        read_id_png(tmp_path / "none.png")
    (tmp_path / "junk.png").write_bytes(b"no png")
    with pytest.raises(DataError, match="unreadable png"):
        png_size(tmp_path / "junk.png")


def test_video_info_names_the_file(tmp_path):
    with pytest.raises(DataError, match="no such video file"):
        video_info(tmp_path / "none.mp4")
