"""The frozen backbone's feature cache: each clip's block features computed once, read many times,
from disk, when used.

    cache = FeatureCache(run.path("features"), backbone, layers=[0, 1, 2, 3])
    feats = cache.get_or_compute("train/video_003", indices, lambda: frames, fps=8.0)
    feats[3]        # (T, h, w, D_3) float32 (stored as fp16)

    entry = cache.ensure(cache_key(v), cache_indices(v), v.read_frames, fps=v.fps, masks=merged)
    entry.feature(3)          # (T, h, w, D_3) float16, read on demand (through a byte-bounded LRU)
    entry.rows(3, a, b)       # (b - a, h, w, D_3) float16: only those temporal rows read when not cached
    entry.masks()             # (T, H, W) bool pair-merged masks (stored packed, 1 bit per pixel)
    predicted_cache_bytes(videos, backbone, layers)   # the cache's size on disk, before extraction

Layout: <root>/<backbone identity>/<key>.safetensors, one file per (clip, frame indices): fp16
tensors "layer.<l>" (T, h, w, D_l), optionally "masks" (uint8, the clip's pair-merged masks packed
8 pixels a byte, shape in the metadata entry "masks_shape"), plus metadata "tvad" (video, indices,
backbone identity, layers, max_pixels). The key is a hash of that metadata; on every read the stored
metadata is compared with the request: a file of another backbone / layers / pixel budget is stale and
recomputed; a file holding OTHER FRAMES (video or indices differ although the file name matches: copied
or tampered) is a `FeatureCacheError` naming the file and both frame lists, never served and never
silently overwritten. A truncated, garbled or non-finite file is recomputed and listed in `corrupt`.
Writes are atomic (temp file + rename).

Memory: `ensure` validates a file one block at a time and returns a `CacheEntry` handle that holds no
tensor; reads go through one LRU per cache bounded in bytes (`memory_bytes`, default 512 MiB: the
whole `cpu` preset's cache, ~200 MB, so the cpu chain reads each file once; at paper scale a few
blocks of one clip), so peak memory does not grow with the number of clips.

Because Qwen2.5-VL's ViT attends within each 2-frame group only (window and full attention
alike, 2-D rotary positions), the features of frames [2a, 2b) are rows [a, b) of the clip's
features: `rows` reads a training window's rows only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tvad.io import atomic_path

DEFAULT_MEMORY_BYTES = 512 * 2**20  # the LRU's default bound: the cpu preset's whole cache (~200 MB) fits
TEMPORAL_PATCH = 2  # frames per temporal patch of Qwen2.5-VL's ViT (features have ceil(N / 2) rows)


class FeatureCacheError(ValueError):
    """A cache file whose content does not match its key, or a bad request."""


# -- which clip a record is --------------------------------------------------------------------------

def video_name(v) -> str:
    """A record's unique name (name, id, key or video_id; else its path)."""
    for a in ("name", "id", "key", "video_id"):
        if getattr(v, a, None):
            return str(getattr(v, a))
    return str(getattr(v, "path", v))


def source_indices(v) -> list[int] | None:
    """The source-video frame indices a clip view shows (`v.meta["frame_indices"]`), None for a
    whole video."""
    idx = (getattr(v, "meta", None) or {}).get("frame_indices")
    return None if idx is None else [int(i) for i in idx]


def cache_key(v) -> str:
    """The cache's video key: the file path with its size and mtime (a regenerated file is new).

    A clip view (a record whose meta has "frame_indices": several clips share one source file)
    adds its name, its frame size (H, W) and a hash of its source frame indices; a whole video's key
    is unchanged (path|size|mtime, or split/name without a file).
    """
    p = Path(getattr(v, "path", "") or "")
    if p.is_file():
        st = p.stat()
        base = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    else:
        base = f"{getattr(v, 'split', '')}/{video_name(v)}"
    idx = source_indices(v)
    if idx is None:
        return base
    size = "x".join(str(int(s)) for s in getattr(v, "size", ()) or ())
    digest = hashlib.sha256(json.dumps(idx).encode()).hexdigest()[:16]
    return f"{base}|clip={video_name(v)}|size={size}|frames={digest}"


