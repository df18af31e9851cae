"""tvad.corpus.corpora: build_corpora end to end on small hand-made clips: files, schema, split, resume,
bad input, extraction failures, dialogues per clip, Yes/No balance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvad.corpus import (CorpusError, CorpusSchemaError, FrameCache, build_corpora, extract,
                         format_dialogue, load_corpus, load_timelines, sample_dialogues)
from tvad.corpus.annotators import OracleAnnotator
from tvad.data.record import Video, VideoObject


class FakeVideo(Video):
    """Rectangles moving on grey; specs: start (x, y), vel (vx, vy), enter/leave, anomaly range."""

    source = "fake"

    def __init__(self, name, specs, num_frames=12, size=(120, 160), split="train", source_video=None):
        rows, self._objs = [], []
        for k, sp in enumerate(specs, 1):
            boxes = np.full((num_frames, 4), -1, np.int64)
            (x, y), (vx, vy), (w, h) = sp["start"], sp["vel"], sp.get("wh", (12, 24))
            e0 = sp.get("enter", 0)
            for t in range(e0, sp.get("leave", num_frames)):
                cx, cy = x + vx * (t - e0), y + vy * (t - e0)
                b = [max(int(cx - w / 2), 0), max(int(cy - h / 2), 0), min(int(cx + w / 2), size[1]),
                     min(int(cy + h / 2), size[0])]
                if b[2] > b[0] and b[3] > b[1]:
                    boxes[t] = b
            rng = sp.get("anomaly")
            if rng:
                rows.append((k, rng[0], rng[1]))
            self._objs.append(VideoObject(id=k, category=sp.get("category", "person"),
                                          attributes=sp.get("attributes", {}), boxes=boxes, anomalous=bool(rng),
                                          anomaly_type=sp.get("type"), anomaly_ranges=[tuple(rng)] if rng else [],
                                          behaviour=sp.get("type")))
        meta = {"source_video": source_video or name, "frame_indices": list(range(100, 100 + num_frames))}
        super().__init__(name, f"/nonexistent/{name}.mp4", num_frames, 1.0, size, split=split,
                         anomaly_rows=np.array(rows, np.int64).reshape(-1, 3), meta=meta)

    def _load_objects(self):
        return self._objs

    def _read_id_maps(self, idx):
        out = np.zeros((len(idx), *self.size), np.int32)
        for j, t in enumerate(idx):
            for o in self._objs:
                b = o.box(int(t))
                if b is not None:
                    out[j, b[1]:b[3], b[0]:b[2]] = o.id
        return out

    def read_frames(self, indices=None):
        idx = self._indices(indices)
        m = self._read_id_maps(idx)
        f = np.full((len(idx), *self.size, 3), 120, np.uint8)
        for o in self._objs:
            f[m == o.id] = (40 * o.id % 255, 200, 90)
        return f


def clips():
    person = {"top_color": "white", "bottom_color": "grey", "backpack": "green"}
    train = [
        FakeVideo("v1_c0", [dict(start=(20, 60), vel=(8, 0), attributes=person),
                            dict(start=(140, 30), vel=(-6, 3), category="car", attributes={"color": "red"},
                                 anomaly=(3, 11), type="driving the wrong way")], source_video="v1"),
        FakeVideo("v1_c1", [dict(start=(80, 60), vel=(0, 0))], source_video="v1"),
        FakeVideo("v2_c0", [dict(start=(30, 100), vel=(6, -5), anomaly=(0, 11), type="running"),
                            dict(start=(120, 90), vel=(-2, 0), attributes={"top_color": "blue"})], source_video="v2"),
    ]
    val = [FakeVideo("v3_c0", [dict(start=(150, 60), vel=(-10, 0), enter=2, leave=10, anomaly=(2, 9),
                                    type="running")], split="validation", source_video="v3"),
           FakeVideo("v4_c0", [], split="validation", source_video="v4")]  # no objects at all
    test = [FakeVideo("v5_c0", [dict(start=(20, 60), vel=(8, 0))], split="test", source_video="v5")]
    return {"train": train, "validation": val, "test": test}


def test_build_corpora_files_schema_split_and_card(tmp_path):
    out = tmp_path / "corpus"
    card = build_corpora(clips(), out)
    for ph in ("a", "b"):
        for split in ("train", "val"):
            rows = load_corpus(out / f"phase_{ph}.{split}.jsonl")
            assert len(rows) == (3 if split == "train" else 2)
            for r in rows:
                assert r["split"] == split and r["phase"] == ph and r["messages"][0]["role"] == "system"
                assert r["clip"]["frame_indices"] == list(range(100, 112))
    train_src = {r["clip"]["source_video"] for r in load_corpus(out / "phase_a.train.jsonl")}
    val_src = {r["clip"]["source_video"] for r in load_corpus(out / "phase_a.val.jsonl")}
    assert train_src == {"v1", "v2"} and val_src == {"v3", "v4"}
    assert card.excluded_splits == {"test": 1} and card.clips == {"train": 3, "val": 2}
    assert card.targets["clips_without_targets"] == 1
    assert set(card.turn_types["b"]) == {"yes_no", "target", "trajectory", "temporal", "scene"}
    assert {"appearance_to_motion", "motion_to_appearance", "verify_motion"} <= set(card.turn_kinds["a"])
    assert json.loads((out / "card.json").read_text())["files"]["phase_b.train.jsonl"]["dialogues"] == 3
    assert "| phase_a.train.jsonl |" in (out / "card.md").read_text()
    # phase B follows judgement -> appearance -> trajectory -> temporal for abnormal clips
    b = {r["clip"]["name"]: r for r in load_corpus(out / "phase_b.train.jsonl")}
    kinds = [t["kind"] for t in b["v1_c0"]["turns"]]
    assert kinds[:4] == ["judgement", "appearance", "trajectory", "anchors"]
    assert b["v1_c0"]["turns"][0]["truth"] == "yes" and b["v1_c1"]["turns"][0]["truth"] == "no"
    assert "red car" in b["v1_c0"]["messages"][4]["content"]
    traj = b["v1_c0"]["messages"][6]["content"]
    assert traj.startswith("Target 1 ") and "lower left" in traj, traj
    assert "frame 4 to frame 12" in b["v1_c0"]["messages"][8]["content"]  # anomaly range 3..11, 1-based
    assert "wrong way" in b["v1_c0"]["messages"][8]["content"]
    # the anomaly-focused view re-extracted only frames with anomaly pixels
    assert card.extraction["focus"]["skipped_no_anomaly"] > 0 and card.extraction["focus"]["ok"] > 0
    # timelines for drawing
    tl = load_timelines(out, "v1_c0")
    assert len(tl["general"]) == 2 and tl["anomaly"][0]["category"] == "car"
    assert len(tl["general"][0]["boxes"]) == len(tl["general"][0]["frames"])
    assert "ASSISTANT:" in format_dialogue(sample_dialogues(out, "b", "train", 1)[0])


def test_rebuild_asks_nothing_and_is_identical(tmp_path):
    out = tmp_path / "corpus"
    build_corpora(clips(), out)
    first = (out / "phase_b.train.jsonl").read_text()
    card = build_corpora(clips(), out)
    assert card.extraction["full"]["asked"] == 0 and card.extraction["focus"]["asked"] == 0
    assert card.extraction["full"]["cached"] > 0
    assert (out / "phase_b.train.jsonl").read_text() == first


def test_several_dialogues_per_clip_vary_the_wording_not_the_facts(tmp_path):
    one = build_corpora(clips(), tmp_path / "one")
    three = build_corpora(clips(), tmp_path / "three", dialogues_per_clip=3)
    assert three.extraction["full"]["asked"] == one.extraction["full"]["asked"]  # the frames are asked once
    for ph in ("a", "b"):
        a = load_corpus(tmp_path / "one" / f"phase_{ph}.train.jsonl")
        b = load_corpus(tmp_path / "three" / f"phase_{ph}.train.jsonl")
        assert len(b) == 3 * len(a) and len({r["id"] for r in b}) == len(b)
        assert [r["id"] for r in b if "#" not in r["id"]] == [r["id"] for r in a]
        assert b[0] == a[0]  # copy 0 of the first clip is the single-dialogue one (Yes/No balancing then differs)
        for r in a:
            copies = [x for x in b if x["id"].split("#")[0] == r["id"]]
            assert len(copies) == 3 and all(x["clip"] == r["clip"] for x in copies)
            assert all(x["turns"][0].get("truth") == r["turns"][0].get("truth") for x in copies)  # same facts
        questions = {tuple(m["content"] for m in x["messages"] if m["role"] == "user") for x in b}
        assert len(questions) > len(a)  # other wordings / orders
    with pytest.raises(ValueError, match="dialogues_per_clip"):
        build_corpora(clips(), tmp_path / "zero", dialogues_per_clip=0)


def test_source_video_leakage_is_refused(tmp_path):
    c = clips()
    c["validation"].append(FakeVideo("v1_c9", [], split="validation", source_video="v1"))
    with pytest.raises(CorpusError, match="leakage.*v1"):
        build_corpora(c, tmp_path / "corpus")


def test_schema_errors_name_file_and_line(tmp_path):
    out = tmp_path / "corpus"
    build_corpora(clips(), out)
    p = out / "phase_a.train.jsonl"
    lines = p.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["messages"][2]["role"] = "user"
    p.write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    with pytest.raises(CorpusSchemaError, match=r"phase_a\.train\.jsonl:2: .*messages\[2\]\.role"):
        load_corpus(p)
    p.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(CorpusSchemaError, match=r"phase_a\.train\.jsonl:2: not JSON"):
        load_corpus(p)


class _Flaky(OracleAnnotator):
    """Garbage on frames 1-2, a failed request on frame 3; sees pixels."""

    name = "flaky"
    needs_pixels = True

    def describe_frame(self, image, prompt, **kw):
        rec = super().describe_frame(image, prompt, **kw)
        if kw["frame"] in (1, 2):
            rec.status, rec.error, rec.instances = "invalid_answer", "not JSON: no object or array", []
        elif kw["frame"] == 3:
            rec.status, rec.error, rec.instances = "request_failed", "endpoint unreachable", []
        return rec


class _Unreadable(FakeVideo):
    def read_frames(self, indices=None):
        raise OSError("corrupt file")


def test_failures_are_counted_and_kept(tmp_path):
    v = clips()["train"][0]
    with FrameCache(tmp_path / "c.jsonl") as cache:
        from tvad.corpus.extraction import ExtractStats

        st = ExtractStats()
        recs = extract(v, _Flaky(), cache, stats=st)
        assert len(recs) == 12 and (st.ok, st.invalid_answer, st.request_failed) == (9, 2, 1)
        assert st.reasons["endpoint unreachable"] == 1
        st2 = ExtractStats()
        extract(v, _Flaky(), cache, stats=st2)
        assert st2.asked == 1 and st2.cached == 11  # only the failed request is asked again
        bad = _Unreadable("bad", [dict(start=(20, 60), vel=(8, 0))], source_video="bad")
        st3 = ExtractStats()
        recs = extract(bad, _Flaky(), cache, stats=st3)
        assert len(recs) == 12 and st3.request_failed == 12 and "corrupt file" in recs[0].error
    # the corpus still builds from the frames that worked
    card = build_corpora({"train": [v, bad]}, tmp_path / "corpus", annotator=_Flaky(), enhance=False)
    assert card.extraction["full"]["invalid_answer"] == 2 and card.extraction["full"]["request_failed"] == 13
    rows = load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")
    assert len(rows) == 2


def test_http_route_in_the_pipeline_endpoint_down(tmp_path, monkeypatch):
    """An endpoint that is down: every frame a counted failure, the corpus still written."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    card = build_corpora({"train": clips()["train"][:1]}, tmp_path / "corpus", annotator="http",
                         annotator_kw=dict(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key_env=None,
                                           timeout=0.2, max_retries=0, backoff=0.0), enhance=False)
    assert card.extraction["full"]["request_failed"] == 12
    assert any("unreachable" in r for r in card.extraction["full"]["failure_reasons"])
    rows = load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")
    assert "no moving targets" in rows[0]["messages"][2]["content"] or "No targets" in rows[0]["messages"][2]["content"]


