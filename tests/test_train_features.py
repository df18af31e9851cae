"""The stage-1 feature cache bounded by the clips: lazy Samples (features and packed masks read from the
clip's cache file when used), the byte-bounded LRU, clip-aware keys, the other-frames error, and the
cache size predicted before extraction. Real mp4 files, the real tiny Qwen2.5-VL."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil

import numpy as np
import pytest
import torch

from tvad.data.record import Video
from tvad.data.video import read_frames, resize_frames, write_video
from tvad.model.ahd import pair_merge
from tvad.train.features import (ByteLRU, FeatureCache, FeatureCacheError, LazyFeatures, LazyMasks, cache_indices,
                                 cache_key, feature_grid, predicted_cache_bytes, predicted_cache_line)
from tvad.train.stage1 import _feature_rows, prepare

LAYERS = [0, 2]


class Boxed(Video):
    """A video file whose object 1 is a square moving right by `step` px a frame (anomalous in the
    rows' frames); the id maps are computed, not stored."""

    def __init__(self, *a, step: int = 2, **kw):
        super().__init__(*a, **kw)
        self.step = step

    def _read_id_maps(self, idx):
        m = np.zeros((len(idx), *self.size), np.int32)
        for k, t in enumerate(idx):
            x = 4 + self.step * int(t)
            m[k, 10:26, x:x + 16] = 1
        return m


class ClipView(Boxed):
    """A clip of a source video, as the chain's ClipVideo: the source file's frames at
    meta["frame_indices"], resized to `size`; frame numbers local to the clip."""

    def __init__(self, name, source: Video, indices, size, step=2):
        idx = [int(i) for i in indices]
        rows = source.anomaly_rows.copy()
        labels = source.frame_labels[idx]
        super().__init__(name, source.path, len(idx), source.fps, size, labels, step=step,
                         meta={"source_video": source.name, "frame_indices": idx})
        self.anomaly_rows = np.array([[1, 0, len(idx) - 1]]) if labels.any() else np.zeros((0, 3), np.int64)
        self._source = source
        del rows

    def read_frames(self, indices=None):
        idx = np.asarray(self.meta["frame_indices"])[self._indices(indices)]
        return resize_frames(read_frames(self.path, indices=idx), self.size)

    def _read_id_maps(self, idx):
        src = np.asarray(self.meta["frame_indices"])[idx]
        m = self._source._read_id_maps(src)
        t = torch.from_numpy(m)[:, None].float()
        return torch.nn.functional.interpolate(t, size=self.size, mode="nearest")[:, 0].numpy().astype(np.int32)


def _frames(seed, n, h, w):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx + 40 * seed) % 256], -1)
    return np.stack([(base + rng.integers(0, 30, (h, w, 3)) + 5 * t) % 256 for t in range(n)]).astype(np.uint8)


def make_videos(d, k=3, n=8, size=(64, 96)):
    out = []
    for i in range(k):
        p = write_video(d / f"v{i}.mp4", _frames(i, n, *size), fps=8.0)
        rows = np.array([[1, 2, 5]]) if i % 2 == 0 else None
        out.append(Boxed(f"v{i}", p, n, 8.0, size, anomaly_rows=rows, split="train"))
    return out


@pytest.fixture(scope="module")
def bb():
    from tvad.model.tiny import build_tiny

    return build_tiny(seed=0, max_pixels=112 * 112)


