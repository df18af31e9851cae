"""tvad.corpus.narratives: trajectory, appearance and scene phrasings, including the real ShanghaiTech
clips' check against the authors' references."""

from __future__ import annotations

import json

import pytest

from tvad.corpus import describe_trajectory, real_clip_bleu, timeline_from_centroids, trajectory_phrasings
from tvad.corpus.narratives import DIRECTION_PHRASES, REGION_PHRASES, describe_appearance
from tvad.data.geometry import region_cell


def _truth_direction(start: str, end: str) -> str:
    """The direction implied by the grid cells of the first and last region words (independent of
    the code under test): row/col deltas -> 8-way word."""
    (r0, c0), (r1, c1) = region_cell(start), region_cell(end)
    dy, dx = r1 - r0, c1 - c0
    vert = {-1: "up", 0: "", 1: "down"}[max(-1, min(1, dy))]
    hor = {-1: "left", 0: "", 1: "right"}[max(-1, min(1, dx))]
    return "-".join(x for x in (vert, hor) if x)


def _named(text: str, word: str) -> int:
    """Position of the first phrase naming region `word` in text (-1 if none)."""
    pos = [text.find(p) for p in REGION_PHRASES[word]]
    pos = [p for p in pos if p >= 0]
    return min(pos) if pos else -1


def test_real_clip_narratives_name_start_end_and_direction(shared_clips):
    ann = json.loads((shared_clips / "annotations.json").read_text())
    checked = 0
    for name, clip in ann.items():
        for oid, tr in clip["anomalous_object_tracks"].items():
            vis = [t for t in tr if t]
            start, end = vis[0]["region"], vis[-1]["region"]
            text = describe_trajectory([t["centroid_xy"] if t else None for t in tr], clip["frame_size_hw"],
                                       target=int(oid))
            assert text.startswith(f"Target {oid} "), text
            first, last = _named(text, start), _named(text, end)
            assert first >= 0 and last >= 0, (name, oid, start, end, text)
            assert start == end or last > first, (name, oid, text)
            direction = _truth_direction(start, end)
            assert any(p in text for p in DIRECTION_PHRASES[direction]), (name, oid, direction, text)
            # the frame span in the words: the first and last visible frame, 1-based
            f0 = next(i for i, t in enumerate(tr) if t) + 1
            f1 = max(i for i, t in enumerate(tr) if t) + 1
            assert f"frame {f0}" in text and f"{f1}" in text, text
            checked += 1
    assert checked == 5


def test_real_clip_trajectory_bleu(shared_clips):
    res = real_clip_bleu(shared_clips / "annotations.json")
    print(f"real-clip Trajectory BLEU-4 (best reference, macro over 3 clips): {res['bleu4']:.2f}", res["per_clip"])
    assert set(res["per_clip"]) == {"01_0014-168_191", "01_0028-288_311", "03_0031-348_371"}
    assert res["bleu4"] > 30.0  # 40.5 when written; a guard against regressions of the phrasing


def test_entry_exit_and_phrasings_differ():
    cents = [None, None] + [(5 + 21.5 * t, 50) for t in range(8)] + [None, None]
    tl = timeline_from_centroids(cents, (100, 160))
    assert (tl.entry, tl.exit, tl.enters_from, tl.exits_to) == (2, 9, "left", "right")
    ph = trajectory_phrasings(tl, "Target 1")
    assert len(set(ph)) == 3 and all("frame 3" in p or "frames 3" in p for p in ph)
    assert "appears" in ph[0] and "enters from the left" in ph[0] and "leaves the view" in ph[0]


def test_static_and_invisible_targets():
    text = describe_trajectory([(50, 50)] * 10, (100, 100))
    assert "central area" in text and ("stationary" in text or "static" in text)
    with pytest.raises(ValueError, match="never visible"):
        describe_trajectory([None, None], (100, 100))


def test_appearance_phrase():
    assert describe_appearance("person", {"top": "white", "bottom": "grey shorts", "bag": "green backpack"}) == \
        "a person in a white top and grey shorts with a green backpack"
    assert describe_appearance("car", {"color": "silver"}) == "a silver car"