def cache_indices(v) -> list[int]:
    """The frame indices a record's cache entry is stored under: a clip's source frame indices (so
    the file's metadata says which frames of the source it holds), else 0 .. num_frames - 1."""
    idx = source_indices(v)
    if idx is not None:
        return idx
    n = int(getattr(v, "num_frames", 0) or len(np.asarray(v.frame_labels)))
    return list(range(n))


# -- the byte-bounded LRU ----------------------------------------------------------------------------

class ByteLRU:
    """Least-recently-used tensors, at most `max_bytes` in all (a tensor larger than the bound is
    never kept). Cached tensors are shared: callers must not modify them in place."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES):
        if max_bytes is None or int(max_bytes) < 0:
            raise FeatureCacheError(f"the feature cache's memory bound must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.bytes = 0  # bytes held now (always <= max_bytes)
        self.peak_bytes = 0  # the most ever held
        self.hits = 0
        self.misses = 0
        self._d: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.max_bytes

    def peek(self, key) -> torch.Tensor | None:
        t = self._d.get(key)
        if t is not None:
            self._d.move_to_end(key)
        return t

    def get(self, key, load: Callable[[], torch.Tensor]) -> torch.Tensor:
        t = self.peek(key)
        if t is not None:
            self.hits += 1
            return t
        self.misses += 1
        t = load()
        self.put(key, t)
        return t

    def put(self, key, t: torch.Tensor) -> None:
        n = t.numel() * t.element_size()
        if n > self.max_bytes:
            return
        old = self._d.pop(key, None)
        if old is not None:
            self.bytes -= old.numel() * old.element_size()
        while self._d and self.bytes + n > self.max_bytes:
            _, old = self._d.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
        self._d[key] = t
        self.bytes += n
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def drop(self, path: str) -> None:
        """Forget every tensor read from the file `path` (keys are ((path, mtime, size), name))."""
        for k in [k for k in self._d if k[0][0] == path]:
            old = self._d.pop(k)
            self.bytes -= old.numel() * old.element_size()


# -- one cached clip, read on demand -----------------------------------------------------------------

class CacheEntry:
    """A validated cache file: block shapes and mask shape, no tensors. Reads go through the
    cache's LRU (`FeatureCache.memory`)."""

    def __init__(self, cache: "FeatureCache", path: Path, shapes: dict[int, tuple[int, ...]],
                 mask_shape: tuple[int, int, int] | None):
        self.cache = cache
        self.path = Path(path)
        self.shapes = shapes  # {l: (T, h, w, D_l)}
        self.mask_shape = mask_shape  # (T, H, W) of the stored pair-merged masks, or None
        st = self.path.stat()
        self._version = (str(self.path), st.st_mtime_ns, st.st_size)  # LRU key prefix

    @property
    def layers(self) -> list[int]:
        return sorted(self.shapes)

    @property
    def num_tokens(self) -> int:
        """T: temporal rows (pairs of frames)."""
        return int(next(iter(self.shapes.values()))[0])

    def _fail(self, what: str, e: Exception) -> FeatureCacheError:
        return FeatureCacheError(f"{self.path}: cannot read {what} ({type(e).__name__}: {e}); the cache file "
                                 "changed after prepare(): run prepare again")

    def _read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        try:
            with safe_open(str(self.path), framework="pt") as f:
                return f.get_tensor(name) if rows is None else f.get_slice(name)[rows[0]:rows[1]]
        except FeatureCacheError:
            raise
        except Exception as e:
            raise self._fail(name, e) from None

    def feature(self, l: int) -> torch.Tensor:
        """(T, h, w, D_l) float16 features of block l (shared when cached: do not modify in place)."""
        l = int(l)
        if l not in self.shapes:
            raise KeyError(l)
        return self.cache.memory.get((self._version, f"layer.{l}"), lambda: self._read(f"layer.{l}"))

    def rows(self, l: int, a: int, b: int) -> torch.Tensor:
        """(b - a, h, w, D_l) float16: rows [a, b) of block l. From the LRU when the block is there
        or fits in it; otherwise only those rows are read from disk."""
        l = int(l)
        if l not in self.shapes:
            raise KeyError(l)
        key = (self._version, f"layer.{l}")
        t = self.cache.memory.peek(key)
        if t is not None:
            self.cache.memory.hits += 1
            return t[a:b]
        if self.cache.memory.fits(math.prod(self.shapes[l]) * 2):
            return self.feature(l)[a:b]
        return self._read(f"layer.{l}", (a, b))

    def masks(self) -> torch.Tensor:
        """(T, H, W) bool pair-merged masks (unpacked from the file's bits)."""
        if self.mask_shape is None:
            raise FeatureCacheError(f"{self.path}: holds no masks")

        def load():
            packed = self._read("masks").numpy()
            n = math.prod(self.mask_shape)
            return torch.from_numpy(np.unpackbits(packed, count=n).astype(bool).reshape(self.mask_shape))

        return self.cache.memory.get((self._version, "masks"), load)