def _tensors_held(obj, seen=None) -> list:
    """Every torch tensor reachable through an object's attributes, dicts and lists (not through
    the cache / backbone / record it points to)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (FeatureCache, Video)):
        return []
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_held(v, seen)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_held(v, seen)]
    if hasattr(obj, "__dict__"):
        return _tensors_held(vars(obj), seen)
    return []


def test_prepared_samples_hold_no_tensors_and_read_what_eager_extraction_gives(tmp_path, bb):
    vids = make_videos(tmp_path, k=3, n=7)  # odd N: the last pair is padded
    cache = FeatureCache(tmp_path / "cache", bb, LAYERS, memory_bytes=0)
    samples = prepare(vids, cache, progress=False)
    assert cache.misses == 3 and cache.memory.bytes == 0
    for s, v in zip(samples, vids):
        assert isinstance(s.features, LazyFeatures) and isinstance(vars(s)["_masks"], LazyMasks)
        assert _tensors_held(s) == []  # nothing read yet
        eager = bb.visual_features(np.asarray(v.read_frames()), LAYERS, fps=8.0).features
        assert sorted(s.features) == LAYERS and len(s.features) == 2
        for l in LAYERS:
            want = eager[l].to(torch.float16)
            got = s.features[l]
            assert got.dtype == torch.float16 and got.shape == want.shape == (4, 4, 6, 128)
            assert torch.equal(got, want)
            assert torch.equal(_feature_rows(s, l, 1, 3), want[1:3])
            assert s.features.shape(l) == tuple(want.shape)
        m = pair_merge(torch.from_numpy(v.read_masks()))
        assert s.masks.dtype == torch.bool and torch.equal(s.masks, m) and s.masks.shape == (4, 64, 96)
        assert _tensors_held(s) == []  # read, not kept (bound 0)
    assert samples[0].masks.any() and not samples[1].masks.any()
    assert cache.memory.bytes == 0 and len(cache.memory) == 0
    again = prepare(vids, FeatureCache(tmp_path / "cache", bb, LAYERS), progress=False)  # from disk now
    assert all(torch.equal(a.features[0], b.features[0]) for a, b in zip(samples, again))


def test_the_lru_stays_under_its_bound_and_serves_repeats_from_memory(tmp_path, bb):
    vids = make_videos(tmp_path, k=4, n=8)
    block = 4 * 4 * 6 * 128 * 2  # one block of one video, fp16
    small = FeatureCache(tmp_path / "c", bb, LAYERS, memory_bytes=int(2.5 * block))
    samples = prepare(vids, small, progress=False)
    for _ in range(2):
        for s in samples:
            _ = [s.features[l] for l in LAYERS], s.masks
            assert small.memory.bytes <= small.memory.max_bytes
    assert small.memory.peak_bytes <= int(2.5 * block) and len(small.memory) <= 2 + 1
    big = FeatureCache(tmp_path / "c", bb, LAYERS, memory_bytes=64 * 2**20)  # the whole cache fits
    samples = prepare(vids, big, progress=False)
    for s in samples:
        _ = [s.features[l] for l in LAYERS], s.masks
    misses = big.memory.misses
    for s in samples:  # a second epoch: no file read
        _ = [s.features[l] for l in LAYERS], s.masks, _feature_rows(s, 2, 0, 2)
    assert big.memory.misses == misses and big.memory.hits >= 4 * 4
    lru = ByteLRU(10)
    lru.put("a", torch.zeros(4, dtype=torch.int8))
    lru.put("b", torch.zeros(4, dtype=torch.int8))
    lru.put("c", torch.zeros(4, dtype=torch.int8))  # evicts "a"
    lru.put("d", torch.zeros(11, dtype=torch.int8))  # larger than the bound: not kept
    assert lru.peek("a") is None and lru.peek("b") is not None and lru.peek("d") is None and lru.bytes == 8
    with pytest.raises(FeatureCacheError, match="memory bound"):
        ByteLRU(-1)


def test_clips_of_one_source_get_their_own_entries_and_whole_video_keys_stay(tmp_path, bb):
    (src,) = make_videos(tmp_path, k=1, n=12)
    st = src.path.stat()
    assert cache_key(src) == f"{src.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"  # as before clips
    assert cache_indices(src) == list(range(12))
    a = ClipView("v0_c0", src, [0, 2, 4, 6, 8, 10], (56, 84))
    b = ClipView("v0_c1", src, [1, 3, 5, 7, 9, 11], (56, 84))
    c = ClipView("v0_c0", src, [0, 2, 4, 6, 8, 10], (84, 112))  # same name and frames, other size
    keys = {cache_key(x) for x in (src, a, b, c)}
    assert len(keys) == 4 and all(k.startswith(cache_key(src)) for k in keys)
    assert cache_indices(a) == [0, 2, 4, 6, 8, 10]
    cache = FeatureCache(tmp_path / "cache", bb, LAYERS)
    sa, sb, sc = prepare([a, b, c], cache, progress=False)
    assert cache.misses == 3 and len(list(cache.dir.glob("*.safetensors"))) == 3
    assert not torch.equal(sa.features[0], sb.features[0])
    assert sc.features[0].shape[1:3] != sa.features[0].shape[1:3]
    eager = bb.visual_features(np.asarray(b.read_frames()), LAYERS).features
    assert torch.equal(sb.features[2], eager[2].to(torch.float16))
    assert torch.equal(sb.masks, pair_merge(torch.from_numpy(b.read_masks())))
    assert sa.masks.shape == (3, 56, 84)


def test_a_file_holding_other_frames_is_an_error_naming_both_frame_lists(tmp_path, bb):
    (src,) = make_videos(tmp_path, k=1, n=8)
    a = ClipView("c0", src, [0, 1, 2, 3], (56, 84))
    b = ClipView("c1", src, [4, 5, 6, 7], (56, 84))
    cache = FeatureCache(tmp_path / "cache", bb, LAYERS)
    prepare([a, b], cache, progress=False)
    pa, pb = cache.path(cache_key(a), cache_indices(a)), cache.path(cache_key(b), cache_indices(b))
    shutil.copyfile(pa, pb)  # clip a's entry under clip b's name
    with pytest.raises(FeatureCacheError) as e:
        prepare([b], FeatureCache(tmp_path / "cache", bb, LAYERS), progress=False)
    msg = str(e.value)
    assert msg.startswith(f"{pb}: holds other frames than requested: frames [0, 1, 2, 3] of ")
    assert "asked for frames [4, 5, 6, 7] of " in msg and "|clip=c0|" in msg and "|clip=c1|" in msg
    assert pb.read_bytes() == pa.read_bytes()  # not silently overwritten
    # a damaged one is still recomputed, and listed
    pb.write_bytes(pb.read_bytes()[:100])
    again = FeatureCache(tmp_path / "cache", bb, LAYERS)
    (sb,) = prepare([b], again, progress=False)
    assert again.corrupt == [pb] and again.misses == 1 and sb.features[0].shape == (2, 4, 6, 128)


def test_masks_are_refreshed_from_the_record_without_recomputing_features(tmp_path, bb):
    (v,) = make_videos(tmp_path, k=1, n=8)
    cache = FeatureCache(tmp_path / "cache", bb, LAYERS)
    (s,) = prepare([v], cache, progress=False)
    f0, m0 = s.features[0].clone(), s.masks.clone()
    v.step = 5  # the annotation changed, the video file did not
    again = FeatureCache(tmp_path / "cache", bb, LAYERS)
    (s2,) = prepare([v], again, progress=False)
    assert again.misses == 0 and again.hits == 1
    assert torch.equal(s2.features[0], f0) and not torch.equal(s2.masks, m0)
    assert torch.equal(s2.masks, pair_merge(torch.from_numpy(v.read_masks())))
    # an entry written without masks (an older cache) gets them added
    p = cache.path(cache_key(v), cache_indices(v))
    cache.put(cache_key(v), cache_indices(v), {l: s.features[l].float() for l in LAYERS})
    (s3,) = prepare([v], FeatureCache(tmp_path / "cache", bb, LAYERS), progress=False)
    assert torch.equal(s3.masks, s2.masks) and p.exists()


def test_predicted_cache_bytes_match_the_files_written(tmp_path, bb):
    vids = make_videos(tmp_path, k=2, n=7, size=(64, 96))
    (tmp_path / "b").mkdir()
    (src,) = make_videos(tmp_path / "b", k=1, n=10, size=(90, 120))
    vids += [src, ClipView("clip", src, [1, 4, 7], (60, 100))]
    assert feature_grid(bb, 7, 64, 96) == (4, 4, 6)  # smart_resize(64, 96) = (56, 84)
    assert feature_grid(bb, 10, 90, 120) == (5, 6, 8)  # 84 x 112 = 9408 <= 112 * 112
    predicted = predicted_cache_bytes(vids, bb, LAYERS)
    detail = predicted_cache_bytes(vids, bb, LAYERS, detail=True)
    assert detail["total"] == predicted and detail["clips"] == 4 and detail["temporal_rows"] == 4 + 4 + 5 + 2
    assert feature_grid(bb, 3, 60, 100) == (2, 4, 8)  # 56 x 112
    assert detail["features"] == 2 * 128 * 2 * (4 * 4 * 6 * 2 + 5 * 6 * 8 + 2 * 4 * 8)
    line = predicted_cache_line(vids, bb, LAYERS)
    assert line.startswith("feature cache: 4 clips, 15 temporal rows, 2 blocks: ") and "predicted" in line
    cache = FeatureCache(tmp_path / "cache", bb, LAYERS)
    assert cache.disk_bytes() == 0
    prepare(vids, cache, progress=False)
    assert cache.disk_bytes() == predicted  # the headers included exactly


def test_size_prediction_of_a_bad_record_names_it(tmp_path, bb):
    (v,) = make_videos(tmp_path, k=1, n=4)
    v.size = None
    with pytest.raises(FeatureCacheError, match=rf"^{tmp_path / 'v0.mp4'}: a record needs num_frames and size"):
        predicted_cache_bytes([v], bb, LAYERS)
    with pytest.raises(FeatureCacheError, match="memory bound must be >= 0"):
        FeatureCache(tmp_path / "c", bb, LAYERS, memory_bytes=-1)
