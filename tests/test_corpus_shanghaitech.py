"""ShanghaiTech Campus through the dialogue corpus (`build_corpora`, oracle annotator): the anomalous
regions exist only as pixel masks (objects of category "object" without attributes, linked into tracks
by `tvad.data.shanghaitech`), so the phase-A/B timelines must come from the masks (entry/exit frames,
regions, direction), on whole test videos and on sub-clips (a view of some frames of a test video,
resampled and resized, as the chain's clips are).

The tree is written here in the dataset's layout (`training/videos/*.avi`, `testing/frames/<video>/`,
`testing/test_frame_mask`, `testing/test_pixel_mask`), 16 frames of 48x96."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from http_fixtures import send_json

from tvad.corpus import build_corpora, load_corpus, load_timelines
from tvad.corpus.annotators import OracleAnnotator
from tvad.data.record import Video, VideoObject, ranges_from_frames
from tvad.data.shanghaitech import load
from tvad.data.video import write_video

T, H, W = 16, 48, 96
ANOM, NORMAL, OTHER = "01_0014", "01_0015", "02_0003"


def _mask_a() -> np.ndarray:
    """(T, H, W) region A: a 10x16 blob in the upper third moving right, frames 4..13 (x0 = 4 + 6 (t - 4))."""
    m = np.zeros((T, H, W), np.uint8)
    for t in range(4, 14):
        x = 4 + 6 * (t - 4)
        m[t, 4:14, x:x + 16] = 1
    return m


def _pixel_mask() -> np.ndarray:
    """(T, H, W) region A (see `_mask_a`) plus region B: a still blob in the lower-left, frames 8..15."""
    m = _mask_a()
    m[8:16, 34:44, 6:16] = 1
    return m


def build(root: Path) -> Path:
    """A ShanghaiTech tree: one normal training video, an anomalous and a normal test video (frames +
    frame and pixel masks), and a second anomalous test video (a copy of the first) for the val split."""
    tv = root / "training" / "videos"
    tv.mkdir(parents=True)
    write_video(tv / "01_001.avi", np.full((6, H, W, 3), 120, np.uint8), 24)
    fm_d, pm_d = root / "testing" / "test_frame_mask", root / "testing" / "test_pixel_mask"
    fm_d.mkdir(parents=True)
    pm_d.mkdir(parents=True)
    for name, pm in ((ANOM, _pixel_mask()), (NORMAL, np.zeros((T, H, W), np.uint8)), (OTHER, _pixel_mask())):
        fd = root / "testing" / "frames" / name
        fd.mkdir(parents=True)
        for t in range(T):
            img = np.full((H, W, 3), 90, np.uint8)
            img[pm[t] != 0] = (230, 60, 40)  # the anomalous regions in red
            img[30:42, 72:82] = (40, 220, 60)  # a normal passer-by (in no annotation), green, still, lower right
            Image.fromarray(img).save(fd / f"{t:03d}.jpg", quality=95)
        np.save(fm_d / f"{name}.npy", pm.reshape(T, -1).any(1).astype(np.int64))
        np.save(pm_d / f"{name}.npy", pm)
    return root


class SubClip(Video):
    """A view of source frames `indices` of a ShanghaiTech video, resized to `size` (H, W): every field
    and reader in clip-local frame numbers and clip pixels (what `tvad.data.clips.ClipVideo` gives)."""

    def __init__(self, src: Video, indices, size=None, fps: float | None = None, split: str = "train"):
        self.src, self.idx = src, np.asarray(indices, np.int64)
        size = tuple(size or src.size)
        step = int(self.idx[1] - self.idx[0]) if len(self.idx) > 1 else 1
        super().__init__(f"{src.name}-{self.idx[0]}_{self.idx[-1]}", src.path, len(self.idx),
                         fps or src.fps / step, size, src.frame_labels[self.idx], split=split,
                         meta={"source_video": src.name, "frame_indices": self.idx.tolist()}, source=src.source)
        self.sy, self.sx = size[0] / src.size[0], size[1] / src.size[1]

    def read_frames(self, indices=None):
        f = self.src.read_frames(self.idx[self._indices(indices)])
        if f.shape[1:3] == self.size:
            return f
        return np.stack([np.asarray(Image.fromarray(x).resize(self.size[::-1], Image.BILINEAR)) for x in f])

    def read_masks(self, indices=None, all_objects: bool = False):
        m = self.src.read_masks(self.idx[self._indices(indices)])
        ys = np.minimum((np.arange(self.size[0]) / self.sy).astype(int), m.shape[1] - 1)
        xs = np.minimum((np.arange(self.size[1]) / self.sx).astype(int), m.shape[2] - 1)
        return m[:, ys][:, :, xs]  # nearest-neighbour resize of the id maps

    def _load_objects(self):
        out = []
        for o in self.src.objects:
            boxes = o.boxes[self.idx].astype(np.float64)
            vis = boxes[:, 0] >= 0
            if not vis.any():
                continue
            b = np.full((len(self.idx), 4), -1, np.int64)
            b[vis] = np.stack([np.floor(boxes[vis, 0] * self.sx), np.floor(boxes[vis, 1] * self.sy),
                               np.ceil(boxes[vis, 2] * self.sx), np.ceil(boxes[vis, 3] * self.sy)], 1)
            c = o.centroids[self.idx] * np.array([self.sx, self.sy])
            anom = set(o.anomaly_frames.tolist())
            local = [k for k, s in enumerate(self.idx) if int(s) in anom]
            out.append(VideoObject(id=o.id, category=o.category, attributes=dict(o.attributes), boxes=b,
                                   anomalous=bool(local), anomaly_ranges=ranges_from_frames(local), centroids=c))
        return out


@pytest.fixture()
def tree(tmp_path) -> Path:
    return build(tmp_path / "st")


def _mask_track(masks: np.ndarray, oid: int) -> tuple[int, int, float, float]:
    """(first frame, last frame, first centroid x, last centroid x) of object `oid` in id maps (T, H, W)."""
    frames = [t for t in range(len(masks)) if (masks[t] == oid).any()]
    xs = [np.nonzero(masks[t] == oid)[1].mean() for t in (frames[0], frames[-1])]
    return frames[0], frames[-1], float(xs[0]), float(xs[1])


def _check_against_masks(corpus: Path, video: Video) -> dict:
    """Every anomaly timeline of `video` agrees with its masks: entry/exit, anomaly span, direction;
    the phase-B dialogue says yes and anchors the anomaly at those (1-based) frames."""
    masks = video.read_masks()
    tl = load_timelines(corpus, video.name)
    assert len(tl["anomaly"]) == len(np.setdiff1d(np.unique(masks), [0]))
    by_id = {t["source_ids"][0]: t for t in tl["anomaly"]}
    for oid, t in by_id.items():
        first, last, x0, x1 = _mask_track(masks, oid)
        assert (t["entry"], t["exit"]) == (first, last) and tuple(t["anomaly_span"]) == (first, last)
        assert t["category"] == "object" and t["attributes"] == {} and t["anomalous"] is True
        assert t["direction"] == ("right" if x1 - x0 > 0.04 * video.size[1] else None)  # min_norm 0.04
    rows = {r["clip"]["name"]: r for s in ("train", "val") for r in load_corpus(corpus / f"phase_b.{s}.jsonl")}
    b = rows[video.name]
    assert b["turns"][0]["kind"] == "judgement" and b["turns"][0]["truth"] == "yes"
    anchors = b["messages"][2 + 2 * [t["kind"] for t in b["turns"]].index("anchors")]["content"]
    for oid, t in by_id.items():
        f0, f1 = t["entry"] + 1, t["exit"] + 1
        assert (f"from frame {f0} to frame {f1}" if f0 < f1 else f"seen at frame {f0}:") in anchors
    assert b["clip"]["source_video"] == video.meta.get("source_video", video.name)
    return by_id


def test_whole_test_videos_dialogues_come_from_the_masks(tree, tmp_path):
    test = {v.name: v for v in load(tree, "test")}
    train = load(tree, "train")
    card = build_corpora({"train": [test[ANOM], test[NORMAL], *train], "validation": [test[OTHER]]},
                         tmp_path / "corpus")
    assert card.extraction["full"]["request_failed"] == 0 and card.extraction["focus"]["request_failed"] == 0
    by_id = _check_against_masks(tmp_path / "corpus", test[ANOM])
    # region A (id 1) crosses the frame rightwards through the top row; region B (id 2) stays lower-left
    a, b = by_id[1], by_id[2]
    assert (a["entry"], a["exit"], a["direction"]) == (4, 13, "right")
    assert a["regions"][0] == "top-left" and a["regions"][-1] == "top-right" and a["events"][0]["kind"] == "enter"
    assert (b["entry"], b["exit"], b["direction"]) == (8, 15, None) and set(b["regions"]) == {"bottom-left"}
    phase_a = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")}
    traj = next(m["content"] for m, t in zip(phase_a[ANOM]["messages"][2::2], phase_a[ANOM]["turns"])
                if t["kind"] == "appearance_to_motion")
    assert "from frame 5 to frame 14" in traj and "upper-left" in traj and "to the right" in traj
    # mask-only objects: the appearance answers can only name them "an object"
    b_rows = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_b.train.jsonl")}
    app = b_rows[ANOM]["messages"][2 + 2 * [t["kind"] for t in b_rows[ANOM]["turns"]].index("appearance")]
    assert app["content"] == "Target 1 is an object. Target 2 is an object."
    # the normal test video and the normal training video: judged "no", and nothing more; the ground truth
    # knows no targets there, so no dialogue claims the campus is empty
    for name in (NORMAL, train[0].name):
        assert [(t["kind"], t.get("truth")) for t in b_rows[name]["turns"]] == [("judgement", "no")]
        scene = phase_a[name]["messages"][2]["content"]
        assert scene == "The clip has 16 frames and no anomalous target appears in it." if name == NORMAL \
            else "no anomalous target appears" in scene
    for r in [*phase_a.values(), *b_rows.values()]:
        assert not any("no moving targets" in m["content"] or "No targets" in m["content"] for m in r["messages"])
    assert phase_a[ANOM]["messages"][2]["content"].startswith(
        "The clip has 16 frames and shows two anomalous targets: two objects. Target 1 (an object) moves from "
        "the upper-left area to the upper-right area from frame 5 to frame 14")
    _check_against_masks(tmp_path / "corpus", test[OTHER])


def test_sub_clips_dialogues_in_clip_frames(tree, tmp_path):
    test = {v.name: v for v in load(tree, "test")}
    src = test[ANOM]
    plain = SubClip(src, range(6, 14))  # frames [6, 14): region A throughout, B from source frame 8
    resampled = SubClip(test[OTHER], range(0, 16, 2), size=(24, 48), split="validation")  # every 2nd frame, half size
    late = SubClip(src, range(14, 16))  # only region B, still
    normal = SubClip(test[NORMAL], range(0, 8))
    build_corpora({"train": [plain, late, normal], "validation": [resampled]}, tmp_path / "corpus")
    p = _check_against_masks(tmp_path / "corpus", plain)
    assert (p[1]["entry"], p[1]["exit"], p[2]["entry"], p[2]["exit"]) == (0, 7, 2, 7)
    assert p[1]["events"] == [] or p[1]["events"][0]["kind"] != "enter"  # in view from the clip's first frame
    r = _check_against_masks(tmp_path / "corpus", resampled)
    # source frames 4..13 of region A are clip frames 2..6 (4, 6, ..., 12); B's 8..15 are 4..7
    assert (r[1]["entry"], r[1]["exit"], r[2]["entry"], r[2]["exit"]) == (2, 6, 4, 7)
    assert r[1]["frame_size"] == [24, 48] and r[1]["direction"] == "right"
    assert all(0 <= v <= 48 for box in r[1]["boxes"] for v in box[::2])
    _check_against_masks(tmp_path / "corpus", late)
    rows = {x["clip"]["name"]: x for x in load_corpus(tmp_path / "corpus" / "phase_b.train.jsonl")}
    assert rows[normal.name]["turns"][0]["truth"] == "no"
    assert rows[plain.name]["clip"]["frame_indices"] == list(range(6, 14))
    val = load_corpus(tmp_path / "corpus" / "phase_b.val.jsonl")
    assert [x["clip"]["frame_indices"] for x in val] == [list(range(0, 16, 2))] and val[0]["clip"]["fps"] == 12.0


def test_anomaly_seen_in_one_clip_frame_is_kept(tree, tmp_path):
    """A clip resampled so sparsely that region A shows in one frame only (source frame 8 of 1, 8, 15):
    ground truth has nothing spurious, so the single sighting stays an anomaly target (it was dropped
    as a spurious one-frame track; a clip holding only it got a phase-B "No" under an abnormal label)."""
    src = {v.name: v for v in load(tree, "test")}[ANOM]
    sparse = SubClip(src, [1, 8, 15])  # A: clip frame 1 only; B: clip frames 1, 2
    only_a = SubClip(src, [5, 7])  # A alone, in both frames
    single = SubClip(src, [0, 4])  # A alone, in the second frame only
    build_corpora({"train": [sparse, only_a, single]}, tmp_path / "corpus")
    p = _check_against_masks(tmp_path / "corpus", sparse)
    assert (p[1]["entry"], p[1]["exit"], p[1]["frames"]) == (1, 1, [1]) and p[2]["frames"] == [1, 2]
    s = _check_against_masks(tmp_path / "corpus", single)
    assert list(s) == [1] and s[1]["frames"] == [1]
    rows = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_b.train.jsonl")}
    assert rows[single.name]["clip"]["label"] == 1 and rows[single.name]["turns"][0]["truth"] == "yes"
    # a single sighting is a place at one frame: no span "from frame 2 to frame 2", no claimed stillness
    said = " ".join(m["content"] for m in rows[single.name]["messages"][1:])
    assert "Target 1 is seen only in frame 2, in the upper-left area." in said  # source frame 4: x 4..20 of 96
    assert "The anomaly is seen at frame 2:" in said
    assert "to frame 2" not in said and "stationary" not in said and "leaves the view" not in said
    a = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")}
    assert "Target 1 (an object) is in the upper-left area at frame 2." in a[single.name]["messages"][2]["content"]
    assert "Which object is in the upper-left area at frame 2?" in a[single.name]["messages"][5]["content"]
    _check_against_masks(tmp_path / "corpus", only_a)


def test_coverage_from_the_record_and_the_annotator(tree, tmp_path):
    """Mask-only ground truth is known from the record's source (a view forwarding it) or from
    `meta["objects_coverage"]`; a record of a full-coverage source (a view that forwards neither) keeps
    the all-object scene wording; an annotator that looks at the pixels keeps it too."""
    from tvad.corpus.dialogues import ground_truth_coverage

    test = {v.name: v for v in load(tree, "test")}
    fwd = SubClip(test[NORMAL], range(0, 8))
    bare = SubClip(test[NORMAL], range(8, 16))
    bare.source = "video"
    tagged = SubClip(test[OTHER], range(0, 4))
    tagged.source, tagged.meta["objects_coverage"] = "video", "anomalous"
    assert [ground_truth_coverage(v) for v in (test[ANOM], fwd, bare, tagged)] == ["anomalous", "anomalous", "all",
                                                                                  "anomalous"]
    build_corpora({"train": [fwd, bare, tagged]}, tmp_path / "corpus")
    a = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")}
    assert a[fwd.name]["messages"][2]["content"] == "The clip has 8 frames and no anomalous target appears in it."
    assert a[bare.name]["messages"][2]["content"] == "The clip has 8 frames and shows no moving targets."
    assert a[tagged.name]["messages"][2]["content"] == "The clip has 4 frames and no anomalous target appears in it."

    class Looking(OracleAnnotator):  # the oracle's answers, as if read from the pixels by an LVLM
        name, needs_pixels = "looking", True

    build_corpora({"train": [fwd]}, tmp_path / "corpus2", annotator=Looking())
    a = load_corpus(tmp_path / "corpus2" / "phase_a.train.jsonl")[0]
    assert a["messages"][2]["content"] == "The clip has 8 frames and shows no moving targets."


class _LookingEndpoint(BaseHTTPRequestHandler):
    """A chat-completions endpoint that looks at the frame it is sent: red blobs are persons in red jackets,
    green blobs persons in green coats (a stand-in for an LVLM: it sees what the masks do not say)."""

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        url = req["messages"][0]["content"][0]["image_url"]["url"]
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        out = []
        for colour, mask in (("red jacket", (r > 170) & (g < 120) & (b < 120)),
                             ("green coat", (g > 170) & (r < 120) & (b < 120))):
            lab, _ = ndimage.label(mask)
            for ys, xs in ndimage.find_objects(lab):
                if (ys.stop - ys.start) * (xs.stop - xs.start) >= 20:
                    out.append({"category": "person", "attributes": {"top": colour},
                                "box": [xs.start, ys.start, xs.stop, ys.stop]})
        body = {"choices": [{"message": {"role": "assistant", "content": json.dumps({"instances": out})}}]}
        send_json(self, 200, json.dumps(body).encode())

    def log_message(self, *a):
        pass


def test_an_lvlm_annotator_names_what_the_masks_cannot(tree, tmp_path):
    """The HTTP annotator route (a real local endpoint that reads the frames): the anomalous regions become
    "a person in a red jacket" (category and attributes from the LVLM, anomaly facts still from the masks),
    the normal passer-by is described too, and normal clips get a scene description."""
    test = {v.name: v for v in load(tree, "test")}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _LookingEndpoint)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        kw = dict(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", model="looking", api_key_env=None,
                  max_retries=0, image_format="png")
        card = build_corpora({"train": [SubClip(test[ANOM], range(2, 16)), SubClip(test[NORMAL], range(0, 8))]},
                             tmp_path / "corpus", annotator="http", annotator_kw=kw)
    finally:
        srv.shutdown()
        srv.server_close()
    assert card.extraction["full"]["ok"] == 14 + 8 and card.extraction["focus"]["ok"] == 12
    anom, normal = f"{ANOM}-2_15", f"{NORMAL}-0_7"
    tl = load_timelines(tmp_path / "corpus", anom)
    assert [(t["category"], t["attributes"], t["entry"], t["exit"], t["anomaly_span"]) for t in tl["anomaly"]] == [
        ("person", {"top": "red jacket"}, 2, 11, [2, 11]), ("person", {"top": "red jacket"}, 6, 13, [6, 13])]
    assert tl["anomaly"][0]["direction"] == "right"
    assert [t["attributes"]["top"] for t in tl["general"] if not t["anomalous"]] == ["green coat"]
    b = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_b.train.jsonl")}
    kinds = [t["kind"] for t in b[anom]["turns"]]
    assert b[anom]["messages"][2 + 2 * kinds.index("appearance")]["content"] == (
        "Target 1 is a person in a red jacket. Target 2 is a person in a red jacket.")
    assert "persons" in b[anom]["messages"][2]["content"] and "object" not in b[anom]["messages"][2]["content"]
    assert [t["kind"] for t in b[normal]["turns"]] == ["judgement", "scene"]
    assert "a person in a green coat" in b[normal]["messages"][4]["content"]
    a = {r["clip"]["name"]: r for r in load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")}
    assert a[anom]["messages"][2]["content"].startswith("The clip has 14 frames and shows three targets: three persons.")