class LazyFeatures(Mapping):
    """`{l: (T, h, w, D_l) float16}` read from a cache file on access (`Sample.features`): holds no
    tensor itself; `rows(l, a, b)` reads a window; `shape(l)` needs no read."""

    def __init__(self, entry: CacheEntry):
        self.entry = entry

    def __getitem__(self, l: int) -> torch.Tensor:
        return self.entry.feature(l)

    def __iter__(self) -> Iterator[int]:
        return iter(self.entry.layers)

    def __len__(self) -> int:
        return len(self.entry.shapes)

    def shape(self, l: int) -> tuple[int, ...]:
        return tuple(self.entry.shapes[int(l)])

    def rows(self, l: int, a: int, b: int) -> torch.Tensor:
        return self.entry.rows(l, a, b)

    def __repr__(self) -> str:
        return f"LazyFeatures({self.entry.path.name}, {{{', '.join(f'{l}: {s}' for l, s in self.entry.shapes.items())}}})"


class LazyMasks:
    """A cache file's pair-merged masks, read on access (`Sample.masks` resolves it)."""

    def __init__(self, entry: CacheEntry):
        self.entry = entry

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.entry.mask_shape)

    def load(self) -> torch.Tensor:
        return self.entry.masks()


# -- the cache ---------------------------------------------------------------------------------------