def test_on_the_synthetic_dataset(tmp_path):
    """The real loader's records (tvad.data.synthetic): attributes, anomaly types, masks."""
    synthetic = pytest.importorskip("tvad.data.synthetic")
    root = tmp_path / "syn"
    synthetic.generate(root, num_videos={"train": 2, "validation": 1, "test": 0, "test_seen": 0, "pretrain": 0})
    data = {s: synthetic.load(root, s) for s in ("train", "validation")}
    card = build_corpora(data, tmp_path / "corpus")
    assert card.extraction["full"]["ok"] == sum(v.num_frames for vs in data.values() for v in vs)
    rows = load_corpus(tmp_path / "corpus" / "phase_a.train.jsonl")
    assert len(rows) == 2 and card.targets["general"] > 0
    text = " ".join(m["content"] for r in rows for m in r["messages"])
    assert " top" in text and "Target 1" in text


def _abnormal(name, normal_attrs, anomal_attrs=None, split="train"):
    return FakeVideo(name, [dict(start=(30, 100), vel=(6, -5), anomaly=(0, 11), type="running",
                                 attributes=anomal_attrs or {"top_color": "red"}),
                            dict(start=(120, 40), vel=(-4, 0), attributes=normal_attrs)],
                     split=split, source_video=name)


def test_target_judgements_alternate_per_split_and_are_unambiguous(tmp_path):
    """Per-target Yes/No turns alternate "no", "yes", ... over each split's anomalous clips (so the
    answer is not a prior of the question type, and one split's balance does not set another's), and
    a target another target with the other answer also fits is never asked about."""
    twin = {"top_color": "white"}  # the anomalous person below also wears a white top, plus a backpack
    train = [_abnormal("amb", twin, {"top_color": "white", "backpack": "green"})]
    train += [_abnormal(f"t{i}", {"top_color": c}) for i, c in enumerate(["blue", "green", "yellow", "black"])]
    train += [FakeVideo("n0", [dict(start=(80, 60), vel=(0, 0))], source_video="n0")]  # normal clip
    val = [_abnormal(f"v{i}", {"top_color": "blue"}, split="validation") for i in range(2)]
    build_corpora({"train": train, "validation": val}, tmp_path / "c")

    def truths(split):
        rows = load_corpus(tmp_path / "c" / f"phase_b.{split}.jsonl")
        return {r["clip"]["name"]: [(t["truth"], r["messages"][1 + 2 * i]["content"])
                                    for i, t in enumerate(r["turns"]) if t["kind"] == "target_judgement"]
                for r in rows}

    tr = truths("train")
    assert tr["amb"] == []  # "the person in a white top" would also fit the anomalous one: not asked
    assert [tr[f"t{i}"][0][0] for i in range(4)] == ["no", "yes", "no", "yes"]
    assert "blue top" in tr["t0"][0][1] and "red top" in tr["t1"][0][1]
    assert tr["n0"] == []
    assert [truths("val")[f"v{i}"][0][0] for i in range(2)] == ["no", "yes"]  # starts afresh


def test_heldout_dialogues_are_rebuilt_not_reused_stale(tmp_path):
    """Stage 2's held-out dialogue sets: a set left in the run folder by older dialogue rules is
    rebuilt, not reused (it was, and kept the old Yes/No balance)."""
    from types import SimpleNamespace

    from tvad.config import preset
    from tvad.steps.sft import test_records

    run = SimpleNamespace(dir=tmp_path, config=preset("cpu"))  # its corpus section: the oracle
    videos = clips()["validation"]
    first = test_records(run, videos, split="test")
    f = tmp_path / "stage2" / "test_corpus" / "phase_b.val.jsonl"
    assert first and f.exists()
    stale = [dict(r, messages=[*r["messages"][:-1], {"role": "assistant", "content": "stale"}]) for r in first]
    f.write_text("".join(json.dumps(r) + "\n" for r in stale))
    assert test_records(run, videos, split="test") == first
    assert test_records(run, videos, split="test", force=True) == first