def pack_masks(masks: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(T, H, W) bool -> (ceil(T*H*W / 8),) uint8 packed bits, and the shape."""
    m = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks) != 0
    if m.ndim != 3:
        raise FeatureCacheError(f"masks must be (T, H, W), got shape {m.shape}")
    return torch.from_numpy(np.packbits(m.reshape(-1))), tuple(int(s) for s in m.shape)


class FeatureCache:
    """One backbone's and block list's cache files under root/<identity>/ (see the module docstring).

    memory_bytes: bound of the in-memory LRU that `CacheEntry` reads go through (0: every read from
    disk). hits / misses: `get_or_compute` / `ensure` calls served from a file / computed.
    """

    def __init__(self, root: str | os.PathLike, backbone, layers: Sequence[int] | str, fps: float | None = None,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.backbone = backbone
        if isinstance(layers, str):  # "auto": the blocks this backbone's config names (Backbone.resolve_layers)
            layers = backbone.resolve_layers(layers)
        self.layers = sorted(int(l) for l in layers)
        backbone.check_layers(self.layers)
        self.identity = backbone.identity
        self.fps = fps
        self.dir = Path(root) / self.identity
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.corrupt: list[Path] = []  # cache files found truncated, garbled or non-finite (then recomputed)
        self.memory = ByteLRU(memory_bytes)  # the tensors read lately, at most memory_bytes

    # -- keys --------------------------------------------------------------------------------
    def meta(self, video: str, indices: Sequence[int]) -> dict:
        return {"video": str(video), "indices": [int(i) for i in indices], "backbone": self.identity,
                "layers": self.layers, "max_pixels": self.backbone.max_pixels}

    def key(self, video: str, indices: Sequence[int]) -> str:
        return hashlib.sha256(json.dumps(self.meta(video, indices), sort_keys=True).encode()).hexdigest()[:24]

    def path(self, video: str, indices: Sequence[int]) -> Path:
        return self.dir / f"{self.key(video, indices)}.safetensors"

    def disk_bytes(self) -> int:
        """Bytes of every cache file of this backbone (the size `predicted_cache_bytes` predicts)."""
        return sum(p.stat().st_size for p in self.dir.glob("*.safetensors"))

    # -- read / write ------------------------------------------------------------------------
    def _check(self, p: Path, got: dict, want: dict) -> bool:
        """True if `got` (a file's metadata) is `want`; False if stale (other backbone, layers, pixel
        budget: recompute). Other frames under this file name: FeatureCacheError."""
        if got.get("video") != want["video"] or got.get("indices") != want["indices"]:
            raise FeatureCacheError(
                f"{p}: holds other frames than requested: frames {got.get('indices')} of {got.get('video')!r}, "
                f"asked for frames {want['indices']} of {want['video']!r} (a copied or tampered cache file; "
                "delete it to recompute)")
        return all(got.get(k) == v for k, v in want.items())

    def _open(self, video: str, indices: Sequence[int], keep: bool) -> tuple[CacheEntry | None, dict | None]:
        """(entry, {l: fp16} if keep) of a valid file, (None, None) when absent, stale or damaged.
        Reads one block at a time (its finiteness checked), so memory stays at one block unless `keep`."""
        p = self.path(video, indices)
        if not p.exists():
            return None, None
        want = self.meta(video, indices)
        try:
            with safe_open(str(p), framework="pt") as f:
                md = f.metadata() or {}
                got = json.loads(md.get("tvad", "{}"))
                if "video" not in got:
                    raise ValueError("no tvad metadata")
            if not self._check(p, got, want):
                return None, None  # stale: never served
            shapes, kept = {}, {}
            with safe_open(str(p), framework="pt") as f:
                for l in self.layers:
                    t = f.get_tensor(f"layer.{l}")
                    if t.dtype != torch.float16 or t.ndim != 4 or not torch.isfinite(t).all():
                        raise ValueError(f"block {l}: bad tensor")
                    shapes[l] = tuple(int(s) for s in t.shape)
                    if keep:
                        kept[l] = t
                    del t
                mask_shape = None
                if "masks" in f.keys() and "masks_shape" in md:
                    mask_shape = tuple(int(s) for s in json.loads(md["masks_shape"]))
                    if f.get_slice("masks").get_shape() != [math.ceil(math.prod(mask_shape) / 8)]:
                        raise ValueError("masks: bad size")
        except FeatureCacheError:
            raise
        except Exception:  # truncated / garbled / non-finite file: recompute (counted in `corrupt`)
            self.corrupt.append(p)
            return None, None
        return CacheEntry(self, p, shapes, mask_shape), (kept if keep else None)

    def get(self, video: str, indices: Sequence[int]) -> dict[int, torch.Tensor] | None:
        """{l: (T, h, w, D_l) float32} or None when absent, stale (other backbone / layers) or damaged;
        FeatureCacheError when the file holds other frames."""
        _, kept = self._open(video, indices, keep=True)
        return None if kept is None else {l: t.float() for l, t in kept.items()}

    def entry(self, video: str, indices: Sequence[int]) -> CacheEntry | None:
        """A validated handle of the file (no tensors held), or None when absent, stale or damaged."""
        return self._open(video, indices, keep=False)[0]

    def _write(self, video: str, indices: Sequence[int], tensors: dict[str, torch.Tensor],
               mask_shape: tuple[int, int, int] | None) -> Path:
        md = {"tvad": json.dumps(self.meta(video, indices), sort_keys=True)}
        if mask_shape is not None:
            md["masks_shape"] = json.dumps(list(mask_shape))
        p = self.path(video, indices)
        with atomic_path(p) as tmp:
            save_file(tensors, str(tmp), metadata=md)
        self.memory.drop(str(p))
        return p

    def _fp16(self, video: str, features: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [l for l in self.layers if l not in features]
        if missing:
            raise FeatureCacheError(f"features for layers {missing} missing")
        tensors = {}
        for l in self.layers:
            f = features[l]
            if not torch.isfinite(f).all():
                raise FeatureCacheError(f"{video}: non-finite features in block {l}; not cached")
            h = f.detach().to("cpu", torch.float16).contiguous()
            if not torch.isfinite(h).all():
                raise FeatureCacheError(f"{video}: block {l} features overflow float16")
            tensors[f"layer.{l}"] = h
        return tensors

    def put(self, video: str, indices: Sequence[int], features: dict[int, torch.Tensor],
            masks: torch.Tensor | np.ndarray | None = None) -> Path:
        """Store {l: (T, h, w, D_l)} as fp16 (and the (T, H, W) pair-merged masks, packed)."""
        tensors = self._fp16(video, features)
        shape = None
        if masks is not None:
            tensors["masks"], shape = pack_masks(masks)
        return self._write(video, indices, tensors, shape)

    def get_or_compute(self, video: str, indices: Sequence[int], frames: Callable[[], np.ndarray] | np.ndarray,
                       fps: float | None = None) -> dict[int, torch.Tensor]:
        """Cached features, or computed from `frames` (an array or a loader) and stored."""
        got = self.get(video, indices)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        vf = self._compute(video, indices, frames, fps)
        self.put(video, indices, vf)
        return {l: vf[l].to(torch.float16).float().cpu() for l in self.layers}  # as a later read

    def _compute(self, video, indices, frames, fps) -> dict[int, torch.Tensor]:
        x = frames() if callable(frames) else frames
        if len(x) != len(indices):
            raise FeatureCacheError(f"{video}: {len(x)} frames for {len(indices)} indices")
        return self.backbone.visual_features(x, self.layers, fps=fps or self.fps).features

    def ensure(self, video: str, indices: Sequence[int], frames: Callable[[], np.ndarray] | np.ndarray,
               fps: float | None = None, masks: torch.Tensor | np.ndarray | None = None) -> CacheEntry:
        """The clip's validated cache entry, its features computed from `frames` and stored when
        absent, stale or damaged. `masks` (T, H, W) bool, pair-merged: stored with the features, and
        rewritten into an existing file when it lacks them or holds other masks (an edited annotation),
        the features kept. Holds no tensor afterwards beyond what fits the LRU."""
        e, _ = self._open(video, indices, keep=False)
        if e is None:
            self.misses += 1
            feats = self._compute(video, indices, frames, fps)
            tensors = self._fp16(video, feats)
            del feats
            shape = None
            if masks is not None:
                tensors["masks"], shape = pack_masks(masks)
            p = self._write(video, indices, tensors, shape)
            e = CacheEntry(self, p, {l: tuple(int(s) for s in tensors[f"layer.{l}"].shape) for l in self.layers},
                           shape)
            for l in self.layers:  # warm the LRU with what was just computed (as a later read gives)
                self.memory.put((e._version, f"layer.{l}"), tensors[f"layer.{l}"])
            return e
        self.hits += 1
        if masks is not None:
            packed, shape = pack_masks(masks)
            same = e.mask_shape == shape and torch.equal(e._read("masks"), packed)
            if not same:
                with safe_open(str(e.path), framework="pt") as f:
                    tensors = {f"layer.{l}": f.get_tensor(f"layer.{l}") for l in self.layers}
                tensors["masks"] = packed
                self._write(video, indices, tensors, shape)
                del tensors
                e = CacheEntry(self, e.path, e.shapes, shape)
        return e


# -- the cache's size, before extraction -------------------------------------------------------------

def feature_grid(backbone, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(T, h, w) of the block features of `num_frames` frames of (height, width): the processor's
    `smart_resize` at the backbone's pixel budget (as `Backbone.preprocess`), temporal patch 2."""
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

    vp = backbone.processor.video_processor
    lo, hi = int(vp.size["shortest_edge"]), int(vp.size["longest_edge"])
    if backbone.max_pixels:
        lo, hi = min(lo, int(backbone.max_pixels)), int(backbone.max_pixels)
    patch, merge = int(vp.patch_size), int(vp.merge_size)
    H, W = smart_resize(int(height), int(width), factor=patch * merge, min_pixels=lo, max_pixels=hi)
    tp = int(getattr(vp, "temporal_patch_size", TEMPORAL_PATCH) or TEMPORAL_PATCH)
    return -(-int(num_frames) // tp), H // patch, W // patch


def _header_bytes(tensors: dict[str, tuple[str, tuple[int, ...], int]], metadata: dict[str, str]) -> int:
    """Bytes of a safetensors header: the 8-byte length and the JSON (metadata first, tensors by
    name, offsets in that order; padded with spaces to a multiple of 8), as safetensors writes it."""
    order = sorted(tensors)
    header: dict = {"__metadata__": metadata}
    off = 0
    for name in order:
        dtype, shape, n = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    n = len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode())
    return 8 + n + (-n % 8)


def _record_bytes(v, backbone, layers: Sequence[int], dims: dict[int, int], identity: str) -> tuple[int, int, int]:
    """(feature bytes, mask bytes, header bytes) of one record's cache file."""
    try:
        n = int(v.num_frames)
        H, W = (int(s) for s in v.size)
    except (AttributeError, TypeError, ValueError):
        raise FeatureCacheError(f"{getattr(v, 'path', v)}: a record needs num_frames and size (H, W) for the "
                                f"cache size prediction, got num_frames={getattr(v, 'num_frames', None)!r}, "
                                f"size={getattr(v, 'size', None)!r}") from None
    if n < 1 or H < 1 or W < 1:
        raise FeatureCacheError(f"{getattr(v, 'path', v)}: cannot predict the cache size of {n} frames of {H}x{W}")
    t, h, w = feature_grid(backbone, n, H, W)
    tensors = {f"layer.{l}": ("F16", (t, h, w, dims[l]), t * h * w * dims[l] * 2) for l in layers}
    mask_shape = (-(-n // 2), H, W)
    mb = math.ceil(math.prod(mask_shape) / 8)
    tensors["masks"] = ("U8", (mb,), mb)
    meta = {"video": cache_key(v), "indices": cache_indices(v), "backbone": identity, "layers": list(layers),
            "max_pixels": backbone.max_pixels}
    md = {"tvad": json.dumps(meta, sort_keys=True), "masks_shape": json.dumps(list(mask_shape))}
    fb = sum(tensors[f"layer.{l}"][2] for l in layers)
    return fb, mb, _header_bytes(tensors, md)


def predicted_cache_bytes(records: Sequence, backbone, layers: Sequence[int], detail: bool = False):
    """Bytes on disk of the cache files `prepare` writes for `records` (clip sizes and frame counts;
    fp16 blocks of (ceil(N/2), h, w, D_l) at the processor's resize; packed pair-merged masks; the
    safetensors headers, exactly). detail=True: {"features", "masks", "headers", "total", "clips",
    "temporal_rows"} instead of the total."""
    layers = sorted(int(l) for l in layers)
    dims = backbone.layer_dims(layers)
    identity = backbone.identity
    f = m = hd = rows = 0
    records = list(records)
    for v in records:
        a, b, c = _record_bytes(v, backbone, layers, dims, identity)
        f, m, hd = f + a, m + b, hd + c
        rows += -(-int(v.num_frames) // 2)
    total = f + m + hd
    if detail:
        return {"features": f, "masks": m, "headers": hd, "total": total, "clips": len(records), "temporal_rows": rows}
    return total


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def predicted_cache_line(records: Sequence, backbone, layers: Sequence[int]) -> str:
    """One line: the predicted cache size and its parts, e.g. "feature cache: 52 clips, 624 temporal
    rows, 4 blocks: 157.4 MiB predicted (features 156.0 MiB, packed masks 1.2 MiB, headers 43.1 KiB)"."""
    d = predicted_cache_bytes(records, backbone, layers, detail=True)
    return (f"feature cache: {d['clips']} clips, {d['temporal_rows']} temporal rows, {len(list(layers))} blocks: "
            f"{_human(d['total'])} predicted (features {_human(d['features'])}, packed masks {_human(d['masks'])}, "
            f"headers {_human(d['headers'])})")
